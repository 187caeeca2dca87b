#!/usr/bin/env bash
# Installs the system packages the toolkit needs when missing: espeak-ng, flite and sox (offline
# speech and audio tools) everywhere; on Debian/Ubuntu also festival with three voices (Homebrew has
# no festival formula, so macOS synthesises without it) and the real-speech data behind
# `--safety builtin` (Asterisk's English prompts and pocketsphinx's LibriVox test clips), and chromium
# for the studio's browser tests.
set -euo pipefail
tools=(espeak-ng flite sox)
debian_packages=(festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
                 asterisk-core-sounds-en-wav pocketsphinx-testdata chromium)
missing=()
for t in "${tools[@]}"; do
  command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${debian_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ "$(uname)" = Darwin ] && command -v brew >/dev/null 2>&1; then
  # portaudio: the microphone (record, dictate) through sounddevice.
  brew list portaudio >/dev/null 2>&1 || missing+=(portaudio)
  [ ${#missing[@]} -eq 0 ] || brew install "${missing[@]}"
  echo "skipped on macOS (no Homebrew formula): festival and its voices (synthesis uses espeak-ng and" \
       "flite), ${debian_packages[*]:4:2} (the built-in safety set: pass --safety-manifest PATH), and" \
       "chromium (the studio's browser tests: set STUDIO_CHROMIUM to a Chrome or Chromium binary)"
  exit 0
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
elif command -v brew >/dev/null 2>&1; then
  brew install "${missing[@]}"
else
  echo "error: missing system packages: ${missing[*]} (install them with your package manager, e.g. sudo apt-get install ${missing[*]})" >&2
  exit 1
fi

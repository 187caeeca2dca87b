#!/usr/bin/env bash
# Installs the system packages the toolkit needs (offline TTS and audio tools) when missing.
set -euo pipefail
packages=(espeak-ng sox asterisk-core-sounds-en-wav pocketsphinx-testdata)
missing=()
for p in "${packages[@]}"; do
  command -v "$p" >/dev/null 2>&1 || missing+=("$p")
done
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

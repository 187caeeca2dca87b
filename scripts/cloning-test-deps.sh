#!/usr/bin/env bash
# Installs what tests/synth/test_cloning_backends.py needs to run the voice-cloning backends on
# small random models: f5-tts (PyTorch; lora_training/synth/tts/f5.py) and f5-tts-mlx (MLX;
# f5_mlx.py), beside the torch the Makefile installed, changing nothing already installed.
#
#     scripts/cloning-test-deps.sh [python]    # default: .venv/bin/python
#
# Why not `pip install -e '.[f5,f5-mlx]'`: f5-tts declares its training and demo stack (gradio,
# bitsandbytes, torchcodec with FFmpeg, hydra, ...: ~70 packages), and PyPI's Linux torchaudio is
# a CUDA build whose compiled extension cannot load beside a CPU torch. So the packages whose
# declared dependencies are wrong for us go in with --no-deps, and only what `import f5_tts.model`,
# `f5_tts.infer.utils_infer`, `vocos`, `f5_tts_mlx` and `vocos_mlx` import is added, under
# constraints that hold every package already installed (torch, numpy, transformers, ...) at its
# version. Idempotent: when the pinned versions are there, it only checks that torchaudio imports.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-.venv/bin/python}

# Installed with --no-deps: f5-tts (its requirements, above); torchaudio (see the extension step
# below; 2.11.1 is the newest release, the closest to torch 2.13, and needs only torch>=2.11);
# vocos and encodec (each requires torchaudio, and vocos pins encodec).
NO_DEPS=(f5-tts==1.1.22 torchaudio==2.11.1 vocos==0.1.0 encodec==0.1.1)
# Installed with their dependencies, under the constraints. Pinned: code that runs in the tests.
# Unpinned: imported only, at f5_tts.model's import (its Trainer imports wandb, datasets and
# ema_pytorch; utils_infer imports pydub; the text frontends import rjieba, pypinyin and jieba).
WITH_DEPS=(x-transformers==2.31.10 torchdiffeq==0.2.5 einx==0.4.3 vocos-mlx==0.0.7 f5-tts-mlx==0.2.6
           'ema-pytorch>=0.5.2' wandb datasets pydub rjieba pypinyin jieba librosa)

fail() { echo "cloning-test-deps: error: $*" >&2; exit 1; }

[ -x "$py" ] || fail "no Python at $py"
read -r plat new_python < <("$py" -c 'import platform, sys
print(f"{sys.platform}-{platform.machine()}", int(sys.version_info >= (3, 13)))')
[ -n "${plat:-}" ] || fail "$py does not run"
# pydub imports audioop, which Python 3.13 removed; audioop-lts brings it back (pydub does not say so).
if [ "$new_python" = 1 ]; then WITH_DEPS+=(audioop-lts); fi
case $plat in
  # mlx on Linux is the CPU backend, an extra; pyproject.toml's f5-mlx extra says why mlx<=0.32.0.
  linux-x86_64) MLX='mlx[cpu]==0.32.0' MLX_PARTS=(mlx-cpu==0.32.0) ;;
  darwin-arm64) MLX='mlx==0.32.0' MLX_PARTS=(mlx-metal==0.32.0) ;;
  *) echo "cloning-test-deps: nothing installed on $plat (only linux-x86_64 and darwin-arm64 are set up);" \
          "tests/synth/test_cloning_backends.py will skip" >&2
     exit 0 ;;
esac

# torch is the Makefile's (pip install torch==2.13.0): without it, x-transformers and torchdiffeq
# would pull a multi-GB CUDA build from PyPI.
"$py" -c 'import importlib.metadata as m; m.version("torch")' 2>/dev/null \
  || fail "torch is not installed in $py (install torch==2.13.0 first, as the Makefile does)"

# Loads torchaudio; prints the exception's last line when it fails.
torchaudio_imports() { "$py" -c 'import torchaudio' 2>&1 | tail -n1; return "${PIPESTATUS[0]}"; }

# Whether every pin is at its version and every other name present.
pins_installed() {
  "$py" - "${NO_DEPS[@]}" "${WITH_DEPS[@]}" "$MLX" "${MLX_PARTS[@]}" 2>/dev/null <<'EOF'
import importlib.metadata as m, re, sys
for req in sys.argv[1:]:
    name, _, pin = re.sub(r"\[.*\]", "", req).partition("==")
    version = m.version(re.split(r"[<>=]", name)[0])  # raises when absent
    if pin and version != pin:
        sys.exit(1)
EOF
}

if pins_installed && torchaudio_imports >/dev/null; then
  echo "cloning-test-deps: f5-tts and f5-tts-mlx test dependencies already installed"
  exit 0
fi

log=$(mktemp "${TMPDIR:-/tmp}/cloning-test-deps.XXXXXX")
constraints=$(mktemp "${TMPDIR:-/tmp}/cloning-test-deps-constraints.XXXXXX")
trap 'rm -f "$constraints"' EXIT
pip_install() {  # what, pip arguments...
  local what=$1; shift
  "$py" -m pip install -q --disable-pip-version-check "$@" >>"$log" 2>&1 \
    || fail "$what: $(grep '^ERROR' "$log" | tail -n1 | grep . || tail -n1 "$log") (pip's log: $log)"
}

# Every installed package at its installed version, but the ones pinned above (an older release
# of one of those would contradict its pin).
managed=$(printf '%s\n' "${NO_DEPS[@]}" "${WITH_DEPS[@]}" "$MLX" mlx-cpu mlx-metal \
          | sed -E 's/[][><=].*//; s/[-_.]+/-/g' | tr 'A-Z' 'a-z')
"$py" -m pip list -q --disable-pip-version-check --exclude-editable --format=freeze 2>/dev/null \
  | awk -F'==' -v managed="$managed" '
      BEGIN { n = split(managed, m, "\n"); for (i = 1; i <= n; i++) skip[m[i]] = 1 }
      { name = tolower($1); gsub(/[-_.]+/, "-", name); if (!(name in skip)) print }' >"$constraints"

pip_install "f5-tts, torchaudio, vocos and encodec (--no-deps)" --no-deps "${NO_DEPS[@]}"
pip_install "f5-tts's imports and f5-tts-mlx" -c "$constraints" "$MLX" "${WITH_DEPS[@]}"

# PyPI's torchaudio for Linux x86-64 is a CUDA build: its _torchaudio and libtorchaudio link
# libc10_cuda/libtorch_cuda, which a CPU torch lacks (on macOS, the same holds for any build that
# does not load in this torch), and torchaudio/_extension re-raises the failure of a library that
# is there; it skips the extension only when no `_torchaudio*.so` / `libtorchaudio*.so` is found.
# So those two are renamed aside when, and only when, they fail to load. What f5-tts and vocos
# call (transforms.MelSpectrogram, the mel-scale functions) is Python on torch's own ops;
# torchaudio.load/save would need torchcodec, which our backend does not use.
if ! error=$(torchaudio_imports); then
  lib=$("$py" -c 'import importlib.util as u, pathlib as p
print(p.Path(u.find_spec("torchaudio").origin).parent / "lib")')
  for so in "$lib"/_torchaudio*.so "$lib"/libtorchaudio*.so; do
    if [ -e "$so" ]; then mv -f "$so" "$so.disabled"; fi
  done
  error=$(torchaudio_imports) || fail "torchaudio does not import even without its compiled extension: $error"
  echo "cloning-test-deps: torchaudio's compiled extension does not load beside this torch; renamed aside"
fi

# What the tests import, in one go: a missing dependency is said here, not as a skipped test.
error=$("$py" -c '
import mlx.core, torchaudio, vocos, vocos_mlx
import f5_tts.model, f5_tts.infer.utils_infer, f5_tts_mlx.cfm, f5_tts_mlx.duration
' 2>&1 | tail -n1) || fail "the cloning backends do not import: $error"
rm -f "$log"
echo "cloning-test-deps: installed f5-tts and f5-tts-mlx test dependencies"

#!/usr/bin/env bash
# Installs the lowest transformers release pyproject.toml allows (`transformers>=X`) into
# .venv/transformers-lower: pure Python, without dependencies (those of the venv are used), so
# tests/models/test_transformers_range.py can run the Moonshine-internals tests on it as well as
# on the installed release. Idempotent: does nothing when the folder already holds that release.
#
#     scripts/transformers-range.sh [python]    # default: .venv/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-.venv/bin/python}
folder=.venv/transformers-lower
status=$("$py" -m lora_training.testing.transformers_range)  # e.g. "5.18 absent"
read -r version state <<<"$status"
if [ "$state" = present ]; then
  echo "transformers $version already in $folder"
  exit 0
fi
# Installed beside the folder and swapped in whole: an interrupted install never looks complete.
staging=$(mktemp -d "$folder.staging.XXXXXX")
trap 'rm -rf "$staging"' EXIT
"$py" -m pip install -q --disable-pip-version-check --no-deps --target "$staging" "transformers==$version"
rm -rf "$folder"
mv "$staging" "$folder"
echo "installed transformers $version into $folder"

"""The Moonshine-internals tests again, on the lowest transformers release pyproject.toml allows.

scripts/transformers-range.sh installs that release into .venv/transformers-lower (the Makefile
runs it before the tests); this test puts it first on PYTHONPATH in a subprocess, so the installed
release and the lower bound are both checked by one pytest run, offline. Without the folder the
test skips, except under CI (CI=true), where it fails: CI must not silently test one release.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lora_training.testing.transformers_range import LOWER_FOLDER, ROOT, holds_lower_bound, installed_version, lower_bound

OPS_TESTS = ROOT / "tests" / "models" / "test_moonshine_ops.py"
INSTALL = "scripts/transformers-range.sh"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def test_moonshine_ops_on_the_lowest_supported_transformers():
    lower = lower_bound()
    if not LOWER_FOLDER.exists():
        message = f"{LOWER_FOLDER} absent: run {INSTALL} to test transformers {lower} too"
        if _in_ci():
            pytest.fail(f"{message} (CI must test the lower bound, so it must install it first)")
        pytest.skip(message)
    assert holds_lower_bound(), (f"{LOWER_FOLDER}: holds transformers {installed_version()}, expected "
                                 f"{lower} (pyproject.toml's lower bound); run {INSTALL} again")
    # The version check runs in the subprocess itself: it proves the lower release was the one imported.
    code = (
        "import sys, pytest, transformers\n"
        "from packaging.version import Version\n"
        f"assert Version(transformers.__version__) == Version({lower!r}), transformers.__file__\n"
        f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', {str(OPS_TESTS)!r}]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(LOWER_FOLDER), str(ROOT)]),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"transformers {lower}:\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    assert "passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]

"""The parent process of `run-experiment` validates manifests without importing torch: only
the spawned child trains."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_experiment_runner_and_checking_manifests_does_not_import_torch(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import lora_training.runners.experiment, sys; "
                                              "assert 'torch' not in sys.modules"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # start_experiment's manifest check is the one that imported the trainer (and torch) before.
    code = (
        "import sys\n"
        "from lora_training.config import ExperimentConfig\n"
        "from lora_training.errors import LoraTrainingError\n"
        "from lora_training.runners.experiment import start_experiment\n"
        f"cfg = ExperimentConfig(train_manifest={str(tmp_path / 'none.jsonl')!r}, "
        f"eval_manifest={str(tmp_path / 'none.jsonl')!r})\n"
        "try:\n"
        f"    start_experiment('x', cfg, outputs={str(tmp_path / 'outputs')!r})\n"
        "except LoraTrainingError as e:\n"
        "    assert 'manifest not found' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('a missing manifest was accepted')\n"
        "assert 'torch' not in sys.modules, 'checking manifests imported torch'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

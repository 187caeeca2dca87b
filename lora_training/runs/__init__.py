"""The run-folder contract: every path and file name of outputs/NAME/, in one place.

    run = RunDir.named("my_voice_tune_v5")          # outputs/my_voice_tune_v5
    run.config, run.state_file, run.metrics, run.log, run.checkpoints,
    run.adapter, run.best_adapter, run.eval_results, run.report, run.lock

Runners, the trainer, evaluation, reporting and the CLI ask a `RunDir` for a path instead of
spelling a file name, so the layout can change in one module. The state file, the metrics log
and the result schema live beside it (`runs.state`, `runs.metrics_log`, `runs.results`).
This package imports nothing heavy: `status` and `--help` stay instant.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_training.errors import ConfigError, LoraTrainingError
from lora_training.options import option

# Where experiments live unless --outputs says otherwise (the one default of every command).
DEFAULT_OUTPUTS = "outputs"
# Pipelines keep their state beside the experiments: outputs/pipelines/NAME/state.json.
PIPELINES_DIR = "pipelines"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class RunDir:
    """One experiment's folder; every file the toolkit reads or writes there has a property here."""

    path: Path

    @classmethod
    def named(cls, name: str, outputs: str | os.PathLike = DEFAULT_OUTPUTS) -> "RunDir":
        """outputs/NAME, refusing names that could escape `outputs` or surprise a shell."""
        if not _NAME.match(name):
            raise ConfigError(f"experiment name: expected letters, digits, '.', '_' or '-', got {name!r}")
        return cls(Path(outputs) / name)

    @classmethod
    def all(cls, outputs: str | os.PathLike = DEFAULT_OUTPUTS) -> list["RunDir"]:
        """Every experiment folder under `outputs` (one with a state file), sorted by name."""
        root = Path(outputs)
        if not root.is_dir():
            return []
        return [cls(p) for p in sorted(root.iterdir()) if (p / STATE_FILE).exists()]

    @property
    def name(self) -> str:
        return self.path.name

    # --- files and folders ---------------------------------------------------------------
    @property
    def config(self) -> Path:
        """The full ExperimentConfig the run reads (written before the process starts)."""
        return self.path / "config.json"

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE

    @property
    def lock(self) -> Path:
        """Held by whoever starts or trains this run (`runs.lock`). It lies beside the folder, so a
        refused start leaves the folder untouched and `--overwrite` never removes a held lock."""
        return self.path.with_name(f".{self.name}.lock")

    @property
    def metrics(self) -> Path:
        """One JSON object per logged step (`train`), dev eval (`eval`) and test on the eval manifest (`test`)."""
        return self.path / "metrics.jsonl"

    @property
    def log(self) -> Path:
        return self.path / "train.log"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def adapter(self) -> Path:
        """The final adapter."""
        return self.path / "adapter"

    @property
    def best_adapter(self) -> Path:
        """The adapter of the best dev eval so far (chosen on the dev set, never on the eval manifest)."""
        return self.path / "best_adapter"

    @property
    def export(self) -> Path:
        """`export NAME`'s on-device folder (export/export.py)."""
        return self.path / "export"

    @property
    def eval_results(self) -> Path:
        """`evaluate NAME`'s result JSON (schema in `runs.results`)."""
        return self.path / "eval_results.json"

    @property
    def report(self) -> Path:
        return self.path / "report.md"

    def plot(self, kind: str) -> Path:
        """The report's PNG curves: `loss` or `eval`."""
        return self.path / f"{kind}.png"

    # --- reading -------------------------------------------------------------------------
    def adapters(self) -> dict[str, str]:
        """The adapter folders present, by name (for state.json and `status`)."""
        return {p.name: str(p) for p in (self.adapter, self.best_adapter) if p.is_dir()}

    def preferred_adapter(self) -> Path:
        """The adapter `evaluate` and `report` use: the best dev eval's, else the final one."""
        for folder in (self.best_adapter, self.adapter):
            if (folder / "adapter_config.json").is_file():
                return folder
        raise LoraTrainingError(f"{self.path}: no adapter, expected {self.best_adapter.name}/ or "
                                f"{self.adapter.name}/ from a run that reached its first eval; "
                                f"check `just status {self.name}`")

    def load_config(self):
        """The run's ExperimentConfig; a clear error when the folder holds no experiment."""
        from lora_training.config import ExperimentConfig

        if not self.config.is_file():
            raise LoraTrainingError(f"{self.path}: no experiment here, expected {self.config.name} "
                                    f"from `just run-experiment`")
        return ExperimentConfig.load(self.config)

    def read_state(self) -> dict[str, Any] | None:
        from lora_training.runs.state import read_state

        return read_state(self.path)

    def read_metrics(self) -> list[dict[str, Any]]:
        from lora_training.runs.metrics_log import read_metrics

        return read_metrics(self.metrics)


STATE_FILE = "state.json"


@dataclass
class RunRef:
    """The options every command about one experiment shares; commands add theirs by subclassing."""

    name: str = option(None, "experiment name: its folder is OUTPUTS/NAME", positional=True)
    outputs: str = option(DEFAULT_OUTPUTS, "folder holding experiment folders")

    @property
    def folder(self) -> RunDir:
        return RunDir.named(self.name, self.outputs)

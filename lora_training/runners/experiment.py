"""Background experiments: a detached child process whose whole life is visible in outputs/NAME/.

`start` validates cheaply, writes `config.json` and a `queued` state, then spawns
`python -m lora_training.runners.experiment RUN_DIR` in its own session with its output
appended to `train.log`. `status`, `poll` and `stop` only read those files (and signal the
pid): a pid that is gone while the state still says running is reported as `crashed`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from lora_training.config import ExperimentConfig
from lora_training.errors import ConfigError, LoraTrainingError
from lora_training.training.state import ACTIVE, TERMINAL, RunState, read_state

DEFAULT_OUTPUTS = "outputs"
LOG_FILE = "train.log"
PID_FILE = "pid"
# Exit codes of `poll` (and of the foreground run) by final phase.
EXIT_CODES = {"completed": 0, "failed": 1, "crashed": 2, "stopped": 3}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def run_dir_for(name: str, outputs: str | Path = DEFAULT_OUTPUTS) -> Path:
    if not _NAME.match(name):
        raise ConfigError(f"experiment name: expected letters, digits, '.', '_' or '-', got {name!r}")
    return Path(outputs) / name


# --- liveness ---------------------------------------------------------------------------

def _process_start_time(pid: int) -> float | None:
    """Start time of a live (non-zombie) process, or None when it is gone."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def process_alive(state: dict[str, Any]) -> bool:
    pid = state.get("pid")
    if not pid:
        return False
    started = _process_start_time(pid)
    if started is None:
        return False
    recorded = state.get("pid_started")
    # A recycled pid belongs to a process that started later than ours.
    return recorded is None or abs(started - recorded) < 1.0


def effective_state(run_dir: Path) -> dict[str, Any] | None:
    """state.json as written, except a dead process in an active phase is reported `crashed`."""
    state = read_state(run_dir)
    if state is None:
        return None
    if state.get("phase") in ACTIVE and not process_alive(state):
        # A queued run gets a grace period: its child may not have written its pid yet.
        if state.get("phase") == "queued" and time.time() - state.get("updated_at", 0) < 10 and state.get("pid") is None:
            return state
        state = {**state, "phase": "crashed", "error": state.get("error") or "process is gone without a final state",
                 "log_tail": tail(run_dir / LOG_FILE, 10)}
    return state


def tail(path: Path, lines: int) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            return f.read().decode("utf-8", "replace").splitlines()[-lines:]
    except FileNotFoundError:
        return []


# --- start ------------------------------------------------------------------------------

def start_experiment(name: str, cfg: ExperimentConfig | None, *, outputs: str | Path = DEFAULT_OUTPUTS,
                     resume: bool = False, overwrite: bool = False, foreground: bool = False) -> dict[str, Any]:
    """Start (or resume) a run; returns {run_dir, log, pid, phase}. `cfg=None` with resume reuses config.json."""
    from lora_training.training.trainer import load_manifests

    run_dir = run_dir_for(name, outputs)
    state = effective_state(run_dir)
    if state and state.get("phase") in ACTIVE:
        raise LoraTrainingError(f"{name}: already {state['phase']} (pid {state.get('pid')}); "
                                f"`just poll {name}` to follow it or `just stop {name}` to stop it")
    if resume:
        if not (run_dir / "config.json").exists():
            raise LoraTrainingError(f"{run_dir}: nothing to resume, expected config.json from an earlier run")
        saved = ExperimentConfig.load(run_dir / "config.json")
        cfg = saved if cfg is None else cfg
    else:
        if run_dir.exists() and any(run_dir.iterdir()):
            if not overwrite:
                phase = state.get("phase") if state else "unknown"
                raise LoraTrainingError(f"{run_dir}: exists (phase {phase}); pass --resume to continue it "
                                        f"or --overwrite to start again")
            shutil.rmtree(run_dir)
        if cfg is None:
            raise ConfigError("config: expected an experiment config for a new run, got none")
    load_manifests(cfg)  # cheap checks before anything is spawned or loaded
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.json")
    me = os.getpid()
    RunState(run_dir).update(phase="queued", name=name, pid=me if foreground else None,
                             pid_started=_process_start_time(me) if foreground else None, error=None,
                             max_steps=cfg.max_steps, queued_at=time.time())
    log_path = run_dir / LOG_FILE
    if foreground:
        phase = run_in_process(run_dir, resume=resume, echo=True)
        return {"run_dir": str(run_dir), "log": str(log_path), "pid": os.getpid(), "phase": phase}
    cmd = [sys.executable, "-m", "lora_training.runners.experiment", str(run_dir.resolve())]
    if resume:
        cmd.append("--resume")
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=os.getcwd())
    (run_dir / PID_FILE).write_text(f"{proc.pid}\n")
    RunState(run_dir).update(pid=proc.pid, pid_started=_process_start_time(proc.pid))
    return {"run_dir": str(run_dir), "log": str(log_path), "pid": proc.pid, "phase": "queued"}


def run_in_process(run_dir: Path, *, resume: bool, echo: bool) -> str:
    """The child's body (also `--foreground`): train with logs to train.log (and the console when echoing)."""
    import psutil

    from lora_training.training.trainer import Trainer

    run_dir = Path(run_dir)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if echo:
        handlers.append(logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        handlers=handlers, force=True)
    try:
        trainer = Trainer(ExperimentConfig.load(run_dir / "config.json"), run_dir)
    except LoraTrainingError as e:
        logging.getLogger("lora_training.train").error("cannot start: %s", e)
        RunState(run_dir).update(phase="failed", error=str(e), ended_at=time.time())
        return "failed"
    if trainer.is_main:
        trainer.state.update(pid=os.getpid(), pid_started=psutil.Process().create_time())
    return trainer.run(resume=resume)


# --- status, poll, stop -----------------------------------------------------------------

def status(name: str | None = None, *, outputs: str | Path = DEFAULT_OUTPUTS) -> list[dict[str, Any]]:
    """Effective state of one run, or of every run under `outputs`."""
    if name is not None:
        run_dir = run_dir_for(name, outputs)
        state = effective_state(run_dir)
        if state is None:
            raise LoraTrainingError(f"{run_dir}: no such experiment (no state.json)")
        return [{"name": name, "run_dir": str(run_dir), **state}]
    root = Path(outputs)
    rows = []
    for run_dir in sorted(p for p in root.glob("*") if (p / "state.json").exists()) if root.is_dir() else []:
        rows.append({"name": run_dir.name, "run_dir": str(run_dir), **effective_state(run_dir)})
    return rows


def poll(name: str, *, outputs: str | Path = DEFAULT_OUTPUTS, write: Callable[[str], None] = print,
         interval: float = 0.5, from_start: bool = True) -> int:
    """Stream train.log until the run ends; returns the exit code of its final phase."""
    run_dir = run_dir_for(name, outputs)
    if read_state(run_dir) is None:
        raise LoraTrainingError(f"{run_dir}: no such experiment (no state.json)")
    log_path = run_dir / LOG_FILE
    position = 0 if from_start else (log_path.stat().st_size if log_path.exists() else 0)
    pending = b""
    while True:
        state = effective_state(run_dir)
        if log_path.exists():
            with log_path.open("rb") as f:
                f.seek(position)
                chunk = f.read()
                position = f.tell()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                write(line.decode("utf-8", "replace"))
        if state["phase"] in TERMINAL:
            if pending:
                write(pending.decode("utf-8", "replace"))
            write(f"[{name}] {state['phase']}" + (f": {state['error']}" if state.get("error") else ""))
            return EXIT_CODES[state["phase"]]
        time.sleep(interval)


def stop(name: str, *, outputs: str | Path = DEFAULT_OUTPUTS, timeout: float = 120.0) -> dict[str, Any]:
    """Ask a run to checkpoint and end as `stopped` (SIGTERM), waiting up to `timeout` seconds."""
    run_dir = run_dir_for(name, outputs)
    state = effective_state(run_dir)
    if state is None:
        raise LoraTrainingError(f"{run_dir}: no such experiment (no state.json)")
    if state["phase"] not in ACTIVE:
        raise LoraTrainingError(f"{name}: not running (phase {state['phase']})")
    os.kill(state["pid"], signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = effective_state(run_dir)
        if state["phase"] in TERMINAL:
            return state
        time.sleep(0.2)
    raise LoraTrainingError(f"{name}: sent SIGTERM to pid {state['pid']}, still {state['phase']} after {timeout:.0f}s "
                            f"(it stops at the end of the current step or evaluation)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one experiment from its folder (the background child).")
    parser.add_argument("run_dir", help="outputs/NAME with a config.json")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = parser.parse_args(argv)
    return EXIT_CODES[run_in_process(Path(args.run_dir), resume=args.resume, echo=False)]


if __name__ == "__main__":
    raise SystemExit(main())

"""Background experiments: a detached child process whose whole life is visible in outputs/NAME/.

`start` takes the run's lock (`runs.lock`), validates every input, writes `config.json` and a
`queued` state, then spawns `python -m lora_training.runners.experiment RUN_DIR` in its own
session with its output appended to `train.log`; the child inherits the lock and holds it until
it exits. `status`, `poll` and `stop` only read those files (and signal the pid): a pid that is
gone while the state still says running is reported as `crashed`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lora_training.config import ExperimentConfig
from lora_training.errors import ConfigError, LoraTrainingError
from lora_training.options import option
from lora_training.runners.preflight import preflight
from lora_training.runs import DEFAULT_OUTPUTS, RunDir, RunRef
from lora_training.runs.lock import RunLock, RunLocked
from lora_training.runs.state import ACTIVE, TERMINAL, RunState, StateError, read_state

# Exit codes of `poll` (and of the foreground run) by final phase.
EXIT_CODES = {"completed": 0, "failed": 1, "crashed": 2, "stopped": 3}
# How long `stop` waits: a run stops at the end of its current step or evaluation.
STOP_TIMEOUT = 300.0
# A run writes its final state, then exits (and frees its lock) within a few seconds.
EXIT_GRACE = 15.0


@dataclass
class RunOptions(RunRef):
    foreground: bool = option(False, "run in this terminal instead of detaching")
    resume: bool = option(False, "continue a stopped/crashed run from its last checkpoint")
    overwrite: bool = option(False, "delete an earlier run of this name first")


@dataclass
class StatusOptions:
    name: str | None = option(None, "experiment name (all runs when omitted)", positional=True, nargs="?")
    outputs: str = option(DEFAULT_OUTPUTS, "folder holding experiment folders")


@dataclass
class PollOptions(RunRef):
    new_only: bool = option(False, "skip the log written so far")


@dataclass
class StopOptions(RunRef):
    timeout: float = option(STOP_TIMEOUT, "seconds to wait for the run to stop")


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
                 "log_tail": tail(RunDir(run_dir).log, 10)}
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

def experiment_config(name: str, given: dict[str, Any], *, outputs: str | Path = DEFAULT_OUTPUTS,
                      resume: bool = False) -> ExperimentConfig | None:
    """The resume-merge policy: a new run is built from the options given (defaults from the
    dataclass); a resumed run keeps its saved config.json with the given options on top, and
    None means "exactly as saved"."""
    if not resume:
        return ExperimentConfig(**given).with_absolute_paths()
    if not given:
        return None
    run = RunDir.named(name, outputs)
    saved = run.load_config()
    return ExperimentConfig.from_dict({**saved.to_dict(), **given},
                                      source=f"{run.config} with the options given").with_absolute_paths()


def start_experiment(name: str, cfg: ExperimentConfig | None, *, outputs: str | Path = DEFAULT_OUTPUTS,
                     resume: bool = False, overwrite: bool = False, foreground: bool = False,
                     say: Callable[[str], None] = print) -> dict[str, Any]:
    """Start (or resume) a run; returns {run_dir, log, pid, phase}. `cfg=None` with resume reuses config.json.

    Everything is checked before anything is written or removed; `say` reports what `--overwrite` removed.
    """
    run = RunDir.named(name, outputs)
    # Held from the first look at the folder until the child inherits it: no second start can slip in.
    with _lock(run) as lock:
        try:
            state, unreadable = effective_state(run.path), None
        except StateError as e:
            state, unreadable = None, e
        if state and state["phase"] in ACTIVE and process_alive(state):  # a run started without the lock
            raise LoraTrainingError(f"{name}: already {state['phase']} (pid {state.get('pid')}); "
                                    f"`just poll {name}` to follow it or `just stop {name}` to stop it")
        phase = "unreadable" if unreadable else state["phase"] if state else "unknown"
        if resume:
            if not run.config.exists():
                raise LoraTrainingError(f"{run.path}: nothing to resume, expected {run.config.name} from an earlier run")
            cfg = run.load_config() if cfg is None else cfg
        elif run.path.exists() and any(run.path.iterdir()) and not overwrite:
            raise LoraTrainingError(f"{run.path}: exists (phase {phase}); pass --resume to continue it "
                                    f"or --overwrite to start again")
        elif cfg is None:
            raise ConfigError("config: expected an experiment config for a new run, got none")
        overlap = preflight(cfg, name)
        if not resume and run.path.exists():
            _remove_run(run, phase, say)
        elif unreadable:
            say(f"{name}: replacing the unreadable state ({unreadable})")
        run.path.mkdir(parents=True, exist_ok=True)
        cfg.save(run.config)
        me = os.getpid()
        RunState(run.path, initial={"name": name} if unreadable else None).update(
            phase="queued", name=name, pid=me if foreground else None,
            pid_started=_process_start_time(me) if foreground else None, error=None,
            max_steps=cfg.max_steps, queued_at=time.time(), overlap=overlap)
        if foreground:
            phase = run_in_process(run.path, resume=resume, echo=True)
            return {"run_dir": str(run.path), "log": str(run.log), "pid": me, "phase": phase}
        cmd = [sys.executable, "-m", "lora_training.runners.experiment", str(run.path.resolve())]
        if resume:
            cmd.append("--resume")
        with run.log.open("ab") as log_file:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=os.getcwd(), pass_fds=(lock.fileno(),))
        lock.record(proc.pid)
        # state.json is the one record of the pid (with its start time, so a recycled pid is not ours).
        RunState(run.path).update(pid=proc.pid, pid_started=_process_start_time(proc.pid))
    return {"run_dir": str(run.path), "log": str(run.log), "pid": proc.pid, "phase": "queued"}


def _lock(run: RunDir) -> RunLock:
    """The run's lock. When its holder is the run itself and it has written a final state or is dying
    (`poll` returned, or it was killed, and the user starts again at once), it is only exiting: its
    lock goes when its last thread does, so wait for that rather than refuse."""
    deadline = time.time() + EXIT_GRACE
    while True:
        try:
            return RunLock.acquire(run)
        except RunLocked as e:
            try:
                state = read_state(run.path) or {}
            except StateError:
                state = {}
            ending = state.get("phase") in TERMINAL or not process_alive(state)
            finishing = ending and str(state.get("pid")) == e.holder
            if not finishing or time.time() > deadline:
                raise
            time.sleep(0.05)


def _remove_run(run: RunDir, phase: str, say: Callable[[str], None]) -> None:
    """`--overwrite`: delete the earlier run (the caller holds its lock) and say what went."""
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in run.path.iterdir())
    files = sum(1 for p in run.path.rglob("*") if p.is_file())
    shutil.rmtree(run.path)
    if entries:
        say(f"{run.name}: removed {run.path} (phase {phase}; {files} file(s): {', '.join(entries)})")


def run_in_process(run_dir: Path, *, resume: bool, echo: bool) -> str:
    """The child's body (also `--foreground`): train with logs to train.log (and the console when echoing)."""
    import psutil

    from lora_training.training.trainer import Trainer

    run = RunDir(Path(run_dir))
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if echo:
        handlers.append(logging.FileHandler(run.log, encoding="utf-8"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        handlers=handlers, force=True)
    try:
        trainer = Trainer(run.load_config(), run.path)
    except LoraTrainingError as e:
        logging.getLogger("lora_training.train").error("cannot start: %s", e)
        RunState(run.path).update(phase="failed", error=str(e), ended_at=time.time())
        return "failed"
    if trainer.is_main:
        trainer.state.update(pid=os.getpid(), pid_started=psutil.Process().create_time())
    return trainer.run(resume=resume)


# --- status, poll, stop -----------------------------------------------------------------

def _current(run: RunDir) -> dict[str, Any]:
    """The effective state; an error when the folder or its state is gone (deleted meanwhile)."""
    state = effective_state(run.path)
    if state is None:
        raise LoraTrainingError(f"{run.path}: no such experiment, expected {run.state_file.name} "
                                f"from `just run-experiment {run.name}`, got none")
    return state


def status(name: str | None = None, *, outputs: str | Path = DEFAULT_OUTPUTS) -> list[dict[str, Any]]:
    """Effective state of one run, or of every run under `outputs`; in the overview a run whose
    state cannot be read is a row of phase `unreadable` with the reason, so the others still show."""
    if name is not None:
        run = RunDir.named(name, outputs)
        return [{"name": run.name, "run_dir": str(run.path), **_current(run)}]
    rows = []
    for run in RunDir.all(outputs):
        try:
            state = effective_state(run.path)
        except StateError as e:
            state = {"phase": "unreadable", "error": str(e)}
        if state is not None:  # None: deleted since it was listed
            rows.append({"name": run.name, "run_dir": str(run.path), **state})
    return rows


def poll(name: str, *, outputs: str | Path = DEFAULT_OUTPUTS, write: Callable[[str], None] = print,
         interval: float = 0.5, from_start: bool = True) -> int:
    """Stream train.log until the run ends; returns the exit code of its final phase."""
    run = RunDir.named(name, outputs)
    _current(run)
    position = 0 if from_start else (run.log.stat().st_size if run.log.exists() else 0)
    pending = b""
    while True:
        state = _current(run)
        try:
            with run.log.open("rb") as f:
                f.seek(position)
                chunk = f.read()
                position = f.tell()
        except FileNotFoundError:
            chunk = b""
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


def stop(name: str, *, outputs: str | Path = DEFAULT_OUTPUTS, timeout: float = STOP_TIMEOUT) -> dict[str, Any]:
    """Ask a run to checkpoint and end as `stopped` (SIGTERM), waiting up to `timeout` seconds."""
    run = RunDir.named(name, outputs)
    state = _current(run)
    if state["phase"] not in ACTIVE:
        raise LoraTrainingError(f"{name}: not running (phase {state['phase']})")
    if not state.get("pid"):
        raise LoraTrainingError(f"{run.state_file}: pid, expected the queued run's process id, got none yet; "
                                f"try again in a few seconds")
    try:
        os.kill(state["pid"], signal.SIGTERM)
    except ProcessLookupError:
        pass  # ended meanwhile: the loop below reads how
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = _current(run)
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

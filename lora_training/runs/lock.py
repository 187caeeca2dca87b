"""One starter per run folder: an exclusive `flock` on `RunDir.lock`.

`run-experiment` takes the lock before it looks at the folder and holds it while it checks,
writes the config and spawns the trainer; the child inherits the descriptor, so the lock passes
to it with no gap and nobody else can start the run in between. A flock belongs to the open
file, not to a pid: the kernel drops it when the last holder exits, even after `kill -9`, so a
lock file left by a dead run (its pid gone or recycled) is never held, and the next start takes
it over without trusting pids. The file only records the holder's pid, for messages.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from lora_training.errors import LoraTrainingError


class RunLocked(LoraTrainingError):
    """Another process is starting or training this run; `holder` is its pid as the lock file says."""

    def __init__(self, message: str, holder: str):
        super().__init__(message)
        self.holder = holder


class RunLock:
    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, run) -> "RunLock":
        """Take `run`'s lock without waiting; RunLocked when another process holds it."""
        path = Path(run.lock)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise LoraTrainingError(f"{path}: cannot create the run's lock file, expected a writable folder, "
                                    f"got {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise RunLocked(f"{run.name}: already running or being started by pid {holder} (it holds {path}); "
                            f"`just poll {run.name}` to follow it or `just stop {run.name}` to stop it", holder) from e
        except OSError as e:
            os.close(fd)
            raise LoraTrainingError(f"{path}: cannot lock, expected a file system with flock, got {e.strerror}") from e
        lock = cls(path, fd)
        lock.record(os.getpid())
        return lock

    def record(self, pid: int) -> None:
        """Name the holder (after a hand-over, the child) for the message a refused start prints."""
        os.ftruncate(self.fileno(), 0)
        os.pwrite(self.fileno(), f"{pid}\n".encode("ascii"), 0)

    def fileno(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self.path}: lock already released")
        return self._fd

    def release(self) -> None:
        """Close this process's descriptor; a child that inherited it keeps the lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

"""The bad-input and fault matrix's harness: run a CLI command in-process, then check the promise.

Every case asserts the same contract (docs/reliability.md): the exit code, one line of error on
stderr that names the culprit (file, line or field), no traceback, no temp-file names, and the
files on disk unchanged or complete. `snapshot` / `assert_unchanged` compare trees byte for byte.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def error_line(self) -> str:
        lines = [line for line in self.err.splitlines() if line.strip()]
        return lines[-1] if lines else ""


@pytest.fixture
def cli(capsys):
    """cli(*args) -> Outcome of `python main.py args...`, run in this process (fast, same code path)."""
    from lora_training.cli import main

    def run(*args: str) -> Outcome:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


def assert_clean_error(outcome: Outcome, *needles: str, code: int = 1) -> None:
    """Exit `code`, an `error:` line naming every needle, no traceback, no temp file named."""
    assert outcome.code == code, (outcome.code, outcome.err[-2000:])
    assert "Traceback" not in outcome.err, outcome.err[-3000:]
    assert outcome.err.lstrip().startswith("error:"), outcome.err[-2000:]
    assert ".tmp" not in outcome.err, outcome.err
    for needle in needles:
        assert str(needle) in outcome.err, (needle, outcome.err[-2000:])


def snapshot(root: str | os.PathLike) -> dict[str, str]:
    """Relative path -> sha256 of every file under root (hidden files included)."""
    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_unchanged(root: str | os.PathLike, before: dict[str, str]) -> None:
    after = snapshot(root)
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}

"""Atomic writes: every file the toolkit writes goes to a temp file in the same folder, then
is renamed over the target, so a crash never leaves a half-written manifest, state or adapter.

Temp files and folders are created with the modes `open`/`mkdir` would give (0666/0777 less
the umask), not `mkstemp`'s 0600/0700, and a replaced file keeps its mode: a shared dataset
stays readable by the group that could read it before. A failed write names the user's path,
never the temp file.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any, Mapping

from lora_training.errors import ConfigError, LoraTrainingError


class WriteError(LoraTrainingError):
    """A file or folder could not be written; names the target, never a temp file."""


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")


def _write_temp(path: Path, data: bytes) -> Path:
    """`data` in a fresh temp file beside `path`, with the mode `path` has or would get."""
    if (problem := _unwritable(path)) is not None:
        raise WriteError(f"{path}: cannot write, {problem}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else None
        while True:
            tmp = _temp_name(path)
            try:  # O_EXCL and 0o666: the kernel applies the umask, as for any new file
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
    except OSError as e:
        raise WriteError(f"{path}: cannot write, expected a writable file in a folder, got {_reason(e)}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise WriteError(f"{path}: cannot write, expected to write {len(data)} bytes, got {_reason(e)}") from e
        raise
    return tmp


def _reason(e: OSError) -> str:
    """The OS's words without its file names (which may be a temp file's)."""
    return e.strerror or type(e).__name__


def _replace(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"{path}: cannot replace, expected a writable file path, got {_reason(e)}") from e


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    _replace(_write_temp(path, data), path)
    return path


def atomic_write_files(contents: Mapping[str | os.PathLike, bytes]) -> list[Path]:
    """Write several files as one change: every temp file first, then the renames.

    A failure before the renames leaves every target untouched; a failed rename puts back the
    targets already renamed (old content, or no file where there was none), so a failure never
    leaves a new train manifest beside an old eval manifest.
    """
    staged: dict[Path, Path] = {}
    replaced: list[tuple[Path, Path | None]] = []  # targets already renamed, with their old file
    backup = None
    try:
        for path, data in contents.items():
            staged[Path(path)] = _write_temp(Path(path), data)
        for path, tmp in staged.items():
            backup = _backup(path)
            _replace(tmp, path)
            replaced.append((path, backup))
            backup = None
    except BaseException:
        for path, old in reversed(replaced):
            if old is None:
                path.unlink(missing_ok=True)
            else:
                os.replace(old, path)
        replaced.clear()
        raise
    finally:
        for leftover in [*staged.values(), backup, *(old for _, old in replaced)]:
            if leftover is not None:
                leftover.unlink(missing_ok=True)
    return list(staged)


def _backup(path: Path) -> Path | None:
    """A second name for the current file (a hard link; a copy where links are refused), or None."""
    if not path.is_file():
        return None
    backup = _temp_name(path)
    try:
        os.link(path, backup)
    except OSError:
        try:
            shutil.copy2(path, backup)
        except OSError as e:
            backup.unlink(missing_ok=True)
            raise WriteError(f"{path}: cannot keep the old file while replacing it, expected a writable folder, "
                             f"got {_reason(e)}") from e
    return backup


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_replace_dir(tmp_dir: str | os.PathLike, final_dir: str | os.PathLike) -> Path:
    """Move a fully written folder into place; the previous one is removed only afterwards."""
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    old = final_dir.with_name(f".{final_dir.name}.old")
    try:
        if old.exists():
            shutil.rmtree(old)
        if final_dir.exists():
            os.replace(final_dir, old)
        os.replace(tmp_dir, final_dir)
        if old.exists():
            shutil.rmtree(old)
    except OSError as e:
        if old.exists() and not final_dir.exists():  # put the previous folder back
            os.replace(old, final_dir)
        raise WriteError(f"{final_dir}: cannot replace the folder, expected a writable folder, "
                         f"got {_reason(e)}") from e
    return final_dir


def staging_dir(final_dir: str | os.PathLike) -> Path:
    """A fresh empty folder beside `final_dir` to write into before `atomic_replace_dir`."""
    final_dir = Path(final_dir)
    try:
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        while True:
            tmp = _temp_name(final_dir)
            try:
                tmp.mkdir()  # 0o777 less the umask, like the folder it will become
                return tmp
            except FileExistsError:
                continue
    except OSError as e:
        raise WriteError(f"{final_dir}: cannot write, expected a writable folder, got {_reason(e)}") from e


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether `a` and `b` name one file: one path once symlinks are resolved, or hard links to one inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet, so they cannot be linked
        return False


def check_outputs(outputs: Mapping[str, str | os.PathLike], inputs: Mapping[str, str | os.PathLike]) -> None:
    """Refuse outputs that are an input or another output, or that cannot be written, before any
    work or write starts. Keys name the option (`train_out`, `input`), so the message says which
    flag to change."""
    problems = []
    checked: dict[str, str | os.PathLike] = {}
    for name, out in outputs.items():
        clash = next(((other, path) for other, path in [*inputs.items(), *checked.items()] if same_file(out, path)),
                     None)
        if clash is not None:
            kind = "input" if clash[0] in inputs else "output"
            problems.append(f"{name}: {out} is the same file as {clash[0]} {clash[1]}, expected a path that is "
                            f"not an {kind}, got the same file")
        elif (problem := _unwritable(Path(out))) is not None:
            problems.append(f"{name}: cannot write {out}, {problem}")
        checked[name] = out
    if problems:
        raise ConfigError("; ".join(problems))


def _unwritable(path: Path) -> str | None:
    """Why `path` cannot be written as a file (`expected X, got Y`), or None; judged from the
    nearest existing folder, as the write would create the missing ones."""
    if path.is_dir():
        return "expected a file path, got a folder"
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"expected a folder at {folder}, got a file"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"expected a writable folder at {folder}, got no write permission"
    return None

"""Manifests: JSONL, one utterance per line, the only interface between data stages.

Relative audio paths resolve against the manifest's own folder, so a manifest moved together
with its audio keeps working. Loading validates every line and reports all problems at once,
because fixing a 500-line recording session one error per run is miserable.

Lines end at `\n` only, and the writer escapes U+2028, U+2029 and U+0085 (JSON allows them raw
inside strings, but editors and `str.splitlines` break lines there), so any text round-trips.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import unicodedata
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from lora_training.atomic import atomic_write_bytes, atomic_write_files
from lora_training.data.audio import MAX_SECONDS, MIN_SECONDS, audio_duration, audio_path_problem
from lora_training.errors import AudioError, LoraTrainingError, ManifestError

if TYPE_CHECKING:
    from lora_training.config import ExperimentConfig

SOURCES = ("real", "synthetic", "correction")
# The user's own speech: a `correction` is a dictated clip whose transcript the user fixed (or
# confirmed) with `corrections`. Whatever weighs, caps or groups data by source counts it as real.
REAL_SOURCES = ("real", "correction")
# A correction row's review outcome: the heard text was right, or the user typed the written form.
REVIEW_STATUSES = ("accepted", "edited")
# A clip is at most 30 s, and fast speech is ~15 characters a second (~450 per clip), so 2000
# leaves room for written forms longer than their speech (URLs, code) while catching a pasted
# document or a shifted column, which would otherwise fail only at training, on label length
# (Moonshine has 194 decoder positions; the trainer checks the exact token count).
MAX_TEXT_CHARS = 2000
# Characters that end a line for `str.splitlines` and editors but that JSON leaves raw in strings.
_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


@dataclass
class Utterance:
    """One clip and its transcript. `text` is the written form the model should output."""

    audio: str
    text: str
    id: str | None = None
    duration: float | None = None
    source: str | None = None
    speaker: str | None = None
    # What was actually said when it differs from `text`, e.g. "dev at example dot com"
    # for "Email dev@example.com"; synthesis speaks this, training targets `text`.
    spoken: str | None = None
    # Jargon present in `text`, in written form; drives per-term recall in evaluation.
    terms: list[str] | None = None
    # Correction rows only: what the model transcribed ("" when it heard nothing), whether the user
    # accepted or edited it, and when (ISO 8601 UTC).
    heard: str | None = None
    status: str | None = None
    reviewed: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "utterance") -> Utterance:
        problems = field_problems(d)
        if problems:
            raise ManifestError([f"{where}: {p}" for p in problems])
        return cls(**d)


FIELDS = tuple(f.name for f in fields(Utterance))


def is_real(source: str | None) -> bool:
    """Whether a row is the user's own speech; rows without a source are their recordings, as `mix` counts them."""
    return source is None or source in REAL_SOURCES


def _got(value: Any) -> str:
    """JSON of `value`, cut at 60 characters, with invisible characters spelled `\\uXXXX` so a
    zero-width text or a line separator neither hides in nor breaks the one-line message."""
    text = json.dumps(value, ensure_ascii=False)
    text = text if len(text) <= 60 else text[:57] + "..."
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def _visible(text: str) -> str:
    """`text` without format characters (zero-width spaces and joiners, direction marks) and edge space."""
    return "".join(c for c in text if unicodedata.category(c) != "Cf").strip()


def _is_nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and _visible(value) != ""


def field_problems(d: Any) -> list[str]:
    """Every way `d` fails to be an Utterance, as `what, expected X, got Y` (no location)."""
    if not isinstance(d, dict):
        return [f"line is not an object, expected a JSON object with audio and text, got {_got(d)}"]
    problems = []
    for key in d:
        if key not in FIELDS:
            problems.append(f"unknown field {key!r}, expected one of {', '.join(FIELDS)}, got {_got(d[key])}")
    for key in ("audio", "text"):
        if key not in d:
            problems.append(f"missing {key!r}, expected a non-empty string")
        elif isinstance(d[key], str) and d[key].strip() and not _visible(d[key]):
            problems.append(f"invisible {key!r}, expected visible characters, got only zero-width or format "
                            f"characters {_got(d[key])}")
        elif not _is_nonempty_str(d[key]):
            problems.append(f"empty or invalid {key!r}, expected a non-empty string, got {_got(d[key])}")
    text = d.get("text")
    if isinstance(text, str) and len(text) > MAX_TEXT_CHARS:
        problems.append(f"'text' too long, expected at most {MAX_TEXT_CHARS} characters (a 30 s clip holds "
                        f"about 450), got {len(text)} characters starting {_got(text[:40])}")
    for key in ("id", "speaker", "spoken", "reviewed"):
        if d.get(key) is not None and not _is_nonempty_str(d[key]):
            problems.append(f"invalid {key!r}, expected a non-empty string, got {_got(d[key])}")
    duration = d.get("duration")
    if duration is not None and not (
        isinstance(duration, (int, float))
        and not isinstance(duration, bool)
        and math.isfinite(duration)
        and duration > 0
    ):
        problems.append(f"invalid 'duration', expected a number of seconds > 0, got {_got(duration)}")
    source = d.get("source")
    if source is not None and source not in SOURCES:
        problems.append(f"invalid 'source', expected one of {', '.join(SOURCES)}, got {_got(source)}")
    if d.get("heard") is not None and not isinstance(d["heard"], str):
        problems.append(f"invalid 'heard', expected a string, got {_got(d['heard'])}")
    status = d.get("status")
    if status is not None and status not in REVIEW_STATUSES:
        problems.append(f"invalid 'status', expected one of {', '.join(REVIEW_STATUSES)}, got {_got(status)}")
    terms = d.get("terms")
    if terms is not None and not (isinstance(terms, list) and all(_is_nonempty_str(t) for t in terms)):
        problems.append(f"invalid 'terms', expected a list of non-empty strings, got {_got(terms)}")
    elif terms is not None and _is_nonempty_str(text):
        # Ignoring case, so "kubectl" at the start of a sentence still counts; a term absent from
        # its own text is a typo or a shifted row, and its recall would be measured against nothing.
        for term in terms:
            if term.casefold() not in text.casefold():
                problems.append(f"term {term!r} not in 'text', expected each term to occur in the text "
                                f"(ignoring case), got {_got(text)}")
    return problems


def _absolute(path: str | os.PathLike) -> Path:
    # abspath, not resolve(): following symlinks would rewrite a symlinked audio store into
    # its target, and the saved manifest would then stop working when moved with its links.
    return Path(os.path.abspath(path))


def load_manifest(path: str | os.PathLike, *, check_audio: bool = True) -> list[Utterance]:
    """Read and validate a manifest; `audio` fields come back as absolute paths.

    An absent `id` becomes the audio path relative to the manifest folder: stable across
    runs and unique per file, so evaluation results can be joined by id.
    """
    return [utt for _, utt in _read_rows(Path(path), check_audio)]


def load_numbered_manifest(path: str | os.PathLike, *, check_audio: bool = True) -> list[tuple[int, Utterance]]:
    """`load_manifest` with each utterance's line number, for messages that point at `file:line`."""
    return _read_rows(Path(path), check_audio)


def _read_rows(path: Path, check_audio: bool) -> list[tuple[int, Utterance]]:
    """`load_manifest` with each utterance's line number, for messages that point at the line."""
    return _parse_rows(path, _read_lines(path), check_audio)


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise ManifestError([f"{path}: manifest not found, expected an existing JSONL file"])
    try:
        # Bytes, then split("\n"): not splitlines(), as a U+2028 inside a text is not the end of a line, and
        # no newline translation, so `replace_text` writes every other line back exactly (a CRLF's `\r` too).
        return path.read_bytes().decode("utf-8-sig").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else e
        raise ManifestError([f"{path}: unreadable manifest, expected UTF-8 JSONL, got error: {reason}"]) from e


def _parse_rows(path: Path, lines: list[str], check_audio: bool) -> list[tuple[int, Utterance]]:
    folder = _absolute(path).parent
    problems: list[str] = []
    rows: list[tuple[int, Utterance]] = []
    first_line_of_id: dict[str, int] = {}
    first_of_audio: dict[str, tuple[int, str]] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(
                f"{where}: invalid JSON ({e.msg} at column {e.colno}), "
                f"expected one JSON object per line, got {line[:60]!r}"
            )
            continue
        line_problems = field_problems(d)
        problems.extend(f"{where}: {p}" for p in line_problems)
        if line_problems:
            continue
        utt = Utterance(**d)
        audio = Path(os.path.normpath(folder / utt.audio))
        if check_audio and (problem := audio_path_problem(audio)) is not None:
            problems.append(f"{where}: {problem}, got {audio}")
        utt.audio = str(audio)
        # One clip, two transcripts: training would pull it toward both. The same pair twice is
        # fine (`mix` repeats rows to upsample).
        first, first_text = first_of_audio.setdefault(utt.audio, (lineno, utt.text))
        if first_text != utt.text:
            problems.append(f"{where}: audio {d['audio']!r} already listed on line {first} with another text, "
                            f"expected one transcript per clip, got {_got(utt.text)} here and "
                            f"{_got(first_text)} there")
        if utt.id is None:
            utt.id = os.path.relpath(audio, folder).replace(os.sep, "/")
        if utt.id in first_line_of_id:
            first = first_line_of_id[utt.id]
            problems.append(f"{where}: duplicate id {utt.id!r}, expected unique ids, got it already on line {first}")
        else:
            first_line_of_id[utt.id] = lineno
        rows.append((lineno, utt))
    if problems:
        raise ManifestError(problems)
    if not rows:
        raise ManifestError([f"{path}: empty manifest, expected at least one utterance line, got none"])
    return rows


def replace_text(path: str | os.PathLike, lineno: int, text: str, *, row_id: str) -> Utterance:
    """Give line `lineno` a new `text` (stripped), leaving every other byte of the file as it was, so an
    edit made while looking at a row shows in a diff as that one line. `row_id` is the id the editor
    showed: a line that now holds another row (the file changed meanwhile) is refused, as is a file
    that would stop loading (empty text, a term no longer in the text, a clip with two transcripts).
    Nothing is written unless the whole new file validates; returns the new row."""
    path = Path(path)
    lines = _read_lines(path)
    rows = dict(_parse_rows(path, lines, check_audio=False))
    if lineno not in rows or rows[lineno].id != row_id:
        got = f"row {rows[lineno].id!r}" if lineno in rows else "no row there"
        raise ManifestError([f"{path}:{lineno}: row changed since it was shown, expected row {row_id!r}, "
                             f"got {got}; reload the page"])
    line = lines[lineno - 1]
    d = {**json.loads(line), "text": text.strip()}
    ending = line[len(line.rstrip()):]  # a `\r` of a CRLF file stays
    lines[lineno - 1] = json.dumps(d, ensure_ascii=False).translate(_LINE_BREAKS) + ending
    new_rows = dict(_parse_rows(path, lines, check_audio=False))
    bom = "\ufeff" if path.read_bytes().startswith(b"\xef\xbb\xbf") else ""
    atomic_write_bytes(path, (bom + "\n".join(lines)).encode("utf-8"))
    return new_rows[lineno]


def save_manifest(path: str | os.PathLike, utterances: Iterable[Utterance]) -> Path:
    """Write atomically with audio paths relative to the target's folder.

    Relative `audio` paths on Utterance objects are taken relative to the current directory,
    like any Python path; those from load_manifest are already absolute.
    """
    return atomic_write_bytes(path, manifest_bytes(path, utterances))


def save_manifests(manifests: dict[str | os.PathLike, Iterable[Utterance]]) -> list[Path]:
    """Several manifests as one change (`split`'s two sides): every one is validated and
    serialised first, and either all are replaced or none."""
    return atomic_write_files({path: manifest_bytes(path, utts) for path, utts in manifests.items()})


def save_outputs(manifests: dict[str | os.PathLike, Iterable[Utterance]], *, overwrite: bool) -> list[str]:
    """Write derived manifests (split, mix) as one change; an existing one that would get other rows
    is replaced only with `overwrite` (a re-run that writes the same bytes is fine). Returns the
    paths replaced with other rows, for the summary to say."""
    contents = {Path(p): manifest_bytes(p, utts) for p, utts in manifests.items()}
    # An empty file holds no rows to lose (e.g. one made by `touch` to set its mode).
    changed = [str(p) for p, data in contents.items()
               if p.is_file() and p.read_bytes().strip() and p.read_bytes() != data]
    if changed and not overwrite:
        raise ManifestError([f"{changed[0]}: exists with other rows, expected a new file or the same rows; "
                             f"pass --overwrite to replace {' and '.join(changed)}"])
    atomic_write_files(contents)
    return changed


def manifest_bytes(path: str | os.PathLike, utterances: Iterable[Utterance]) -> bytes:
    """The JSONL `save_manifest` writes at `path`; raises ManifestError before anything is written."""
    path = Path(path)
    folder = _absolute(path).parent
    lines = []
    for i, utt in enumerate(utterances):
        d = utt.to_dict()
        problems = field_problems(d)
        if problems:
            raise ManifestError([f"{path}: utterance {utt.id or i}: {p}" for p in problems])
        d["audio"] = os.path.relpath(_absolute(utt.audio), folder).replace(os.sep, "/")
        lines.append(json.dumps(d, ensure_ascii=False).translate(_LINE_BREAKS) + "\n")
    return "".join(lines).encode("utf-8")


def load_manifests(cfg: ExperimentConfig) -> dict[str, list[Utterance]]:
    """Every manifest of the config by field name (train_manifest, eval_manifest and, when
    set, replay_manifest and corrections_manifest), validated with audio paths checked; all
    problems in one error."""
    problems: list[str] = []
    loaded: dict[str, list[Utterance]] = {}
    for name in ("train_manifest", "eval_manifest", "replay_manifest", "corrections_manifest"):
        path = getattr(cfg, name)
        if not path:
            continue
        try:
            loaded[name] = load_manifest(path)
        except LoraTrainingError as e:
            problems.append(str(e))
    if problems:
        raise LoraTrainingError("\n".join(problems))
    return loaded


def total_seconds(utterances: Iterable[Utterance], *, read_audio: bool = True) -> float:
    """Summed clip length: each `duration` field, else the audio file's header.

    With `read_audio=False` a clip without `duration` counts as 0 s and no file is opened
    (for manifests whose audio may be absent); callers that must say "partial" count
    `u.duration is None` themselves. A header that cannot be read raises AudioError.
    """
    return sum((_seconds(u, read_audio) for u in utterances), 0.0)


def _seconds(utt: Utterance, read_audio: bool) -> float:
    if utt.duration is not None:
        return utt.duration
    return audio_duration(utt.audio) if read_audio else 0.0


def manifest_hash(path: str | os.PathLike) -> str:
    """sha256 of the manifest bytes, so an adapter's sidecar can say exactly what it was trained on."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ManifestError([f"{path}: unreadable manifest, expected an existing file, got error: {e}"]) from e
    return hashlib.sha256(data).hexdigest()


def validate_manifests(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Load each manifest and read every clip's header; one result dict per manifest.

    Reading headers catches corrupt files and clips outside the trainable length range
    before any model is loaded, at a cost of milliseconds per clip.
    """
    results = []
    for path in paths:
        result: dict[str, Any] = {"path": str(path), "ok": False, "utterances": 0, "hours": 0.0, "problems": []}
        try:
            rows = _read_rows(Path(path), check_audio=True)
        except ManifestError as e:
            result["problems"] = e.problems
            results.append(result)
            continue
        # Lengths come from the headers, not the `duration` fields: the files are what is checked.
        measured: list[Utterance] = []
        for lineno, utt in rows:
            where = f"{path}:{lineno}"
            try:
                duration = audio_duration(utt.audio)
            except AudioError as e:
                result["problems"].append(f"{where}: {e}")
                continue
            if not MIN_SECONDS <= duration <= MAX_SECONDS:
                result["problems"].append(
                    f"{where}: clip length out of range, expected {MIN_SECONDS:g}-{MAX_SECONDS:g} s, "
                    f"got {duration:.2f} s ({utt.audio})"
                )
            measured.append(replace(utt, duration=duration))
        hours = total_seconds(measured) / 3600
        result.update(ok=not result["problems"], utterances=len(rows), hours=hours)
        results.append(result)
    return results

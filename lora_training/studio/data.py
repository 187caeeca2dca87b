"""The Data page: every manifest under --data at a glance (rows, hours, sources, speakers, vocabulary
coverage, verify flags), and one manifest's rows to listen to and fix the text of, one line at a time.

Every file the page serves or rewrites is named by a manifest path relative to --data that the listing
itself found, and a row by its line and id: audio paths come from the manifest line, never the URL.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lora_training.capture.corrections import DISCARDED, HEARD_MANIFEST
from lora_training.data.audio import audio_duration
from lora_training.data.manifest import (Utterance, load_manifest, load_numbered_manifest, replace_text,
                                         total_seconds)
from lora_training.data.vocabulary import load_vocabulary
from lora_training.errors import LoraTrainingError, ManifestError
from lora_training.evaluation.verify import default_paths
from lora_training.studio.common import (BadInput, NotFound, audio_response, form, render, required,
                                         studio_options)
from lora_training.studio.serve import StudioOptions

PAGE_SIZE = 50


@dataclass
class ManifestSummary:
    """One line of the listing; `error` set means the file does not load and the counts are empty."""

    rel: str
    error: str | None = None
    utterances: int = 0
    hours: float = 0.0
    sources: Counter[str] = field(default_factory=Counter)
    speakers: Counter[str] = field(default_factory=Counter)
    covered: int = 0  # vocabulary terms with at least one row
    verify: str = "not verified"


@dataclass
class Row:
    """A manifest row as the view shows it, with its verify issues (`stale`: checked an earlier text)."""

    lineno: int
    utt: Utterance
    duration: float | None
    audio_ok: bool
    issues: list[dict]
    stale: bool


def _one_line(e: LoraTrainingError) -> str:
    if isinstance(e, ManifestError) and len(e.problems) > 1:
        return f"{e.problems[0]} (and {len(e.problems) - 1} more)"
    return str(e).split("\n")[0]


def _manifests(options: StudioOptions) -> dict[str, Path]:
    """Every *.jsonl under --data by its path relative to it, except the dictation logs (the Corrections
    page reviews those)."""
    root = Path(options.data)
    logs = {os.path.abspath(Path(options.dictation_dir) / name) for name in (HEARD_MANIFEST, DISCARDED)}
    found = sorted(p for p in root.rglob("*.jsonl") if p.is_file() and os.path.abspath(p) not in logs)
    return {p.relative_to(root).as_posix(): p for p in found}


def _manifest(options: StudioOptions, rel: str) -> tuple[str, Path]:
    """(the listing's name for it, the manifest) that `rel` names: only a file the listing shows, so no URL
    reaches outside --data."""
    pure = PurePosixPath(rel.replace("\\", "/"))
    if pure.is_absolute() or os.path.isabs(rel):
        raise BadInput(f"manifest: absolute path, expected a path relative to {options.data}, got {rel!r}")
    if ".." in pure.parts:
        raise BadInput(f"manifest: path leaves {options.data}, expected a path inside it without '..', got {rel!r}")
    if pure.suffix != ".jsonl":
        raise BadInput(f"manifest: not a manifest, expected a .jsonl file under {options.data}, got {rel!r}")
    if (path := _manifests(options).get(pure.as_posix())) is None:
        raise NotFound(f"manifest: no such manifest under {options.data}, expected one the Data page lists, "
                       f"got {rel!r}")
    return pure.as_posix(), path


def _verify_rows(manifest: Path) -> tuple[dict[str, dict] | None, str | None]:
    """(verify report rows by id, or None without a report; why the report cannot be read, or None)."""
    report = default_paths(manifest)[0]
    if not report.is_file():
        return None, None
    try:
        rows = json.loads(report.read_text(encoding="utf-8"))["utterances"]
        return {str(row["id"]): row for row in rows}, None
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"{report}: unreadable verify report, expected the JSON `just verify` writes, got {e!r}"


def _vocabulary(options: StudioOptions) -> tuple[list[str], str | None]:
    """(the vocabulary's written forms, why there are none or None)."""
    if not Path(options.vocabulary).is_file():
        return [], f"{options.vocabulary}: no vocabulary file, so no term coverage (start the studio with " \
                   f"--vocabulary FILE)"
    try:
        return load_vocabulary(options.vocabulary).written_forms(), None
    except LoraTrainingError as e:
        return [], _one_line(e)


def _summary(rel: str, path: Path, terms: list[str]) -> ManifestSummary:
    summary = ManifestSummary(rel)
    try:
        utts = load_manifest(path)
        summary.hours = total_seconds(utts) / 3600
    except LoraTrainingError as e:
        summary.error = _one_line(e)
        return summary
    summary.utterances = len(utts)
    summary.sources = Counter(u.source or "unset" for u in utts)
    summary.speakers = Counter(u.speaker or "unset" for u in utts)
    present = {t for u in utts for t in u.terms or ()}
    summary.covered = sum(t in present for t in terms)
    flags, problem = _verify_rows(path)
    if problem:
        summary.verify = "report unreadable"
    elif flags is not None:
        flagged = sum(bool(flags[u.id]["issues"]) for u in utts if u.id in flags)
        summary.verify = f"{flagged} flagged of {sum(u.id in flags for u in utts)} checked"
    return summary


def overview(request: Request) -> Response:
    options = studio_options(request)
    terms, vocabulary_problem = _vocabulary(options)
    manifests = [_summary(rel, path, terms) for rel, path in _manifests(options).items()]
    return render(request, "data.html", manifests=manifests, terms=terms, vocabulary_problem=vocabulary_problem,
                  folder_missing=not Path(options.data).is_dir())


def _number(value: str | None, name: str, what: str, high: float = math.inf) -> int:
    """A whole number from 1 to `high` given as text, or BadInput naming the field."""
    try:
        number = int(value or "")
    except ValueError:
        number = 0
    if not 1 <= number <= high:
        raise BadInput(f"{name}: expected {what}, got {value!r}")
    return number


def view(request: Request) -> Response:
    options = studio_options(request)
    rel, path = _manifest(options, required(dict(request.query_params), "manifest",
                                            f"a manifest path relative to {options.data}"))
    rows = load_numbered_manifest(path, check_audio=False)
    pages = math.ceil(len(rows) / PAGE_SIZE)
    page = _number(request.query_params.get("page", "1"), "page", f"a page number from 1 to {pages}", high=pages)
    flags, verify_problem = _verify_rows(path)
    shown = []
    for lineno, utt in rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]:
        audio_ok = Path(utt.audio).is_file()
        duration = utt.duration if utt.duration is not None or not audio_ok else _duration(utt.audio)
        checked = (flags or {}).get(str(utt.id))
        shown.append(Row(lineno, utt, duration, audio_ok, checked["issues"] if checked else [],
                         bool(checked) and checked.get("text") != utt.text))
    return render(request, "data_view.html", rel=rel, rows=shown, count=len(rows), page=page, page_count=pages,
                  verified=flags is not None, verify_problem=verify_problem)


def _duration(audio: str) -> float | None:
    try:
        return audio_duration(audio)
    except LoraTrainingError:
        return None


def _row(request: Request, fields: dict[str, str]) -> tuple[str, Path, int, str]:
    """(manifest rel, its path, line, row id) of the row a request names."""
    options = studio_options(request)
    rel, path = _manifest(options, required(fields, "manifest", f"a manifest path relative to {options.data}"))
    lineno = _number(fields.get("line"), "line", "the row's line number (1 or more)")
    return rel, path, lineno, required(fields, "id", "the row's id")


def _utterance(path: Path, lineno: int, row_id: str) -> Utterance:
    rows = dict(load_numbered_manifest(path, check_audio=False))
    if lineno not in rows or rows[lineno].id != row_id:
        got = f"row {rows[lineno].id!r}" if lineno in rows else "no row"
        raise NotFound(f"{path}:{lineno}: row changed since the page was shown, expected row {row_id!r}, "
                       f"got {got}; reload the page")
    return rows[lineno]


def audio(request: Request) -> Response:
    _, path, lineno, row_id = _row(request, dict(request.query_params))
    return audio_response(_utterance(path, lineno, row_id).audio)


def text_cell(request: Request) -> Response:
    """The text cell, to read (`edit=1`: as a form) — what the row's Edit and Cancel swap in."""
    rel, path, lineno, row_id = _row(request, dict(request.query_params))
    utt = _utterance(path, lineno, row_id)
    return render(request, "data_text.html", rel=rel, lineno=lineno, row_id=row_id, text=utt.text,
                  editing=request.query_params.get("edit") == "1")


async def save_text(request: Request) -> Response:
    """Rewrite one line's text (data/manifest.replace_text); a refusal comes back as the form with the
    error beside it, so the typed text is not lost."""
    fields = await form(request)
    rel, path, lineno, row_id = _row(request, fields)
    try:
        utt = replace_text(path, lineno, fields.get("text", ""), row_id=row_id)
    except LoraTrainingError as e:
        return render(request, "data_text.html", status=400, rel=rel, lineno=lineno, row_id=row_id,
                      text=fields.get("text", ""), editing=True, message=_one_line(e))
    return render(request, "data_text.html", rel=rel, lineno=lineno, row_id=row_id, text=utt.text, editing=False,
                  saved=True)


ROUTES = [Route("/data", overview), Route("/data/view", view), Route("/data/audio", audio),
          Route("/data/text", text_cell), Route("/data/text", save_text, methods=["POST"])]

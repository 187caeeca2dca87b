"""The Results page: a run's eval_results.json as a page, and runs side by side.

The tables are the console's own (`reporting.console`: the metric table, `compare`'s table, the
failures), turned into HTML cell by cell, so a number, its interval and "within noise" read here
exactly as `just evaluate` and `just compare` print them. Each utterance shows its clip and its
transcripts with the words the WER counted as errors marked (diff.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lora_training.errors import LoraTrainingError
from lora_training.formatting import percent
from lora_training.reporting.compare import run_row
from lora_training.reporting.console import compare_table, failures_table, source_table, status_line, summary_table
from lora_training.reporting.report import RunFiles, read_run
from lora_training.reporting.terms import recall_by_source
from lora_training.runs import RunDir
from lora_training.runs.results import SYSTEMS, read_results
from lora_training.studio.common import BadInput, NotFound, audio_response, render, studio_options
from lora_training.studio.diff import word_diff

# The utterance filters, by query value, with their labels.
FILTERS = {"all": "all", "worse": "got worse", "better": "got better", "unchanged": "unchanged"}
# The console's styles as the page's CSS classes (results_macros.html styles them).
_CSS = {"green": "good", "red": "bad", "dim": "muted", "bold": "strong", "yellow": "warn", "strike": "struck"}


# --- the console's tables as HTML -------------------------------------------------------------

@dataclass(frozen=True)
class Piece:
    """A stretch of a cell's text in one style."""

    text: str
    css: str


@dataclass(frozen=True)
class TableView:
    title: str
    caption: str
    headers: list[str]
    numeric: list[bool]
    rows: list[list[list[Piece]]]


def pieces(cell: Any) -> list[Piece]:
    """A rich cell (str or Text) as pieces of text, each with the CSS classes of its styles."""
    if not isinstance(cell, Text):
        return [Piece(str(cell), "")]
    cuts = sorted({0, len(cell.plain), *(s.start for s in cell.spans), *(s.end for s in cell.spans)})
    out = []
    for start, end in zip(cuts, cuts[1:]):
        styles = [str(cell.style), *(str(s.style) for s in cell.spans if s.start <= start and end <= s.end)]
        words = [word for style in styles for word in style.split() if word in _CSS]
        out.append(Piece(cell.plain[start:end], " ".join(dict.fromkeys(_CSS[w] for w in words))))
    return out


def table_view(table: Table) -> TableView:
    """A rich Table's title, caption, header and cells, for results_macros.html's `console_table`."""
    columns = [list(column.cells) for column in table.columns]
    return TableView(title=str(table.title or ""), caption=str(table.caption or ""),
                     headers=[str(column.header) for column in table.columns],
                     numeric=[column.justify == "right" for column in table.columns],
                     rows=[[pieces(cell) for cell in row] for row in zip(*columns)])


# --- reading runs -------------------------------------------------------------------------------

def _run(request: Request, name: str) -> RunDir:
    outputs = studio_options(request).outputs
    run = RunDir.named(name, outputs)
    if not run.path.is_dir():
        raise NotFound(f"run {name}: not found, expected a folder of `just run-experiment` in {outputs}, "
                       f"got nothing at {run.path}")
    return run


def _results(run: RunDir) -> dict[str, Any]:
    results = read_results(run.eval_results, fix=f"rerun `just evaluate {run.name}`")
    if results is None:
        raise NotFound(f"{run.eval_results}: not found, expected the result of `just evaluate {run.name}`, "
                       f"got no file")
    return results


def _systems(results: dict[str, Any]) -> list[str]:
    rows = results["utterances"]
    return [s for s in SYSTEMS if rows and s in rows[0]]


def _normalizer(results: dict[str, Any], system: str) -> str:
    """The normaliser the system's WER was scored with, so the marked words are the counted errors."""
    return (results["summary"].get(system) or {}).get("normalizer") or "jargon"


# --- utterances ---------------------------------------------------------------------------------

def verdict(row: dict[str, Any]) -> str:
    """`better`, `worse` or `unchanged` by the utterance's WER, then by terms spelled right (a fix of
    case, such as "wer" to "WER", that the WER's normalisation does not see)."""
    def rank(system: dict[str, Any]) -> tuple[float, int]:
        return -system["wer"], len(system["terms_hit"])

    before, after = rank(row["baseline"]), rank(row["adapter"])
    return "better" if after > before else "worse" if after < before else "unchanged"


def _transcript(results: dict[str, Any], row: dict[str, Any], system: str) -> dict[str, Any]:
    heard = row[system]
    return {"system": system, "hyp": heard["hyp"], "wer": percent(heard["wer"]),
            "diff": word_diff(row["ref"], heard["hyp"], _normalizer(results, system)),
            "terms_hit": heard["terms_hit"], "terms_missed": heard["terms_missed"], "looping": heard["looping"]}


def _choose(request: Request, results: dict[str, Any], name: str) -> str:
    chosen = request.query_params.get("filter", "all")
    if chosen not in FILTERS:
        raise BadInput(f"filter: unknown, expected one of {', '.join(FILTERS)}, got {chosen!r}")
    if chosen != "all" and len(_systems(results)) < 2:
        raise BadInput(f"filter: {chosen} compares the adapter with the baseline, expected both in "
                       f"`just evaluate {name}`'s result, got only {', '.join(_systems(results)) or 'none'}")
    return chosen


def _utterances(request: Request, name: str, results: dict[str, Any]) -> dict[str, Any]:
    """The template context of the filtered utterance list: filters with their counts, and the rows."""
    chosen = _choose(request, results, name)
    both = len(_systems(results)) == 2
    verdicts = [verdict(row) if both else None for row in results["utterances"]]
    counts = {key: sum(key in ("all", v) for v in verdicts) for key in FILTERS}
    rows = [{"id": row["id"], "ref": row["ref"], "verdict": v, "audio": f"/results/{name}/audio/{i}",
             "transcripts": [_transcript(results, row, s) for s in _systems(results)]}
            for i, (row, v) in enumerate(zip(results["utterances"], verdicts)) if chosen in ("all", v)]
    return {"name": name, "filters": FILTERS if both else {}, "labels": FILTERS, "counts": counts, "chosen": chosen,
            "rows": rows}


# --- the run page's tables ----------------------------------------------------------------------

def _recall(counts: dict[str, Any]) -> str:
    return f"{percent(counts['recall'])} ({counts['hits']}/{counts['total']})"


def per_term(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each reference term's recall per system with its count, whether the adapter trained on it, and
    whether the adapter spells it more often than the baseline (`good`) or less (`bad`)."""
    systems = [s for s in _systems(results) if results["summary"].get(s)]
    per = {s: results["summary"][s]["term_recall"]["per_term"] for s in systems}
    rows = []
    for term, last in (per[systems[-1]] if systems else {}).items():
        first = per[systems[0]][term]
        rows.append({"term": term, "seen": {True: "yes", False: "no", None: "-"}[last["seen"]],
                     "cells": {s: _recall(per[s][term]) for s in systems},
                     "change": "" if first["hits"] == last["hits"] else
                     "good" if last["hits"] > first["hits"] else "bad"})
    return rows


def on_device(run: RunDir) -> list[dict[str, Any]]:
    """`evaluate NAME --runtime X` results beside the export: each runtime's metric table, or its error."""
    out = []
    for path in sorted(run.export.glob("eval_results_*.json")):
        runtime = path.stem.removeprefix("eval_results_")
        try:
            result = read_results(path, fix=f"rerun `just evaluate {run.name} --runtime {runtime}`")
        except LoraTrainingError as e:
            out.append({"runtime": runtime, "error": str(e)})
            continue
        out.append({"runtime": runtime, "table": table_view(summary_table(result))})
    return out


# --- routes -------------------------------------------------------------------------------------

def index(request: Request) -> Response:
    """Every run with a result, its headline numbers in `compare`'s table, and the compare form."""
    outputs = studio_options(request).outputs
    rows, broken, unevaluated = [], [], []
    for run in RunDir.all(outputs):
        if not run.eval_results.is_file():
            unevaluated.append(run.name)
            continue
        try:
            rows.append(run_row(read_run(run.path)))
        except LoraTrainingError as e:
            broken.append({"name": run.name, "error": str(e)})
    return render(request, "results.html", outputs=outputs, names=[r["name"] for r in rows],
                  table=table_view(compare_table(rows)) if rows else None, broken=broken, unevaluated=unevaluated)


def run_page(request: Request) -> Response:
    name = request.path_params["name"]
    run = _run(request, name)
    results = _results(run)
    by_source = source_table(results)
    return render(request, "results_run.html", results=results,
                  summary=table_view(summary_table(results)), gate=pieces(status_line(results)),
                  by_source=table_view(by_source) if by_source else None, recall_groups=recall_by_source(results),
                  terms=per_term(results),
                  failures=table_view(failures_table(results["failures"])) if results["failures"] else None,
                  devices=on_device(run), systems=_systems(results), **_utterances(request, name, results))


def utterances(request: Request) -> Response:
    """The utterance list alone: what a filter swaps in."""
    name = request.path_params["name"]
    return render(request, "results_utterances.html", **_utterances(request, name, _results(_run(request, name))))


def audio(request: Request) -> Response:
    """One utterance's clip, by its index in the result: the path comes from the file, never the URL."""
    name = request.path_params["name"]
    rows = _results(_run(request, name))["utterances"]
    raw = request.path_params["index"]
    expected = f"0-{len(rows) - 1}" if rows else "no index (the result has no utterances)"
    if not raw.isdigit():
        raise BadInput(f"audio index: not a number, expected {expected}, got {raw!r}")
    if int(raw) >= len(rows):
        raise NotFound(f"audio index: out of range, expected {expected}, got {raw}")
    return audio_response(Path(rows[int(raw)]["audio"]))


def compare(request: Request) -> Response:
    """`compare`'s table for the chosen runs, and the utterances they all scored, adapter by adapter."""
    names = list(dict.fromkeys(request.query_params.getlist("run")))
    if len(names) < 2:
        raise BadInput(f"run: compare needs two or more runs, expected ?run=A&run=B, got {len(names)}")
    runs = [read_run(_run(request, name).path) for name in names]
    table = table_view(compare_table([run_row(run) for run in runs]))
    scored = [run for run in runs if run.eval_results]
    return render(request, "results_compare.html", names=names, table=table,
                  scored=[run.name for run in scored], rows=shared_utterances(scored) if len(scored) > 1 else [])


def shared_utterances(runs: list[RunFiles]) -> list[dict[str, Any]]:
    """The utterances (same id and reference) every run's result holds, each run's adapter transcript against
    the reference, those where the adapters disagree first; the clip is served from the first run's result."""
    def keyed(results: dict[str, Any]) -> dict[tuple[str, str], tuple[int, dict[str, Any]]]:
        return {(row["id"], row["ref"]): (i, row) for i, row in enumerate(results["utterances"])}

    tables = [keyed(run.eval_results) for run in runs]
    rows = []
    for key, (index, first) in tables[0].items():
        if not all(key in table for table in tables[1:]):
            continue
        transcripts = [{**_transcript(run.eval_results, table[key][1], "adapter"), "system": run.name}
                       for run, table in zip(runs, tables)]
        rows.append({"id": first["id"], "ref": first["ref"], "audio": f"/results/{runs[0].name}/audio/{index}",
                     "transcripts": transcripts, "differ": len({t["hyp"] for t in transcripts}) > 1})
    return sorted(rows, key=lambda row: not row["differ"])


ROUTES = [
    Route("/results", index),
    Route("/results/compare", compare),
    Route("/results/{name}", run_page),
    Route("/results/{name}/utterances", utterances),
    Route("/results/{name}/audio/{index}", audio),
]

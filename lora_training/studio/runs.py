"""The Runs page: every run `just status` lists, one run's live curves and log with stop and resume,
and the form that starts a run.

Every action calls the library functions the CLI calls (`status`, `experiment_config`,
`start_experiment`, `stop`, `tail`, `RunDir`, `read_metrics`), so the run folders are the one record:
`just status` sees what the studio started and the studio what the CLI started. Endpoints that touch
the disk or a process are sync (Starlette runs them in its threadpool), so no page waits on another.
"""

from __future__ import annotations

import dataclasses
import threading
import typing
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from lora_training.config import ExperimentConfig
from lora_training.errors import ConfigError, LoraTrainingError
from lora_training.formatting import hms, percent
from lora_training.options import default_of
from lora_training.reporting.status_view import (age_text, notes_of, num_text, safety_change_text, safety_text,
                                                 verdict_text)
from lora_training.runners.experiment import experiment_config, start_experiment, status, stop, tail
from lora_training.runs import RunDir
from lora_training.runs.state import ACTIVE
from lora_training.studio import charts
from lora_training.studio.common import BadInput, NotFound, form, is_htmx, render, studio_options

LOG_LINES = 40
RESUMABLE = ("stopped", "crashed")
# `stop` waits until the run has checkpointed: minutes on a slow step or evaluation. Its refusals
# (not running, no pid yet) come at once, so the page waits this long for one, then answers and
# the poll shows the run end as `stopped`.
STOP_ANSWER_SECONDS = 1.0
TABLE_TARGET = "runs-table"


@dataclasses.dataclass(frozen=True)
class FormField:
    """One ExperimentConfig field as a form input: its kind from the annotation, its default as the text
    the input starts with, its help from the field's metadata (as `--help` shows it)."""

    name: str
    kind: str  # int, float, bool, list or text
    optional: bool
    default: str
    help: str
    choices: tuple[str, ...] = ()

    def text(self, value: Any) -> str:
        if value is None:
            return ""
        if self.kind == "bool":
            return "on" if value else ""
        return " ".join(value) if self.kind == "list" else str(value)

    def posted(self, fields: dict[str, str]) -> str | None:
        """The posted text; None for a text input left out of the post (its default stands). An
        unticked checkbox is never posted, so for a checkbox absence means off."""
        if self.kind == "bool":
            return "on" if fields.get(self.name) else ""
        if self.name not in fields:
            return None
        return " ".join(fields[self.name].split())

    def value(self, text: str) -> Any:
        """The typed value; text that does not parse is passed on as typed, so ExperimentConfig's own
        check names the field, the expected type and the text (`max_steps: expected an integer, got 'x'`)."""
        if self.optional and text in ("", "none"):  # empty, or `none` as the help texts say
            return None
        if self.kind == "bool":
            return text == "on"
        if self.kind == "list":
            return text.split()
        if self.kind in ("int", "float"):
            try:
                return int(text) if self.kind == "int" else float(text)
            except ValueError:
                return text
        return text


def _form_field(f: dataclasses.Field, hint: Any) -> FormField:
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    kind = "list" if typing.get_origin(hint) is list else {bool: "bool", int: "int", float: "float"}.get(hint, "text")
    field = FormField(f.name, kind, optional, "", f.metadata["help"], tuple(f.metadata.get("choices") or ()))
    return dataclasses.replace(field, default=field.text(default_of(f)))


_HINTS = typing.get_type_hints(ExperimentConfig)
FIELDS = [_form_field(f, _HINTS[f.name]) for f in dataclasses.fields(ExperimentConfig) if f.metadata.get("cli", True)]
FIELD_NAMES = {f.name for f in FIELDS}


# --- reading runs ------------------------------------------------------------------------

def _state(name: str, outputs: str) -> dict[str, Any]:
    """`status NAME`'s row; 404 for a name with no run (a bad name is the library's 400)."""
    run = RunDir.named(name, outputs)
    if not run.state_file.is_file():
        raise NotFound(f"{run.path}: no such run, expected a folder with {run.state_file.name} "
                       f"from a started run, got none")
    return status(name, outputs=outputs)[0]


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    """A status row with the texts `just status` prints for it (reporting/status_view.py)."""
    last, best = row.get("last_eval") or {}, row.get("best") or {}
    baseline = row.get("safety_baseline")
    return {**row, "step_text": f"{row.get('step', 0)}/{row.get('max_steps', '?')}",
            "loss_text": num_text(row.get("loss"), ".4f"), "lr_text": num_text(row.get("lr"), ".2e"),
            "dev_wer": percent(last.get("wer")), "best_wer": percent(best.get("wer")),
            "safety_change": safety_change_text(row),
            "eta": hms(row.get("eta_seconds")) if row.get("phase") == "running" else "-",
            "updated": age_text(row.get("updated_at")), "notes": notes_of(row),
            "test_text": verdict_text(row.get("test") or {}),
            "last": {**last, "recall": percent(last.get("term_recall")), "safety": safety_text(last, baseline)},
            "best_eval": {**best, "recall": percent(best.get("term_recall")), "safety": safety_text(best, baseline)}}


def _live(name: str, outputs: str, *, stopping: bool = False, action_error: str | None = None) -> dict[str, Any]:
    """The live fragment's context: state, curves from metrics.jsonl, the log's last lines."""
    row = _state(name, outputs)
    run = RunDir.named(name, outputs)
    rows = sorted((r for r in run.read_metrics() if isinstance(r.get("step"), int)), key=lambda r: r["step"])
    # Both charts span the steps logged so far (max_steps before any): early curves stay readable.
    x_max = rows[-1]["step"] if rows else row.get("max_steps") or 0
    active = row["phase"] in ACTIVE
    return {"name": name, "run": _summary(row), "active": active, "stopping": stopping and active,
            "resumable": row["phase"] in RESUMABLE, "action_error": action_error, "log": tail(run.log, LOG_LINES),
            "charts": [charts.line_chart("training loss", charts.loss_series(rows), x_max),
                       charts.line_chart("dev evals, %", charts.eval_series(rows), x_max)]}


def _table(outputs: str) -> dict[str, Any]:
    rows = [_summary(r) for r in status(outputs=outputs)]
    return {"rows": rows, "polling": any(r["phase"] in ACTIVE for r in rows)}


# --- the new-run form --------------------------------------------------------------------

def _form(fields: dict[str, str] | None = None, errors: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The form's context: the defaults, or what was posted (with the problems beside their fields)."""
    if fields is None:
        return {"fields": FIELDS, "values": {f.name: f.default for f in FIELDS}, "errors": {}, "name": "",
                "overwrite": False}
    values = {f.name: f.default if (text := f.posted(fields)) is None else text for f in FIELDS}
    return {"fields": FIELDS, "values": values, "errors": errors or {}, "name": fields.get("name", ""),
            "overwrite": bool(fields.get("overwrite"))}


def _given(fields: dict[str, str]) -> dict[str, Any]:
    """The fields whose text differs from the default's: the dataclass fills in the rest, as for the CLI."""
    return {f.name: f.value(text) for f in FIELDS if (text := f.posted(fields)) is not None and text != f.default}


def _start_new(fields: dict[str, str], outputs: str) -> tuple[str, dict[str, list[str]]]:
    """Start a run from the posted form: its name and the problems by field ("" for the form's top).
    The name and every config field are checked together, before anything is written."""
    name = fields.get("name", "").strip()
    errors: dict[str, list[str]] = {}
    try:
        RunDir.named(name, outputs)
    except ConfigError as e:
        errors["name"] = [str(e)]
    cfg = None
    try:
        cfg = experiment_config(name, _given(fields), outputs=outputs)
    except ConfigError as e:
        for problem in e.problems or [str(e)]:
            where = problem.split(":", 1)[0]
            errors.setdefault(where if where in FIELD_NAMES else "", []).append(problem)
    if errors:
        return name, errors
    try:
        start_experiment(name, cfg, outputs=outputs, overwrite=bool(fields.get("overwrite")))
    except LoraTrainingError as e:  # manifests, the model folder, an existing run: all at the top
        errors[""] = [str(e)]
    return name, errors


# --- routes ------------------------------------------------------------------------------

def _outputs(request: Request) -> str:
    return studio_options(request).outputs


def runs_page(request: Request) -> Response:
    """The runs table and the new-run form; the table alone for its own poll."""
    if is_htmx(request) and request.headers.get("hx-target") == TABLE_TARGET:
        return render(request, "runs_table.html", **_table(_outputs(request)))
    return render(request, "runs.html", **_table(_outputs(request)), form=_form())


async def new_run(request: Request) -> Response:
    fields = await form(request)
    name, errors = await run_in_threadpool(_start_new, fields, _outputs(request))
    if errors:
        if is_htmx(request):
            return render(request, "runs_form.html", status=400, form=_form(fields, errors))
        table = await run_in_threadpool(_table, _outputs(request))
        return render(request, "runs.html", status=400, **table, form=_form(fields, errors))
    url = f"/runs/{name}"
    return Response(status_code=204, headers={"HX-Redirect": url}) if is_htmx(request) \
        else RedirectResponse(url, status_code=303)


def run_page(request: Request) -> Response:
    name = request.path_params["name"]
    return render(request, "runs_run.html", **_live(name, _outputs(request)))


def live(request: Request) -> Response:
    """The fragment each poll swaps in; it stops polling itself once the run has ended."""
    name = request.path_params["name"]
    stopping = request.query_params.get("stopping") == "1"
    return render(request, "runs_live.html", **_live(name, _outputs(request), stopping=stopping))


def _send_stop(name: str, outputs: str) -> None:
    """`stop` in a thread of its own: a refusal is raised here; its wait for the checkpoint goes on
    without holding the request."""
    refused: list[LoraTrainingError] = []

    def ask() -> None:
        try:
            stop(name, outputs=outputs)
        except LoraTrainingError as e:
            refused.append(e)

    thread = threading.Thread(target=ask, name=f"stop {name}", daemon=True)
    thread.start()
    thread.join(STOP_ANSWER_SECONDS)
    if refused:
        raise refused[0]


def _resume(name: str, outputs: str) -> None:
    phase = _state(name, outputs)["phase"]
    if phase not in RESUMABLE:
        raise BadInput(f"{name}: nothing to resume, expected a {' or '.join(RESUMABLE)} run, got phase {phase}")
    start_experiment(name, experiment_config(name, {}, outputs=outputs, resume=True), outputs=outputs, resume=True)


def _action(request: Request, act: typing.Callable[[str, str], None], *, stopping: bool = False) -> Response:
    """Stop or resume: the live fragment (with a refusal in it, 400) for htmx, else back to the run page."""
    name, outputs = request.path_params["name"], _outputs(request)
    _state(name, outputs)  # an unknown run is a 404 before anything is tried
    try:
        act(name, outputs)
    except LoraTrainingError as e:
        if not is_htmx(request):
            raise
        return render(request, "runs_live.html", status=400, **_live(name, outputs, action_error=str(e)))
    if not is_htmx(request):
        return RedirectResponse(f"/runs/{name}", status_code=303)
    return render(request, "runs_live.html", **_live(name, outputs, stopping=stopping))


def stop_run(request: Request) -> Response:
    return _action(request, _send_stop, stopping=True)


def resume_run(request: Request) -> Response:
    return _action(request, _resume)


ROUTES = [
    Route("/runs", runs_page, methods=["GET"]),
    Route("/runs", new_run, methods=["POST"]),
    Route("/runs/{name}", run_page, methods=["GET"]),
    Route("/runs/{name}/live", live, methods=["GET"]),
    Route("/runs/{name}/stop", stop_run, methods=["POST"]),
    Route("/runs/{name}/resume", resume_run, methods=["POST"]),
]

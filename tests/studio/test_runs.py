"""The Runs page: every route's bad input (status, one-line message, nothing written), the form built
from ExperimentConfig, the SVG curves, stop and resume of a run the library started, and a real
browser that starts a tiny run from the form, watches its curves and stops it."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from lora_training.config import ExperimentConfig
from lora_training.runners.experiment import start_experiment, status, stop
from lora_training.runs.state import RunState
from lora_training.studio import charts
from lora_training.studio.app import create_app
from lora_training.studio.runs import FIELDS, _given
from lora_training.studio.serve import StudioOptions

HX = {"HX-Request": "true"}
EVAL = {"step": 80, "set": "dev", "wer": 0.0737, "term_recall": 0.79, "safety_wer": 0.0178, "safety_n": 8}


def _client(outputs: Path) -> TestClient:
    return TestClient(create_app(StudioOptions(outputs=str(outputs), no_browser=True)))


def _fake_runs(outputs: Path) -> None:
    """A finished run as the trainer leaves state.json, and one whose process is gone (`crashed`)."""
    for name, state in {"done": dict(phase="completed", step=80, max_steps=80, last_eval=EVAL, best=EVAL,
                                     safety_baseline=0.0296, loss=0.2336),
                        "gone": dict(phase="running", step=3, max_steps=80, pid=None)}.items():
        (outputs / name).mkdir(parents=True)
        RunState(outputs / name).update(name=name, **state)


def _files(outputs: Path) -> dict[Path, bytes]:
    """Every file but the runs' locks: a start takes `.NAME.lock` beside the folder before it checks
    anything (runs/lock.py), so a refused start leaves that and nothing else."""
    return {p: p.read_bytes() for p in outputs.rglob("*") if p.is_file() and not p.name.endswith(".lock")}


def _text(response) -> str:
    return html.unescape(response.text)


def _wait(predicate, timeout: float = 60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (value := predicate()):
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def _tiny_config(tiny_model_dir, tiny_manifests, steps: int) -> dict[str, str]:
    """The form fields of a fast tiny run (as tests/runners use); no early stop for safety."""
    train, evals = tiny_manifests
    return {"model_id": str(tiny_model_dir), "train_manifest": str(train), "eval_manifest": str(evals),
            "max_steps": str(steps), "eval_interval": "5", "log_interval": "1", "batch_size": "4", "lora_r": "4",
            "lora_alpha": "8", "num_threads": "1", "device": "cpu", "safety_patience": "0"}


def test_runs_page_lists_what_status_lists_and_the_form_follows_the_dataclass(tmp_path):
    _fake_runs(tmp_path)
    page = _client(tmp_path).get("/runs")
    text = _text(page)
    assert page.status_code == 200 and 'href="/runs/done"' in text and 'href="/runs/gone"' in text
    assert "80/80" in text and "7.37%" in text and "-1.18 pts" in text and "0.2336" in text
    assert "crashed" in text and "process is gone without a final state" in text
    assert 'hx-trigger="every 2s"' not in text  # nothing active: the table does not poll
    for f in FIELDS:
        assert f'name="{f.name}"' in text and f.help in text
    assert '<option selected>decoder</option>' in text and 'value="q_proj k_proj v_proj o_proj fc1 fc2"' in text
    assert 'type="checkbox" id="f-use_dora" name="use_dora"' in text and 'id="f-max_steps" name="max_steps"' in text
    assert re.search(r'name="rewrite_spoken" value="on"\s+aria-describedby="[^"]*" checked>', text)  # on by default
    assert not re.search(r'name="use_dora" value="on"\s+aria-describedby="[^"]*" checked>', text)
    fragment = _client(tmp_path).get("/runs", headers={**HX, "HX-Target": "runs-table"})
    assert fragment.status_code == 200 and 'id="runs-table"' in fragment.text
    assert "<nav" not in fragment.text and "new-run" not in fragment.text


def test_form_gives_only_the_fields_changed_from_their_defaults():
    defaults = {f.name: f.default for f in FIELDS}
    assert _given(defaults) == {}
    # An unticked checkbox is not posted: an empty post turns off what is on by default.
    assert _given({}) == {"rewrite_spoken": False} == {f.name: False for f in FIELDS if f.default == "on"}
    changed = {**defaults, "max_steps": "7", "target_modules": " q_proj   v_proj ", "replay_manifest": "",
               "dev_manifest": "none", "use_dora": "on", "lr": "1e-3", "seed": "x"}
    assert _given(changed) == {"max_steps": 7, "target_modules": ["q_proj", "v_proj"], "replay_manifest": None, "dev_manifest": None,
                               "use_dora": True, "lr": 0.001, "seed": "x"}  # `x`: the config's check names it
    assert ExperimentConfig(**_given(defaults)) == ExperimentConfig()


@pytest.mark.parametrize("method, path, status_code, message", [
    ("get", "/runs/nope", 404, "nope: no such run"),
    ("get", "/runs/nope/live", 404, "nope: no such run"),
    ("post", "/runs/nope/stop", 404, "nope: no such run"),
    ("post", "/runs/nope/resume", 404, "nope: no such run"),
    ("get", "/runs/.hidden", 400, "experiment name: expected letters, digits, '.', '_' or '-', got '.hidden'"),
    ("post", "/runs/-x/stop", 400, "experiment name: expected letters"),
    ("post", "/runs/done/stop", 400, "done: not running (phase completed)"),
    ("post", "/runs/done/resume", 400, "done: nothing to resume, expected a stopped or crashed run, got phase completed"),
    ("post", "/runs/gone/resume", 400, "nothing to resume, expected config.json from an earlier run"),
])
@pytest.mark.parametrize("htmx", [False, True])
def test_bad_run_requests_are_one_line_errors_and_write_nothing(tmp_path, method, path, status_code, message, htmx):
    _fake_runs(tmp_path)
    before = _files(tmp_path)
    answer = getattr(_client(tmp_path), method)(path, headers=HX if htmx else {})
    assert answer.status_code == status_code and message in _text(answer)
    assert ("<nav" in answer.text) is not htmx  # a fragment for htmx (swapped in place), else the error page
    assert _files(tmp_path) == before


@pytest.mark.parametrize("fields, beside, top", [
    ({"name": "x", "max_steps": "0"}, {"max_steps": "max_steps: expected a positive integer, got 0"}, None),
    ({"name": "x", "lr": "abc", "batch_size": "2.5"},
     {"lr": "lr: expected a finite number, got 'abc'", "batch_size": "batch_size: expected an integer, got '2.5'"}, None),
    ({"name": "../x", "device": "tpu"}, {"name": "experiment name: expected letters, digits, '.', '_' or '-', got '../x'",
                                        "device": "device: expected one of auto, cpu, cuda, mps, got 'tpu'"}, None),
    ({"name": ""}, {"name": "experiment name: expected letters"}, None),
    ({"name": "x", "train_manifest": "/nonexistent/train.jsonl"}, {}, "/nonexistent/train.jsonl"),
    ({"name": "done"}, {}, "done: exists (phase completed); pass --resume to continue it or --overwrite"),
])
@pytest.mark.parametrize("htmx", [False, True])
def test_new_run_problems_show_beside_their_fields_and_nothing_is_written(tmp_path, fields, beside, top, htmx):
    _fake_runs(tmp_path)
    before = _files(tmp_path)
    answer = _client(tmp_path).post("/runs", data=fields, headers=HX if htmx else {})
    text = _text(answer)
    assert answer.status_code == 400 and 'id="new-run"' in text and ("<nav" in text) is not htmx
    for field, message in beside.items():
        assert f'<span class="field-error" id="f-{field}-error">{message}' in text
    assert (top is None) == ('role="alert"' not in text)
    if top:
        assert top in text.split('role="alert">', 1)[1].split("</p>", 1)[0]
    assert f'id="f-name" name="name" value="{fields["name"]}"' in text  # what was typed stays
    assert _files(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["done", "gone"]


@pytest.mark.parametrize("rows, points", [
    ([], {"training loss": 0, "dev WER": 0}),
    ([{"type": "train", "step": 1, "loss": 2.0}, {"type": "train", "step": 2, "loss": "nan"},
      {"type": "train", "step": 3, "loss": 1.5}], {"training loss": 2, "dev WER": 0}),
    ([{"type": "eval", "step": 0, "wer": 0.5, "term_recall": {"overall": {"recall": None}}, "safety_wer": 0.03,
       "safety_n": 8},
      {"type": "eval", "step": 5, "wer": 0.4, "term_recall": {"overall": {"recall": 0.5}}},
      {"type": "test", "step": 0, "wer": 0.6}],
     {"dev WER": 2, "dev term recall": 1, "safety WER (8 clips)": 1, "training loss": 0}),
])
def test_charts_draw_each_series_from_metrics_rows(rows, points):
    svg = charts.line_chart("training loss", charts.loss_series(rows), 10) + \
        charts.line_chart("dev evals", charts.eval_series(rows), 10)
    for label, count in points.items():
        assert (f'data-series="{label}" data-points="{count}"' in svg) is (count > 0)
    assert ("no points yet" in svg) is (points["training loss"] == 0 or points["dev WER"] == 0)
    assert "<script" not in svg and svg.count("<svg") == 2


def test_studio_resumes_and_stops_a_run_the_library_started(tmp_path, tiny_model_dir, tiny_manifests):
    fields = _tiny_config(tiny_model_dir, tiny_manifests, 4000)
    start_experiment("lib", ExperimentConfig(**_given(fields)).with_absolute_paths(), outputs=tmp_path)
    _wait(lambda: status("lib", outputs=tmp_path)[0].get("step", 0) >= 2)
    assert stop("lib", outputs=tmp_path, timeout=60)["phase"] == "stopped"
    client = _client(tmp_path)
    assert "stopped" in client.get("/runs").text and 'action="/runs/lib/resume"' in client.get("/runs/lib").text
    resumed = client.post("/runs/lib/resume", headers=HX)
    assert resumed.status_code == 200 and 'hx-trigger="every 2s"' in resumed.text and 'action="/runs/lib/stop"' in resumed.text
    again = client.post("/runs/lib/resume", headers=HX)
    assert again.status_code == 400 and "lib: nothing to resume" in _text(again) and 'id="live"' in again.text
    _wait(lambda: (s := status("lib", outputs=tmp_path)[0])["phase"] == "running" and s.get("pid"))
    started = time.time()
    stopping = client.post("/runs/lib/stop", headers=HX)
    assert stopping.status_code == 200 and time.time() - started < 5  # not `stop`'s whole wait
    # A tiny step ends within the second the page waits for a refusal; a longer one is still going.
    if "stop sent" in stopping.text:
        assert "/runs/lib/live?stopping=1" in stopping.text and 'action="/runs/lib/stop"' not in stopping.text
    else:
        assert 'id="phase">stopped<' in stopping.text
    _wait(lambda: status("lib", outputs=tmp_path)[0]["phase"] == "stopped")
    ended = client.get("/runs/lib/live", headers=HX)
    assert 'id="phase">stopped<' in ended.text and "hx-trigger" not in ended.text  # polling ends with the run


def test_browser_starts_a_run_watches_its_curves_and_stops_it(studio, page, shoot, tmp_path, tiny_model_dir,
                                                              tiny_manifests):
    outputs = tmp_path / "outputs"
    page.goto(studio(outputs=str(outputs)) + "/runs")
    page.fill("#f-name", "tiny")
    for name, value in _tiny_config(tiny_model_dir, tiny_manifests, 5000).items():
        if name == "device":
            page.select_option("#f-device", value)
        else:
            page.fill(f"#f-{name}", value)
    page.fill("#f-max_steps", "0")
    page.click("#new-run button[type=submit]")
    error = page.locator("#f-max_steps-error")
    error.wait_for()
    assert error.inner_text() == "max_steps: expected a positive integer, got 0" and not (outputs / "tiny").exists()

    page.fill("#f-max_steps", "5000")
    page.click("#new-run button[type=submit]")
    page.wait_for_url("**/runs/tiny")
    page.wait_for_function("""() => ['training loss', 'dev WER'].every(label => {
        const g = document.querySelector(`g.series[data-series="${label}"]`);
        return g && Number(g.dataset.points) >= 2; })""", timeout=45_000)
    assert page.inner_text("#phase") == "running"
    assert page.locator('g.series[data-series="dev WER"] circle').count() >= 2
    assert "step " in page.inner_text("pre.runs-log")
    shoot(page, "runs")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than a phone
    shoot(page, "runs-phone")

    page.click("#live button:has-text('Stop')")
    page.wait_for_function("document.querySelector('#phase').textContent === 'stopped'", timeout=30_000)
    assert status("tiny", outputs=outputs)[0]["phase"] == "stopped"  # what `just status` reads
    assert page.locator("#live button:has-text('Resume')").is_visible()

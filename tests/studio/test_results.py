"""The Results page: a run's eval_results.json, its utterances with word diffs and filters, compare, and
every bad request as a one-line error; then the page in a real browser, at desktop and phone width."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from lora_training.config import ExperimentConfig
from lora_training.runs import RunDir
from lora_training.studio.app import create_app
from lora_training.studio.diff import Chunk, word_diff
from lora_training.studio.serve import StudioOptions
from lora_training.testing.factories import write_tone

FIXTURE = Path(__file__).resolve().parents[1] / "reporting" / "fixtures" / "eval_results.json"
# v1's adapter is better on utt_0-2, worse on utt_3 and unchanged on utt_4.
UNCHANGED = {"id": "utt_4", "ref": "push to main", "terms": [], "chunks": 1,
             **{s: {"hyp": "push to main", "wer": 0.0, "terms_hit": [], "terms_missed": [], "looping": False}
                for s in ("baseline", "adapter")}}


def _write_run(outputs: Path, name: str, result: dict | None) -> RunDir:
    run = RunDir.named(name, outputs)
    run.path.mkdir(parents=True)
    ExperimentConfig(model_id="embedded:moonshine-base", train_manifest="missing_train.jsonl",
                     eval_manifest="missing_eval.jsonl", max_steps=40, eval_interval=10).save(run.config)
    run.state_file.write_text(json.dumps({"phase": "completed", "step": 40, "started_at": 1000.0,
                                          "ended_at": 1754.0}))
    if result is not None:
        run.eval_results.write_text(json.dumps(result))
    return run


@pytest.fixture
def outputs(tmp_path) -> Path:
    """outputs/ with v1 (evaluated, with an on-device result), v2 (v1 with another adapter) and v0 (not evaluated)."""
    result = json.loads(FIXTURE.read_text())
    result["utterances"].append(UNCHANGED)
    # Transcripts with an inserted and with missing words, beside the fixture's substitutions.
    result["utterances"][1]["baseline"].update(hyp="the where dropped to five percent now", wer=2 / 6)
    result["utterances"][3]["adapter"].update(hyp="open config", wer=0.5)
    for i, row in enumerate(result["utterances"]):
        row["audio"] = str(write_tone(tmp_path / "audio" / f"utt_{i}.wav", seconds=0.3, freq=300 + 50 * i))
    result["seen_terms_by_source"] = {"real": ["kubectl"], "synthetic": ["WER", "kubectl"]}
    summary = result["summary"]
    for system, span in (("baseline", [0.3, 0.6]), ("adapter", [0.05, 0.2])):
        summary[system].update(wer_interval=span, n_words=19)
    # CER's paired interval holds 0: the page must call that change within noise.
    summary["delta_interval"] = {"wer": [-0.5, -0.1], "cer": [-0.2, 0.05], "term_recall": [0.3, 1.0]}
    root = tmp_path / "outputs"
    v1 = _write_run(root, "v1", result)
    v1.export.mkdir()
    (v1.export / "eval_results_moonshine-cpp.json").write_text(json.dumps(result))
    other = copy.deepcopy(result)
    other["utterances"][0]["adapter"].update(hyp="run cube control apply on the cluster", wer=1 / 3, terms_hit=[],
                                             terms_missed=["kubectl"])
    other["utterances"][4]["adapter"].update(hyp="push to Maine", wer=1 / 3)
    other["summary"]["adapter"]["wer"] = 0.2
    _write_run(root, "v2", other)
    _write_run(root, "v0", None)
    return root


def _client(outputs: Path) -> TestClient:
    return TestClient(create_app(StudioOptions(outputs=str(outputs), no_browser=True)))


def _row(html: str, label: str) -> str:
    """The table row whose first cell is `label`."""
    match = re.search(rf"<tr>\s*<td>{re.escape(label)}</td>.*?</tr>", html, flags=re.S)
    assert match, f"no row {label!r}"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", match.group(0)))


# --- the word diff ---------------------------------------------------------------------------

@pytest.mark.parametrize("ref, hyp, expected", [
    ("run kubectl apply", "run cube control apply",
     [Chunk("equal", "run", "run"), Chunk("substitute", "kubectl", "cube control"), Chunk("equal", "apply", "apply")]),
    ("open the file now", "open file now",
     [Chunk("equal", "open", "open"), Chunk("delete", "the", ""), Chunk("equal", "file now", "file now")]),
    ("ship it", "ship it now", [Chunk("equal", "ship it", "ship it"), Chunk("insert", "", "now")]),
    ("Email dev@example.com, today.", "email dev@example.com today",
     [Chunk("equal", "email dev@example.com today", "email dev@example.com today")]),
    ("twenty five pods", "25 pods", [Chunk("equal", "25 pods", "25 pods")]),
    ("", "hello", [Chunk("insert", "", "hello")]),
])
def test_word_diff_marks_what_the_wer_counts(ref, hyp, expected):
    assert word_diff(ref, hyp) == expected


# --- pages -----------------------------------------------------------------------------------

def test_index_lists_evaluated_runs_with_headline_numbers(outputs):
    page = _client(outputs).get("/results")
    assert page.status_code == 200
    assert '<a href="/results/v1">v1</a>' in page.text and '<a href="/results/v2">v2</a>' in page.text
    assert 'name="run" value="v1"' in page.text and 'action="/results/compare"' in page.text
    v1 = _row(page.text.replace('<td><input type="checkbox" name="run" value="v1" aria-label="compare v1"></td>', ""),
              '<a href="/results/v1">v1</a>')
    assert "42.11%" in v1 and "10.53% [5.0, 20.0]" in v1 and "-31.58 pts [-50.0, -10.0]" in v1
    assert "100.00% (3/3)" in v1
    assert "Not evaluated yet: v0" in page.text


def test_run_page_has_every_number_with_its_interval(outputs):
    page = _client(outputs).get("/results/v1").text
    assert "42.11% [30.0, 60.0]" in _row(page, "WER") and "-31.58 pts [-50.0, -10.0]" in _row(page, "WER")
    assert "within noise" in _row(page, "CER") and "within noise" not in _row(page, "WER")
    assert "0.00% (0/3)" in _row(page, "term recall") and "100.00% (3/3)" in _row(page, "term recall")
    assert "safety gate passed: +0.00 WER points (budget +1.00)" in page
    assert re.search(r"Safety set, 2 clips:\s+built-in safety set \(fixture\)", page)
    assert "100.00% (1/1)" in _row(page, "only synthetic") and "(1/1)" in _row(page, "unseen in training")
    kubectl = _row(page, "kubectl")
    assert "yes" in kubectl and "0.00% (0/1)" in kubectl and "100.00% (1/1)" in kubectl
    assert "dev@example.com" in page and "1 failure(s): skipped, not scored" in page
    assert "<strong>moonshine-cpp</strong>" in page


def test_diff_highlights_the_wrong_words(outputs):
    page = _client(outputs).get("/results/v1").text
    assert re.search(r'<mark class="diff" title="reference: kubectl">.*?cube control</mark>', page)
    assert re.search(r'<mark class="diff" title="reference: dev@example.com">.*?dev at example dot com</mark>', page)
    assert '<del class="diff"><span class="sr">(missing:) </span>in vim</del>' in page
    assert '<ins class="diff"><span class="sr">(inserted:) </span>now</ins>' in page
    assert '<span class="sr">(instead of “kubectl”:) </span>' in page  # what a screen reader says


@pytest.mark.parametrize("chosen, ids", [("all", ["utt_0", "utt_1", "utt_2", "utt_3", "utt_4"]),
                                         ("worse", ["utt_3"]), ("better", ["utt_0", "utt_1", "utt_2"]),
                                         ("unchanged", ["utt_4"])])
def test_filters_count_and_select_utterances(outputs, chosen, ids):
    client = _client(outputs)
    fragment = client.get(f"/results/v1/utterances?filter={chosen}", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<nav aria-label=\"pages\"" not in fragment.text
    assert re.findall(r'<strong class="id">([^<]+)</strong>', fragment.text) == ids
    counts = dict(re.findall(r'data-filter="(\w+)".*?<span class="count">(\d+)</span>', fragment.text, flags=re.S))
    assert counts == {"all": "5", "worse": "1", "better": "3", "unchanged": "1"}
    assert re.search(rf'data-filter="{chosen}"[^>]*aria-current="true"', fragment.text)
    assert re.findall(r'<strong class="id">([^<]+)</strong>', client.get(f"/results/v1?filter={chosen}").text) == ids


def test_audio_comes_from_the_result_file(outputs, tmp_path):
    clip = _client(outputs).get("/results/v1/audio/3")
    assert clip.status_code == 200 and clip.headers["content-type"] == "audio/wav"
    assert clip.content == (tmp_path / "audio" / "utt_3.wav").read_bytes()


def test_compare_shows_runs_side_by_side(outputs):
    page = _client(outputs).get("/results/compare?run=v1&run=v2")
    assert page.status_code == 200
    assert '<a href="/results/v1">v1</a>' in page.text and '<a href="/results/v2">v2</a>' in page.text
    assert "10.53% [5.0, 20.0]" in page.text and "20.00%" in page.text
    assert "5 utterance(s) in the results of v1, v2" in page.text and "differ on 2 (listed first)" in page.text
    ids = re.findall(r'<strong class="id">([^<]+)</strong>', page.text)
    assert ids == ["utt_0", "utt_4", "utt_1", "utt_2", "utt_3"]
    first = page.text.split('<li class="card utt"')[1]
    assert 'data-differ="true"' in first and "<dt>v1 " in first and "<dt>v2 " in first
    assert re.search(r'<mark class="diff" title="reference: kubectl">.*?cube control</mark>', first)


@pytest.mark.parametrize("url, status, message", [
    ("/results/nope", 404, "run nope: not found, expected a folder of `just run-experiment`"),
    ("/results/v0", 404, "expected the result of `just evaluate v0`, got no file"),
    ("/results/v0/audio/0", 404, "`just evaluate v0`"),
    ("/results/a%20b", 400, "experiment name: expected letters, digits"),
    ("/results/v1/audio/5", 404, "audio index: out of range, expected 0-4, got 5"),
    ("/results/v1/audio/-1", 400, "audio index: not a number, expected 0-4, got &#39;-1&#39;"),
    ("/results/v1?filter=sideways", 400, "filter: unknown, expected one of all, worse, better, unchanged, "
                                         "got &#39;sideways&#39;"),
    ("/results/v1/utterances?filter=sideways", 400, "filter: unknown"),
    ("/results/compare", 400, "run: compare needs two or more runs, expected ?run=A&amp;run=B, got 0"),
    ("/results/compare?run=v1&run=v1", 400, "got 1"),
    ("/results/compare?run=v1&run=nope", 404, "run nope: not found"),
])
def test_bad_requests_are_one_line_errors(outputs, url, status, message):
    answer = _client(outputs).get(url)
    assert answer.status_code == status
    assert re.search(r"error: (.*)</p>", answer.text).group(1).count("\n") == 0
    assert message in answer.text
    fragment = _client(outputs).get(url, headers={"HX-Request": "true"})
    assert fragment.status_code == status and fragment.text.startswith('<p class="error" role="alert">')


def test_missing_clip_and_corrupt_result_are_clear_errors(outputs, tmp_path):
    (tmp_path / "audio" / "utt_1.wav").unlink()
    missing = _client(outputs).get("/results/v1/audio/1")
    assert missing.status_code == 404 and "utt_1.wav: audio file not found" in missing.text
    _write_run(outputs, "v3", None).eval_results.write_text('{"schema_version": 1, "summ')
    client = _client(outputs)
    corrupt = client.get("/results/v3")
    assert corrupt.status_code == 400 and "eval_results.json:1: invalid JSON" in corrupt.text
    assert "rerun `just evaluate v3`" in corrupt.text
    index = client.get("/results")
    assert index.status_code == 200 and "v3: " in index.text and "invalid JSON" in index.text


def test_a_result_without_baseline_has_no_filters(outputs):
    run = RunDir.named("v1", outputs)
    result = json.loads(run.eval_results.read_text())
    for row in result["utterances"]:
        del row["baseline"]
    run.eval_results.write_text(json.dumps(result))
    client = _client(outputs)
    page = client.get("/results/v1")
    assert page.status_code == 200 and "data-filter" not in page.text and "<dt>adapter " in page.text
    refused = client.get("/results/v1?filter=worse")
    assert refused.status_code == 400 and "expected both in `just evaluate v1`" in refused.text


# --- in a browser ----------------------------------------------------------------------------

def _no_horizontal_overflow(page) -> bool:
    return page.evaluate("document.body.scrollWidth <= document.documentElement.clientWidth")


def test_results_in_a_browser(studio, page, shoot, outputs):
    base = studio(outputs=str(outputs))
    page.goto(f"{base}/results/v1")
    mark = page.locator("mark.diff", has_text="cube control").first
    assert mark.is_visible()
    assert mark.evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
    page.get_by_role("link", name=re.compile("got worse")).click()
    page.wait_for_url(re.compile(r"filter=worse"))
    rows = page.locator("li.utt")
    rows.first.wait_for()
    assert [rows.nth(i).get_attribute("data-verdict") for i in range(rows.count())] == ["worse"]
    assert page.locator("[data-filter=worse][aria-current=true]").count() == 1
    shoot(page, "results")
    page.goto(f"{base}/results/compare?run=v1&run=v2")
    assert page.locator("li.utt").count() == 5
    shoot(page, "results-compare")
    page.set_viewport_size({"width": 390, "height": 844})
    for url in ("/results", "/results/v1", "/results/compare?run=v1&run=v2"):
        page.goto(base + url)
        assert _no_horizontal_overflow(page), url

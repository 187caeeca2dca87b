"""The Data page: the listing (counts, hours, sources, coverage, flags, broken files), a manifest's rows page
by page, audio looked up by line, the inline text edit, every bad request refused with nothing written, and
the whole thing in a real browser at desktop and phone width."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from lora_training.data.manifest import Utterance, load_manifest, save_manifest
from lora_training.studio.app import create_app
from lora_training.studio.serve import StudioOptions
from lora_training.testing.factories import make_manifest, write_tone

ROWS = 55  # more than a page of 50
TEXTS = ["deploy it with kubectl today"] + [f"test sentence number {i}" for i in range(1, ROWS)]


@pytest.fixture
def data(tmp_path) -> Path:
    """data/: a recordings manifest with a verify report, a synthetic one without durations in a subfolder,
    a broken file, the dictation logs (not manifests) and a vocabulary of three terms."""
    root = tmp_path / "data"
    make_manifest(root, ROWS, texts=TEXTS, terms=[["kubectl"]] + [None] * (ROWS - 1), name="recordings.jsonl",
                  seconds=0.5)
    ids = [u.id for u in load_manifest(root / "recordings.jsonl")]
    report = {"utterances": [{"id": ids[0], "text": TEXTS[0], "issues": []},
                             {"id": ids[1], "text": "an older text", "issues": [
                                 {"code": "clipped", "message": "3% of samples at full scale"}]}]}
    (root / "recordings.verify.json").write_text(json.dumps(report))
    synth = [Utterance(audio=str(write_tone(root / "synth" / "audio" / f"{i}.wav", 0.75, freq=600 + 9 * i)),
                       text=f"synthetic sentence {i}", source="synthetic", speaker="tts") for i in range(2)]
    save_manifest(root / "synth" / "synthetic.jsonl", synth)
    (root / "broken.jsonl").write_text('{"audio": "x.wav", "text": "ok"}\nnot json\n')
    (root / "dictation").mkdir()
    (root / "dictation" / "heard.jsonl").write_text('{"id": "d1", "audio": "clips/d1.wav", "text": "hi"}\n')
    (root / "vocabulary.txt").write_text("kubectl | cube control\npytest\nRedis | red is\n")
    return root


def _client(data: Path, **fields) -> TestClient:
    fields.setdefault("vocabulary", str(data / "vocabulary.txt"))
    return TestClient(create_app(StudioOptions(data=str(data), dictation_dir=str(data / "dictation"),
                                               corrections=str(data / "corrections.jsonl"), no_browser=True,
                                               **fields)))


def _error(response) -> str:
    found = re.findall(r'<p class="error" role="alert">error: (.*?)</p>', response.text, re.S)
    assert len(found) == 1, response.text
    return unescape(found[0])


def _text(response) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", response.text)))


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_overview_lists_each_manifest_with_counts_coverage_flags_and_errors(data):
    page = _client(data).get("/data")
    text = _text(page)
    assert page.status_code == 200 and "3 manifest(s) under" in text
    assert "recordings.jsonl 55 0.01 real 55 unset (55) 1/3 1 flagged of 2 checked" in text
    # No duration fields: hours come from the headers (2 x 0.75 s).
    assert "synth/synthetic.jsonl 2 0.00 synthetic 2 tts (2) 0/3 not verified" in text
    assert re.search(r"broken\.jsonl does not load: \S*broken\.jsonl:1: audio file not found, expected an existing "
                     r"file, got \S*x\.wav \(and 1 more\)", text)
    assert "heard.jsonl" not in text and ".verify.json" not in text
    assert 'href="/data/view?manifest=synth/synthetic.jsonl"' in page.text


def test_overview_says_when_the_vocabulary_is_missing(data, tmp_path):
    text = _text(_client(data, vocabulary=str(tmp_path / "none.txt")).get("/data"))
    assert f"{tmp_path / 'none.txt'}: no vocabulary file, so no term coverage" in text
    assert "recordings.jsonl 55 0.01 real 55 unset (55) – 1 flagged" in text


def test_a_missing_data_folder_is_said(tmp_path):
    page = _client(tmp_path / "none")
    assert f"{tmp_path / 'none'}: no such folder" in _text(page.get("/data"))


def test_view_pages_the_rows_with_audio_and_verify_flags(data):
    client = _client(data)
    first = client.get("/data/view", params={"manifest": "recordings.jsonl"})
    assert first.status_code == 200 and first.text.count('<tr id="line-') == 50
    assert "page 1 of 2" in first.text and "page=2" in first.text
    rows = first.text.split('<tr id="line-')
    assert 'src="/data/audio?manifest=recordings.jsonl&line=1&id=audio/utt_0000.wav"' in rows[1]
    assert "deploy it with kubectl today" in rows[1] and "kubectl" in rows[1].split("</td>")[7]
    assert 'title="3% of samples at full scale">clipped</span>' in rows[2] and "checked an earlier text" in rows[2]
    assert "clipped" not in rows[1] and "earlier" not in rows[3]
    second = client.get("/data/view", params={"manifest": "recordings.jsonl", "page": "2"})
    assert second.text.count('<tr id="line-') == 5 and '<tr id="line-55">' in second.text
    synth = client.get("/data/view", params={"manifest": "synth/synthetic.jsonl"})
    assert ">0.75<" in synth.text and "not verified" in synth.text  # the header's length


def test_audio_comes_from_the_manifest_line(data):
    client = _client(data)
    params = {"manifest": "recordings.jsonl", "line": "2", "id": "audio/utt_0001.wav"}
    clip = client.get("/data/audio", params=params)
    assert clip.status_code == 200 and clip.headers["content-type"] == "audio/wav"
    assert clip.content == (data / "audio" / "utt_0001.wav").read_bytes()
    stale = client.get("/data/audio", params={**params, "line": "3"})
    assert stale.status_code == 404 and "row changed since the page was shown" in _error(stale)
    for route in ("/data/audio", "/data/text"):
        assert client.get(route, params={**params, "id": "other"}).status_code == 404
        bad = client.get(route, params={**params, "line": "0"})
        assert bad.status_code == 400 and "line: expected the row's line number (1 or more), got '0'" in _error(bad)
        outside = client.get(route, params={**params, "manifest": "../data/recordings.jsonl"})
        assert outside.status_code == 400 and "manifest: path leaves" in _error(outside)


@pytest.mark.parametrize("params, status, message", [
    ({}, 400, "manifest: missing, expected a manifest path relative to"),
    ({"manifest": "../outside.jsonl"}, 400, "manifest: path leaves"),
    ({"manifest": "synth/../../outside.jsonl"}, 400, "manifest: path leaves"),
    ({"manifest": "/etc/passwd.jsonl"}, 400, "manifest: absolute path, expected a path relative to"),
    ({"manifest": "recordings.verify.json"}, 400, "manifest: not a manifest, expected a .jsonl file"),
    ({"manifest": "dictation/heard.jsonl"}, 404, "manifest: no such manifest under"),
    ({"manifest": "nothing.jsonl"}, 404, "got 'nothing.jsonl'"),
    ({"manifest": "broken.jsonl"}, 400, "broken.jsonl:2: invalid JSON"),
    ({"manifest": "recordings.jsonl", "page": "0"}, 400, "page: expected a page number from 1 to 2, got '0'"),
    ({"manifest": "recordings.jsonl", "page": "3"}, 400, "page: expected a page number from 1 to 2, got '3'"),
    ({"manifest": "recordings.jsonl", "page": "two"}, 400, "got 'two'"),
])
def test_bad_view_requests_are_one_line_errors(data, params, status, message):
    answer = _client(data).get("/data/view", params=params)
    assert answer.status_code == status and message in _error(answer) and "\n" not in _error(answer)


def test_edit_rewrites_only_that_line(data):
    path = data / "recordings.jsonl"
    before = path.read_bytes().split(b"\n")
    client = _client(data)
    row = {"manifest": "recordings.jsonl", "line": "3", "id": "audio/utt_0002.wav"}
    edit = client.get("/data/text", params={**row, "edit": "1"}, headers={"HX-Request": "true"})
    assert edit.status_code == 200 and "<textarea" in edit.text and "test sentence number 2</textarea>" in edit.text
    saved = client.post("/data/text", data={**row, "text": "  Test sentence #2, fixed "})
    assert saved.status_code == 200 and "Test sentence #2, fixed</span>" in saved.text and "saved" in saved.text
    after = path.read_bytes().split(b"\n")
    assert [i for i, (x, y) in enumerate(zip(before, after)) if x != y] == [2] and len(after) == len(before)
    assert json.loads(after[2])["text"] == "Test sentence #2, fixed"
    back = client.get("/data/text", params=row)
    assert "<textarea" not in back.text and "Test sentence #2, fixed" in back.text


@pytest.mark.parametrize("fields, status, message", [
    ({"text": ""}, 400, "recordings.jsonl:3: empty or invalid 'text', expected a non-empty string"),
    ({"text": "   "}, 400, "recordings.jsonl:3: empty or invalid 'text'"),
    ({"line": "1", "id": "audio/utt_0000.wav", "text": "deploy it today"}, 400,
     "recordings.jsonl:1: term 'kubectl' not in 'text'"),
    ({"id": "audio/utt_0009.wav"}, 400, "recordings.jsonl:3: row changed since it was shown, expected row "
                                        "'audio/utt_0009.wav', got row 'audio/utt_0002.wav'; reload the page"),
    ({"line": "99"}, 400, "recordings.jsonl:99: row changed since it was shown"),
    ({"line": "x"}, 400, "line: expected the row's line number (1 or more), got 'x'"),
    ({"id": ""}, 400, "id: missing, expected the row's id, got nothing"),
    ({"manifest": "../data/recordings.jsonl"}, 400, "manifest: path leaves"),
    ({"manifest": "gone.jsonl"}, 404, "manifest: no such manifest"),
])
def test_bad_edits_are_refused_and_write_nothing(data, fields, status, message):
    before = _snapshot(data.parent)
    row = {"manifest": "recordings.jsonl", "line": "3", "id": "audio/utt_0002.wav", "text": "new text", **fields}
    answer = _client(data).post("/data/text", data=row, headers={"HX-Request": "true"})
    assert answer.status_code == status and message in _error(answer) and "\n" not in _error(answer)
    assert _snapshot(data.parent) == before
    if status == 400 and "text" in fields:  # the form comes back with what was typed
        assert f">{fields['text']}</textarea>" in answer.text


def test_data_page_in_a_browser(data, studio, page, shoot):
    from lora_training.cli import main

    path = data / "recordings.jsonl"
    before = path.read_bytes().split(b"\n")
    base = studio(data=str(data), vocabulary=str(data / "vocabulary.txt"), dictation_dir=str(data / "dictation"))
    page.goto(f"{base}/data")
    page.get_by_role("link", name="recordings.jsonl").click()
    page.wait_for_url("**/data/view?manifest=recordings.jsonl")
    assert page.locator("audio").count() == 50
    seconds = page.locator("#line-2 audio").evaluate(
        "a => new Promise((ok, fail) => { a.onloadedmetadata = () => ok(a.duration); a.onerror = fail;"
        " a.preload = 'auto'; a.load(); })")
    assert seconds == pytest.approx(0.5, abs=0.01)
    page.get_by_role("button", name="edit line 2", exact=True).click()
    page.locator("#line-2 textarea").fill("Test sentence one, fixed")
    page.locator("#line-2").get_by_role("button", name="Save").click()
    page.locator("#line-2 .saved").wait_for()
    assert page.locator("#line-2 span.text").inner_text() == "Test sentence one, fixed"
    after = path.read_bytes().split(b"\n")
    assert [i for i, (x, y) in enumerate(zip(before, after)) if x != y] == [1]
    assert json.loads(after[1])["text"] == "Test sentence one, fixed"
    assert main(["validate-manifest", str(path)]) == 0
    shoot(page, "data")
    for url in (f"{base}/data", f"{base}/data/view?manifest=recordings.jsonl"):
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(url)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the tables scroll, not the page
    shoot(page, "data-phone")

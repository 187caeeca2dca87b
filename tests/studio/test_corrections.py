"""The Corrections page: dictated clips with their review state, the audio by clip id, accept / edit /
discard written exactly as `just corrections` writes them, every bad request refused with nothing written,
and the review in a real browser at desktop and phone width."""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from lora_training.capture.corrections import DISCARDED, HEARD_MANIFEST, CorrectionsOptions, review_corrections
from lora_training.data.manifest import load_manifest
from lora_training.studio.app import create_app
from lora_training.studio.serve import StudioOptions
from lora_training.testing.factories import write_tone

HEARD = ["run cube control apply", "open the plan doc", "push to main", ""]


def _uid(i: int) -> str:
    return f"dict-20250101-120000-{i:03d}"


@pytest.fixture
def root(tmp_path) -> Path:
    """data/dictation/ with heard.jsonl and clips/ as `dictate --keep` writes them (the last clip heard nothing)."""
    folder = tmp_path / "data" / "dictation"
    lines = []
    for i, text in enumerate(HEARD, start=1):
        write_tone(folder / "clips" / f"{_uid(i)}.wav", 1.5, freq=300 + 40 * i)
        lines.append({"id": _uid(i), "audio": f"clips/{_uid(i)}.wav", "text": text, "heard": text,
                      "source": "dictation", "model": "embedded:moonshine-base", "duration": 1.5,
                      "created": "2025-01-01T12:00:00+00:00"})
    (folder / HEARD_MANIFEST).write_text("".join(json.dumps(d) + "\n" for d in lines))
    return tmp_path


def _options(root: Path) -> dict:
    return {"data": str(root / "data"), "dictation_dir": str(root / "data" / "dictation"),
            "corrections": str(root / "data" / "corrections.jsonl")}


def _client(root: Path) -> TestClient:
    return TestClient(create_app(StudioOptions(no_browser=True, **_options(root))))


def _rows(root: Path) -> list[dict]:
    path = root / "data" / "corrections.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _discarded(root: Path) -> list[str]:
    path = root / "data" / "dictation" / DISCARDED
    return [json.loads(line)["id"] for line in path.read_text().splitlines()] if path.exists() else []


def _error(response) -> str:
    found = re.findall(r'<p class="error" role="alert">error: (.*?)</p>', response.text, re.S)
    assert len(found) == 1, response.text
    return unescape(found[0])


def _keys(*keys: str):
    """Scripted answers for the terminal review's `ask`."""
    answers = iter(keys)
    return lambda prompt: next(answers)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _text(response) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", response.text)))


def test_the_page_lists_clips_to_review_then_every_clip_with_its_state(root):
    client = _client(root)
    assert client.post("/corrections/decide", data={"id": _uid(1), "action": "accept"}).status_code == 200
    assert client.post("/corrections/decide", data={"id": _uid(3), "action": "discard"}).status_code == 200
    todo = client.get("/corrections")
    assert todo.status_code == 200
    assert "4 clip(s) in" in _text(todo) and "2 to review, 1 accepted, 0 edited, 1 discarded" in _text(todo)
    assert re.findall(r'<article class="card clip" id="clip-([^"]+)"', todo.text) == [_uid(2), _uid(4)]
    assert f'src="/corrections/audio?id={_uid(2)}"' in todo.text and "heard: (nothing)" in _text(todo)
    every = client.get("/corrections", params={"show": "all"})
    states = re.findall(r'<span class="state [^"]+">([^<]+)</span>', every.text)
    assert states == ["accepted", "not reviewed", "discarded", "not reviewed"]


def test_a_missing_heard_file_says_how_to_make_one(tmp_path):
    page = _client(tmp_path).get("/corrections")
    text = _text(page)
    assert page.status_code == 200 and "just dictate --keep" in text
    assert f"{tmp_path / 'data' / 'dictation' / HEARD_MANIFEST} does not exist" in text
    assert str(tmp_path / "data" / "dictation") in text


def test_the_audio_is_looked_up_by_clip_id(root):
    client = _client(root)
    clip = client.get("/corrections/audio", params={"id": _uid(2)})
    assert clip.status_code == 200 and clip.headers["content-type"] == "audio/wav"
    assert clip.content == (root / "data" / "dictation" / "clips" / f"{_uid(2)}.wav").read_bytes()
    unknown = client.get("/corrections/audio", params={"id": "clips/../../secret"})
    assert unknown.status_code == 404 and "clip: unknown id, expected one of" in _error(unknown)


def test_decisions_write_what_the_terminal_review_writes(root, tmp_path_factory):
    """The same decisions through the page and through `just corrections` give the same files (but for
    the time of review), and each side sees the other's decisions as made."""
    terminal = tmp_path_factory.mktemp("terminal")
    shutil.copytree(root / "data", terminal / "data")
    review_corrections(CorrectionsOptions(dictation_dir=str(terminal / "data" / "dictation"),
                                          out=str(terminal / "data" / "corrections.jsonl")),
                       ask=_keys("a", "e", "  Open @docs/plan.md ", "d", "s"), out=lambda line: None)
    client = _client(root)
    edited = client.post("/corrections/decide",
                         data={"id": _uid(2), "action": "edit", "text": "  Open @docs/plan.md "})
    assert edited.status_code == 200 and '<span class="state edited">edited</span>' in edited.text
    assert ">Open @docs/plan.md</textarea>" in edited.text and "saved" in edited.text
    client.post("/corrections/decide", data={"id": _uid(1), "action": "accept", "text": "ignored: accept keeps "
                                                                                            "the heard text"})
    client.post("/corrections/decide", data={"id": _uid(3), "action": "discard"})

    def comparable(rows):
        return sorted(({k: v for k, v in row.items() if k != "reviewed"} for row in rows), key=lambda r: r["id"])

    assert comparable(_rows(root)) == comparable(_rows(terminal))
    assert [(r["id"], r["text"], r["status"], r["source"]) for r in comparable(_rows(root))] == [
        (_uid(1), "run cube control apply", "accepted", "correction"),
        (_uid(2), "Open @docs/plan.md", "edited", "correction")]
    assert _discarded(root) == _discarded(terminal) == [_uid(3)]
    assert [u.source for u in load_manifest(root / "data" / "corrections.jsonl")] == ["correction"] * 2
    left = review_corrections(CorrectionsOptions(dictation_dir=str(root / "data" / "dictation"),
                                                 out=str(root / "data" / "corrections.jsonl")),
                              ask=_keys("q"), out=lambda line: None)
    assert (left.shown, left.unreviewed) == (1, 1)
    again = client.post("/corrections/decide", data={"id": _uid(2), "action": "discard"})  # a new decision
    assert '<span class="state discarded">' in again.text and [r["id"] for r in _rows(root)] == [_uid(1)]


@pytest.mark.parametrize("fields, status, message", [
    ({"id": "dict-nope", "action": "accept"}, 404, "clip: unknown id, expected one of"),
    ({"action": "accept"}, 400, "id: missing, expected a clip id, got nothing"),
    ({"id": _uid(2), "action": "keep"}, 400, "action: expected one of accept, edit, discard, got 'keep'"),
    ({"id": _uid(2)}, 400, "action: expected one of accept, edit, discard, got ''"),
    ({"id": _uid(2), "action": "edit", "text": "   "}, 400,
     f"clip {_uid(2)}: empty or invalid 'text', expected a non-empty string"),
    ({"id": _uid(4), "action": "accept"}, 400, f"clip {_uid(4)}: empty or invalid 'text'"),
    ({"id": _uid(1), "action": "edit", "text": "fine", "gone": True}, 400,
     "heard.jsonl:1: audio file not found, expected an existing file, got"),
])
def test_bad_decisions_are_refused_and_write_nothing(root, fields, status, message):
    if fields.pop("gone", False):
        (root / "data" / "dictation" / "clips" / f"{_uid(1)}.wav").unlink()
    before = _snapshot(root)
    answer = _client(root).post("/corrections/decide", data=fields, headers={"HX-Request": "true"})
    assert answer.status_code == status and message in _error(answer) and "\n" not in _error(answer)
    assert _snapshot(root) == before


def test_a_clip_whose_wav_is_gone_can_only_be_discarded(root):
    (root / "data" / "dictation" / "clips" / f"{_uid(1)}.wav").unlink()
    client = _client(root)
    card = client.get("/corrections").text.split("<article")[1]
    assert "cannot be kept (" in card and card.count(" disabled>") == 2
    assert client.post("/corrections/decide", data={"id": _uid(1), "action": "discard"}).status_code == 200
    assert _discarded(root) == [_uid(1)] and _rows(root) == []


def test_bad_show_is_refused(root):
    answer = _client(root).get("/corrections", params={"show": "some"})
    assert answer.status_code == 400 and "show: expected one of todo, all, got 'some'" in _error(answer)


def test_corrections_page_in_a_browser(root, studio, page, shoot):
    base = studio(**_options(root))
    page.goto(f"{base}/corrections")
    first, second = page.locator(f"#clip-{_uid(1)}"), page.locator(f"#clip-{_uid(2)}")
    assert first.locator("audio").get_attribute("src") == f"/corrections/audio?id={_uid(1)}"
    first.locator("textarea").fill("Run kubectl apply")
    first.get_by_role("button", name="Save edit").click()
    first.locator(".state.edited").wait_for()
    second.get_by_role("button", name="Discard").click()
    second.locator(".state.discarded").wait_for()
    (row,) = _rows(root)
    assert (row["id"], row["text"], row["heard"], row["status"], row["source"]) == (
        _uid(1), "Run kubectl apply", "run cube control apply", "edited", "correction")
    assert row["audio"] == f"dictation/clips/{_uid(1)}.wav" and row["duration"] == 1.5
    assert _discarded(root) == [_uid(2)]
    shoot(page, "corrections")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{base}/corrections?show=all")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shoot(page, "corrections-phone")

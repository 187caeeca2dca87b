"""Manifests: dataclass and file round trips, relative paths, and every problem reported at once."""

import json
import shutil
from pathlib import Path

import pytest

from lora_training.config import ExperimentConfig
from lora_training.data.manifest import (
    Utterance,
    load_manifest,
    load_manifests,
    manifest_hash,
    replace_text,
    save_manifest,
    total_seconds,
    validate_manifests,
)
from lora_training.errors import AudioError, LoraTrainingError, ManifestError
from lora_training.testing.factories import make_manifest, write_tone

FULL = Utterance(
    audio="clips/a.wav",
    text="Email dev@example.com",
    id="a",
    duration=1.25,
    source="synthetic",
    speaker="me",
    spoken="email dev at example dot com",
    terms=["dev@example.com"],
)


def test_to_dict_omits_none_and_from_dict_round_trips():
    assert Utterance.from_dict(FULL.to_dict()) == FULL
    assert Utterance(audio="x.wav", text="hi").to_dict() == {"audio": "x.wav", "text": "hi"}


@pytest.mark.parametrize(
    "d, expected",
    [
        ({"audio": "a.wav"}, "missing 'text'"),
        ({"audio": "a.wav", "text": "  "}, "empty or invalid 'text'"),
        ({"audio": "a.wav", "text": "hi", "transcript": "hi"}, "unknown field 'transcript', expected one of audio, text"),
        ({"audio": "a.wav", "text": "hi", "duration": -1}, "invalid 'duration', expected a number of seconds > 0, got -1"),
        ({"audio": "a.wav", "text": "hi", "duration": "2"}, "invalid 'duration'"),
        ({"audio": "a.wav", "text": "hi", "source": "tts"}, "expected one of real, synthetic, correction, got \"tts\""),
        ({"audio": "a.wav", "text": "hi", "terms": ["ok", ""]}, "invalid 'terms', expected a list of non-empty strings"),
        ({"audio": "a.wav", "text": "hi", "terms": "k8s"}, "invalid 'terms'"),
        ({"audio": 3, "text": "hi"}, "empty or invalid 'audio', expected a non-empty string, got 3"),
        (["a.wav", "hi"], "line is not an object"),
    ],
)
def test_from_dict_rejects_bad_fields(d, expected):
    with pytest.raises(ManifestError, match="^utterance: ") as info:
        Utterance.from_dict(d)
    assert expected in str(info.value)


def test_save_and_load_round_trip(tmp_path):
    write_tone(tmp_path / "clips" / "a.wav")
    save_manifest(tmp_path / "m.jsonl", [Utterance(**{**FULL.to_dict(), "audio": str(tmp_path / "clips" / "a.wav")})])
    line = json.loads((tmp_path / "m.jsonl").read_text())
    assert line["audio"] == "clips/a.wav"
    [loaded] = load_manifest(tmp_path / "m.jsonl")
    assert loaded == Utterance(**{**FULL.to_dict(), "audio": str(tmp_path / "clips" / "a.wav")})


def test_relative_paths_resolve_and_are_rewritten_for_a_new_folder(tmp_path):
    src = make_manifest(tmp_path / "src", 3)
    loaded = load_manifest(src)
    assert all(Path(u.audio).is_absolute() and Path(u.audio).is_file() for u in loaded)
    assert [u.id for u in loaded] == ["audio/utt_0000.wav", "audio/utt_0001.wav", "audio/utt_0002.wav"]

    moved = tmp_path / "elsewhere" / "deep" / "copy.jsonl"
    save_manifest(moved, loaded)
    first = json.loads(moved.read_text().splitlines()[0])
    assert first["audio"] == "../../src/audio/utt_0000.wav"
    assert [u.audio for u in load_manifest(moved)] == [u.audio for u in loaded]


def test_manifest_moved_with_its_audio_keeps_working(tmp_path):
    src = make_manifest(tmp_path / "a", 2)
    shutil.move(tmp_path / "a", tmp_path / "b")
    loaded = load_manifest(tmp_path / "b" / src.name)
    assert all(u.audio.startswith(str(tmp_path / "b")) for u in loaded)


def test_five_defects_are_reported_together_with_file_and_line(tmp_path):
    write_tone(tmp_path / "ok.wav")
    lines = [
        json.dumps({"audio": "ok.wav", "text": "fine", "id": "u1"}),
        "{not json",
        json.dumps({"audio": "ok.wav", "id": "u2"}),
        "",
        json.dumps({"audio": "missing.wav", "text": "where", "id": "u3"}),
        json.dumps({"audio": "ok.wav", "text": "fine", "id": "u1"}),
        json.dumps({"audio": "ok.wav", "text": "fine", "id": "u5", "lang": "en"}),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    problems = info.value.problems
    assert len(problems) == 5
    expected = [
        (2, "invalid JSON"),
        (3, "missing 'text'"),
        (5, "audio file not found"),
        (6, "duplicate id 'u1'"),
        (7, "unknown field 'lang'"),
    ]
    for problem, (lineno, what) in zip(problems, expected):
        assert problem.startswith(f"{path}:{lineno}: {what}"), problem
    assert "line 1" in problems[3]
    assert str(info.value).startswith("5 manifest problem(s):")


def test_missing_audio_is_allowed_when_not_checked(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"audio": "later.wav", "text": "to be recorded"}) + "\n")
    [utt] = load_manifest(path, check_audio=False)
    assert utt.audio == str(tmp_path / "later.wav")
    assert utt.id == "later.wav"


def test_default_ids_can_collide_and_are_reported(tmp_path):
    write_tone(tmp_path / "x.wav")
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps({"audio": a, "text": "t"}) for a in ["x.wav", "./x.wav"]) + "\n")
    with pytest.raises(ManifestError, match=r"m.jsonl:2: duplicate id 'x.wav'.*line 1"):
        load_manifest(path)


def test_missing_and_empty_manifests_name_the_path(tmp_path):
    with pytest.raises(ManifestError, match="nope.jsonl: manifest not found"):
        load_manifest(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ManifestError, match="empty.jsonl: empty manifest"):
        load_manifest(tmp_path / "empty.jsonl")


def test_manifest_hash_follows_content(tmp_path):
    path = make_manifest(tmp_path, 2)
    before = manifest_hash(path)
    assert len(before) == 64
    path.write_text(path.read_text() + "\n")
    assert manifest_hash(path) != before


def test_validate_manifests_reports_hours_and_bad_clips(tmp_path):
    good = make_manifest(tmp_path / "good", 4, seconds=0.9)
    bad = make_manifest(tmp_path / "bad", 2)
    (tmp_path / "bad" / "audio" / "utt_0001.wav").write_bytes(b"not audio")
    write_tone(tmp_path / "bad" / "audio" / "utt_0000.wav", seconds=31.0, sample_rate=8000)
    [g, b, missing] = validate_manifests([good, bad, tmp_path / "none.jsonl"])
    assert g["ok"] and g["utterances"] == 4 and g["hours"] == pytest.approx(3.6 / 3600)
    assert not b["ok"] and len(b["problems"]) == 2
    assert b["problems"][0].startswith(f"{bad}:1: clip length out of range")
    assert b["problems"][1].startswith(f"{bad}:2: ") and "utt_0001.wav: unreadable audio" in b["problems"][1]
    assert not missing["ok"] and "manifest not found" in missing["problems"][0]


def test_total_seconds_prefers_duration_and_reads_the_header_where_it_is_missing(tmp_path):
    tone = write_tone(tmp_path / "a.wav", seconds=0.5)
    utts = [Utterance(audio=str(tone), text="a", duration=2.0), Utterance(audio=str(tone), text="b")]
    assert total_seconds(utts) == pytest.approx(2.5)
    assert total_seconds(utts, read_audio=False) == 2.0  # no file opened: the missing one counts 0 s
    assert total_seconds([Utterance(audio=str(tmp_path / "gone.wav"), text="c")], read_audio=False) == 0.0
    assert total_seconds([]) == 0.0
    with pytest.raises(AudioError):
        total_seconds([Utterance(audio=str(tmp_path / "gone.wav"), text="c")])


def test_load_manifests_returns_each_set_and_reports_every_bad_one_together(tmp_path):
    train = make_manifest(tmp_path / "train", 2)
    evals = make_manifest(tmp_path / "eval", 1)
    loaded = load_manifests(ExperimentConfig(train_manifest=str(train), eval_manifest=str(evals), replay_manifest=None))
    assert sorted(loaded) == ["eval_manifest", "train_manifest"] and len(loaded["train_manifest"]) == 2
    bad = ExperimentConfig(train_manifest=str(tmp_path / "none.jsonl"), eval_manifest=str(evals),
                           replay_manifest=str(tmp_path / "no_replay.jsonl"))
    with pytest.raises(LoraTrainingError) as info:
        load_manifests(bad)
    assert "none.jsonl: manifest not found" in str(info.value)
    assert "no_replay.jsonl: manifest not found" in str(info.value)


def _hand_written(tmp_path) -> Path:
    """A manifest as a person or another tool writes it: BOM, odd spacing, \\u escapes, a CRLF line, no
    trailing newline, a blank line, a row without id; `replace_text` must keep all that byte for byte."""
    for name in ("a", "b", "c"):
        write_tone(tmp_path / "clips" / f"{name}.wav", 0.5)
    lines = [b'\xef\xbb\xbf{"audio":"clips/a.wav",  "text": "caf\\u00e9 with kubectl", "terms": ["kubectl"]}\r',
             b'{"text": "second row", "audio": "clips/b.wav", "id": "b", "speaker": "me"}',
             b"",
             b'{"audio": "clips/c.wav", "text": "third row", "id": "c"}']
    path = tmp_path / "hand.jsonl"
    path.write_bytes(b"\n".join(lines))
    return path


def test_replace_text_changes_one_line_and_keeps_every_other_byte(tmp_path):
    path = _hand_written(tmp_path)
    before = path.read_bytes().split(b"\n")
    utt = replace_text(path, 2, "  the second \u2028 row, fixed ", row_id="b")
    assert utt.text == "the second \u2028 row, fixed" and utt.speaker == "me"
    after = path.read_bytes().split(b"\n")
    assert len(after) == len(before) and [i for i, (x, y) in enumerate(zip(before, after)) if x != y] == [1]
    assert json.loads(after[1]) == {"text": "the second \u2028 row, fixed", "audio": "clips/b.wav", "id": "b",
                                    "speaker": "me"}
    assert b"\\u2028" in after[1]  # escaped: the line stays one line for editors
    # The first row has no id: its id is its audio path; its CRLF and the BOM stay.
    replace_text(path, 1, "tea with kubectl", row_id="clips/a.wav")
    lines = path.read_bytes().split(b"\n")
    assert lines[0].startswith(b"\xef\xbb\xbf{") and lines[0].endswith(b"\r") and lines[1:] == after[1:]
    assert [u.text for u in load_manifest(path)] == ["tea with kubectl", "the second \u2028 row, fixed", "third row"]


@pytest.mark.parametrize("lineno, text, row_id, expected", [
    (2, "", "b", "hand.jsonl:2: empty or invalid 'text'"),
    (2, " \u200b ", "b", "hand.jsonl:2: invisible 'text'"),
    (1, "tea only", "clips/a.wav", "hand.jsonl:1: term 'kubectl' not in 'text'"),
    (2, "new", "c", "hand.jsonl:2: row changed since it was shown, expected row 'c', got row 'b'"),
    (3, "new", "b", "hand.jsonl:3: row changed since it was shown, expected row 'b', got no row there"),
    (9, "new", "b", "hand.jsonl:9: row changed since it was shown"),
    (2, "x" * 2001, "b", "'text' too long"),
])
def test_replace_text_refusals_write_nothing(tmp_path, lineno, text, row_id, expected):
    path = _hand_written(tmp_path)
    before = path.read_bytes()
    with pytest.raises(ManifestError) as e:
        replace_text(path, lineno, text, row_id=row_id)
    assert expected in str(e.value) and "\n" not in str(e.value)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["clips", "hand.jsonl"]


def test_replace_text_refuses_a_second_transcript_for_a_repeated_clip(tmp_path):
    write_tone(tmp_path / "a.wav", 0.5)
    path = tmp_path / "m.jsonl"  # `mix` repeats rows to upsample
    path.write_text('{"audio": "a.wav", "text": "one", "id": "x"}\n{"audio": "a.wav", "text": "one", "id": "y"}\n')
    before = path.read_bytes()
    with pytest.raises(ManifestError, match="already listed on line 1 with another text"):
        replace_text(path, 2, "another text", row_id="y")
    assert path.read_bytes() == before

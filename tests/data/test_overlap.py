"""Train/held-out overlap: by normalised text and by the decoded samples, whatever the clip's name or container."""

import shutil
from dataclasses import replace

import pytest
import soundfile as sf

from lora_training.data import overlap
from lora_training.data.manifest import Utterance, load_manifest, save_manifest
from lora_training.data.overlap import describe_overlaps, find_overlaps, overlapping_rows, read_rows
from lora_training.testing.factories import make_manifest, write_tone


@pytest.fixture
def train(tmp_path):
    return make_manifest(tmp_path / "train", 4, texts=["Run kubectl apply.", "restart nginx", "email dev@example.com",
                                                       "open the logs"], name="train.jsonl", seconds=0.5)


def _held_out(tmp_path, rows: list[tuple[str, str]]):
    """A held-out manifest of (text, audio path) rows."""
    path = tmp_path / "held" / "eval.jsonl"
    path.parent.mkdir(exist_ok=True)
    return save_manifest(path, [Utterance(audio=audio, text=text) for text, audio in rows])


def _fresh_tone(tmp_path, name, freq):
    return str(write_tone(tmp_path / "held" / name, seconds=0.5, freq=freq))


def _pairs(train, held):
    return [(o.row.line, o.held_out.line, o.why) for o in find_overlaps(read_rows([train]), read_rows([held]))]


def test_disjoint_sets_share_nothing(tmp_path, train):
    held = _held_out(tmp_path, [("kubectl get pods", _fresh_tone(tmp_path, "a.wav", 900.0))])
    assert _pairs(train, held) == []


def test_texts_match_after_the_metrics_normalisation(tmp_path, train):
    # Case, edge punctuation and number words differ; the metrics would score these as one sentence.
    held = _held_out(tmp_path, [("something else", _fresh_tone(tmp_path, "a.wav", 900.0)),
                                ("RUN KUBECTL APPLY", _fresh_tone(tmp_path, "b.wav", 950.0))])
    assert _pairs(train, held) == [(1, 2, "same text")]


def test_the_same_wav_under_another_name_is_the_same_clip(tmp_path, train):
    source = load_manifest(train)[1].audio
    copy = tmp_path / "held" / "renamed.wav"
    copy.parent.mkdir()
    shutil.copyfile(source, copy)
    held = _held_out(tmp_path, [("a different transcript", str(copy))])
    assert _pairs(train, held) == [(2, 1, "same audio")]


@pytest.mark.parametrize("suffix, subtype", [(".flac", "PCM_16"), (".wav", "PCM_24"), (".wav", "FLOAT")])
def test_identical_samples_re_encoded_are_the_same_clip(tmp_path, train, suffix, subtype):
    samples, rate = sf.read(load_manifest(train)[2].audio, dtype="float32")
    encoded = tmp_path / "held" / f"re-encoded{suffix}"
    encoded.parent.mkdir()
    sf.write(str(encoded), samples, rate, subtype=subtype)
    held = _held_out(tmp_path, [("email the team", str(encoded))])
    assert _pairs(train, held) == [(3, 1, "same audio")]


def test_a_row_can_share_both_and_each_partner_is_paired(tmp_path, train):
    first = load_manifest(train)[0]
    held = _held_out(tmp_path, [("run kubectl apply", first.audio),
                                ("run kubectl apply!", _fresh_tone(tmp_path, "b.wav", 950.0))])
    assert _pairs(train, held) == [(1, 1, "same text and same audio"), (1, 2, "same text")]
    overlaps = find_overlaps(read_rows([train]), read_rows([held]))
    assert overlapping_rows(overlaps) == 1  # one training row, two partners
    assert describe_overlaps(overlaps) == f"{train}:1 same text and same audio as {held}:1"


def test_only_clips_with_a_matching_header_are_decoded(tmp_path, train, monkeypatch):
    decoded = []
    monkeypatch.setattr(overlap, "samples_hash", lambda path: decoded.append(path) or "same")
    held = _held_out(tmp_path, [("one", str(write_tone(tmp_path / "held" / "long.wav", seconds=0.7))),
                                ("two", str(write_tone(tmp_path / "held" / "fast.wav", seconds=0.5,
                                                       sample_rate=22050)))])
    assert _pairs(train, held) == []
    assert decoded == []  # other lengths and rates cannot hold the same samples


def test_a_punctuation_only_text_matches_nothing(tmp_path, train):
    rows = load_manifest(train)
    save_manifest(train, [replace(rows[0], text="..."), *rows[1:]])
    held = _held_out(tmp_path, [("?!", _fresh_tone(tmp_path, "a.wav", 900.0)),
                                ("...", _fresh_tone(tmp_path, "b.wav", 950.0))])
    assert _pairs(train, held) == []


def test_description_names_the_first_few_then_counts(tmp_path):
    texts = [f"sentence number {i}" for i in range(5)]
    train = make_manifest(tmp_path / "train", 5, texts=texts, name="train.jsonl", seconds=0.5)
    held = make_manifest(tmp_path / "held", 5, texts=texts, name="eval.jsonl", seconds=0.5, base_freq=900.0)
    text = describe_overlaps(find_overlaps(read_rows([train]), read_rows([held])))
    assert text.startswith(f"{train}:1 same text as {held}:1; {train}:2 same text as {held}:2; ")
    assert text.endswith(" (and 2 more)")

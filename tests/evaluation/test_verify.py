"""verify: level checks and prompt WER per clip, the JSON report, and --drop's clean manifest."""

import json

import numpy as np
import pytest

from lora_training.cli import main
from lora_training.data.audio import write_wav
from lora_training.data.manifest import Utterance, load_manifest, save_manifest, validate_manifests
from lora_training.evaluation.verify import VerifyOptions, check_utterances, default_paths, verify_manifest
from lora_training.errors import ManifestError
from lora_training.testing.signals import speech_like


def _manifest(folder, clips):
    """clips: (id, samples, text, spoken) → a manifest with one wav per clip."""
    utterances = []
    for utt_id, samples, text, spoken in clips:
        path = write_wav(folder / "recordings" / f"{utt_id}.wav", samples)
        utterances.append(Utterance(audio=str(path), text=text, id=utt_id, source="real", spoken=spoken))
    return save_manifest(folder / "my_voice_all.jsonl", utterances)


def _clipped():
    return np.clip(4 * speech_like(amplitude=0.5), -1.0, 1.0)


# (written text, spoken form, what the baseline wrote, flagged as mismatch?)
WER_CASES = [
    ("email dev@example.com", "email dev at example dot com", "Email dev at example dot com.", False),
    ("email dev@example.com", "email dev at example dot com", "email dev@example.com", False),
    ("Run kubectl apply now.", "Run cube control apply now.", "run cube controll apply now", False),
    ("bump pytest to version 42", None, "bump pytest to version forty-two", False),
    ("bump pytest to version 42", None, "bump pie test to version 42", False),
    ("Run kubectl apply now.", "Run cube control apply now.", "the weather is lovely today", True),
    ("push the branch to main", None, "", True),
]


@pytest.mark.parametrize("text, spoken, transcript, flagged", WER_CASES)
def test_prompt_check_forgives_jargon_but_not_another_sentence(tmp_path, text, spoken, transcript, flagged):
    path = write_wav(tmp_path / "a.wav", speech_like())
    rows = check_utterances([Utterance(audio=str(path), text=text, id="a", spoken=spoken)], lambda audios: [transcript])
    assert [i["code"] for i in rows[0]["issues"]] == (["mismatch"] if flagged else []), rows[0]["wer"]


def test_unreadable_clip_is_flagged_and_not_transcribed(tmp_path):
    good = write_wav(tmp_path / "good.wav", speech_like())
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav")
    heard = []

    def transcribe(audios):
        heard.append(len(audios))
        return ["push to main"] * len(audios)

    utts = [Utterance(audio=str(bad), text="push to main", id="bad"), Utterance(audio=str(good), text="push to main", id="good")]
    rows = check_utterances(utts, transcribe)
    assert heard == [1]
    assert [[i["code"] for i in r["issues"]] for r in rows] == [["unreadable"], []]
    assert rows[0]["issues"][0]["message"].startswith(f"{bad}: unreadable audio")


def test_verify_on_tiny_model_flags_silent_and_clipped_and_drops_them(tmp_path, tiny_model_dir, capsys):
    import torch

    torch.set_num_threads(1)
    manifest = _manifest(tmp_path / "data", [
        ("rec-0001", speech_like(1.5), "push to main", None),
        ("rec-0002", np.zeros(24000, np.float32), "restart nginx now", "restart engine x now"),
        ("rec-0003", _clipped(), "check the logs", None),
        ("rec-0004", speech_like(1.5, seed=1), "merge the branch", None),
    ])
    # The random tiny model writes nonsense, so the WER check is switched off with a huge limit.
    code = main(["verify", str(manifest), "--model-id", str(tiny_model_dir), "--max-wer", "1e9", "--drop"])
    assert code == 0
    report_path, clean_path = default_paths(manifest)
    report = json.loads(report_path.read_text())
    flagged = {r["id"]: [i["code"] for i in r["issues"]] for r in report["utterances"] if r["issues"]}
    assert flagged == {"rec-0002": ["silent"], "rec-0003": ["clipped"]}
    assert all(isinstance(r["transcript"], str) for r in report["utterances"])
    assert report["clean_manifest"] == str(clean_path)
    assert validate_manifests([clean_path])[0]["ok"]
    assert [u.id for u in load_manifest(clean_path)] == ["rec-0001", "rec-0004"]
    out = capsys.readouterr().out
    assert "rec-0002" in out and "no speech, expected a peak above -40 dBFS" in out
    assert f"2 of 4 utterance(s) flagged; report: {report_path}" in out


def test_drop_with_everything_flagged_refuses_but_writes_the_report(tmp_path, tiny_model_dir):
    import torch

    torch.set_num_threads(1)
    manifest = _manifest(tmp_path, [("rec-0001", np.zeros(16000, np.float32), "push to main", None)])
    out = tmp_path / "clean.jsonl"
    with pytest.raises(ManifestError, match="every utterance flagged"):
        verify_manifest(VerifyOptions(manifest, model_id=str(tiny_model_dir), max_wer=1e9, drop=True, output=out))
    assert not out.exists()
    assert json.loads(default_paths(manifest)[0].read_text())["n_flagged"] == 1

"""The real embedded Moonshine on four espeak-ng jargon sentences and four clips of the built-in safety set."""

from __future__ import annotations

import json
import subprocess

import pytest

from lora_training.cli import main
from lora_training.data.manifest import Utterance, save_manifest

# (written text the model should output, what espeak says, terms)
SENTENCES = [
    ("Please run the unit tests before you merge the pull request.", None, None),
    ("The WER dropped after we retrained the model.", "The word error rate dropped after we retrained the model.",
     ["WER"]),
    ("Restart nginx on the staging server tonight.", "Restart engine x on the staging server tonight.", ["nginx"]),
    ("Email dev@example.com about the failing build.", "Email dev at example dot com about the failing build.",
     ["dev@example.com"]),
]


@pytest.mark.real_model
def test_transcribe_prints_the_baseline_table_and_gates_on_builtin_safety(tmp_path, capsys):
    utterances = []
    for i, (text, spoken, terms) in enumerate(SENTENCES):
        wav = tmp_path / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), spoken or text], check=True)
        utterances.append(Utterance(audio=str(wav), text=text, id=f"s{i}", terms=terms, spoken=spoken))
    manifest = save_manifest(tmp_path / "jargon.jsonl", utterances)
    out = tmp_path / "results.json"

    code = main(["transcribe", "--model-id", "embedded:moonshine-base", "--manifest", str(manifest),
                 "--output", str(out), "--safety", "builtin", "--safety-max-utterances", "4",
                 "--num-threads", "1", "--no-progress"])
    stdout = capsys.readouterr().out

    assert code == 0, stdout
    assert "WER" in stdout and "term recall" in stdout and "safety WER (4 clips)" in stdout and "OK" in stdout
    result = json.loads(out.read_text())
    rows = {r["id"]: r["baseline"]["hyp"].lower() for r in result["utterances"]}
    assert "please run the unit test" in rows["s0"] and "merge the" in rows["s0"]
    assert "staging server" in rows["s2"]
    assert "dev@example.com" not in rows["s3"]  # the stock model writes "at"/"dot": what adapters are for
    summary = result["summary"]["baseline"]
    assert summary["n_utterances"] == 4 and summary["term_recall"]["overall"]["total"] == 3
    assert summary["wer"] < 0.6
    safety = result["safety"]
    assert safety["n_utterances"] == 4 and "telephone" in safety["description"]
    assert safety["baseline"]["wer"] < 0.35 and safety["adapter"] is None and safety["passed"] is None
    assert result["timing"]["baseline"]["rtf"] < 1.0

    # The fast batched decoder gives exactly what `generate` gives on each clip alone.
    from lora_training.data.audio import load_audio
    from lora_training.models.registry import greedy_decode, resolve_model

    model, processor = resolve_model("embedded:moonshine-base")
    for utt in utterances:
        alone = processor.decode(greedy_decode(model, processor, load_audio(utt.audio)), skip_special_tokens=True)
        assert alone.strip().lower() == rows[utt.id]

"""`transcribe` / `evaluate` end to end on the tiny random Moonshine with an adapter trained for 2 steps."""

from __future__ import annotations

import json

import pytest

from lora_training.cli import main
from lora_training.config import ExperimentConfig
from lora_training.testing.factories import make_manifest, write_tone
from lora_training.training.trainer import Trainer


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir, tiny_manifests):
    """outputs/tiny_run with config.json, metrics.jsonl, state.json, adapter/ and best_adapter/."""
    train, evals = tiny_manifests
    outputs = tmp_path_factory.mktemp("outputs")
    run_dir = outputs / "tiny_run"
    run_dir.mkdir()
    # A dev set of its own, so every train row (and every eval term) is trained on, not carved out for dev.
    dev = make_manifest(tmp_path_factory.mktemp("dev"), 2, name="dev.jsonl", seconds=0.6)
    cfg = ExperimentConfig(model_id=str(tiny_model_dir), train_manifest=str(train), eval_manifest=str(evals),
                           dev_manifest=str(dev), max_steps=2, eval_interval=1, log_interval=1, lr=5e-3,
                           warmup_steps=0, batch_size=4, lora_r=4, lora_alpha=8, num_threads=1, device="cpu",
                           safety_in_loop=0)
    cfg.save(run_dir / "config.json")
    assert Trainer(cfg, run_dir).run() == "completed"
    return outputs, run_dir


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_transcribe_manifest_with_adapter_reports_baseline_and_adapter(trained_run, tiny_manifests, tmp_path, capsys):
    _, run_dir = trained_run
    _, evals = tiny_manifests
    out = tmp_path / "results.json"
    # No --model-id: the adapter's sidecar names its base model.
    code, stdout, _ = _run(["transcribe", "--adapter-dir", str(run_dir / "adapter"), "--manifest", str(evals),
                            "--output", str(out), "--num-threads", "1", "--no-progress"], capsys)
    assert code == 0, stdout
    result = json.loads(out.read_text())
    assert result["schema_version"] == 1 and result["status"] == {"ok": True, "problems": []}
    sidecar = json.loads((run_dir / "adapter" / "lora_training.json").read_text())
    assert result["model"]["model_id"] == sidecar["base_model"]
    summary = result["summary"]
    assert summary["baseline"]["n_utterances"] == summary["adapter"]["n_utterances"] == 3
    assert set(summary["delta"]) >= {"wer", "cer", "term_recall", "term_recall_seen", "term_recall_unseen"}
    assert summary["delta"]["wer"] == pytest.approx(summary["adapter"]["wer"] - summary["baseline"]["wer"], abs=1e-6)
    assert summary["adapter"]["term_recall"]["seen"]["total"] == 3  # every eval term is in the train manifest
    assert result["seen_terms"] == sorted(["kubectl", "WER", "dev@example.com", "__init__.py", "nginx"])
    rows = result["utterances"]
    assert [r["ref"] for r in rows] == ["apply it with kubectl", "our WER went up", "write to dev@example.com"]
    for row in rows:
        for system in ("baseline", "adapter"):
            assert set(row[system]) >= {"hyp", "wer", "terms_hit", "terms_missed", "looping"}
    assert set(result["timing"]) >= {"baseline", "adapter", "load_seconds", "merge_seconds", "total_seconds"}
    assert result["failures"] == []
    assert "WER" in stdout and "baseline" in stdout and "adapter" in stdout and "OK" in stdout

    # The baseline runs with the adapter attached but disabled: exactly the base model alone.
    code, stdout, _ = _run(["transcribe", "--model-id", result["model"]["model_id"], "--manifest", str(evals),
                            "--json", "--no-progress"], capsys)
    alone = json.loads(stdout)
    assert code == 0 and [r["baseline"]["hyp"] for r in alone["utterances"]] == [r["baseline"]["hyp"] for r in rows]


def test_unreadable_clips_are_listed_not_dropped(trained_run, tmp_path, capsys):
    _, run_dir = trained_run
    manifest = make_manifest(tmp_path, 3, texts=["one clip", "two clip", "three clip"], seconds=0.6)
    lines = manifest.read_text().splitlines()
    write_tone(tmp_path / "short.wav", seconds=0.1)
    lines.append(json.dumps({"audio": "short.wav", "text": "too short", "id": "short"}))
    lines.append(json.dumps({"audio": "gone.wav", "text": "missing", "id": "gone"}))
    manifest.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.json"

    code, stdout, _ = _run(["transcribe", "--adapter-dir", str(run_dir / "adapter"), "--manifest", str(manifest),
                            "--output", str(out), "--no-progress"], capsys)

    assert code == 1
    result = json.loads(out.read_text())
    failures = {f["id"]: f for f in result["failures"]}
    assert set(failures) == {"short", "gone"}
    assert failures["short"]["stage"] == "audio" and "too short" in failures["short"]["error"]
    assert "not found" in failures["gone"]["error"]
    assert [r["id"] for r in result["utterances"]] == ["audio/utt_0000.wav", "audio/utt_0001.wav", "audio/utt_0002.wav"]
    assert result["summary"]["baseline"]["n_utterances"] == 3
    assert result["status"]["ok"] is False and "2 clip failure(s)" in result["status"]["problems"][0]
    assert "short" in stdout and "gone" in stdout and "FAILED" in stdout


def test_audio_folder_without_references(trained_run, tmp_path, capsys):
    _, run_dir = trained_run
    for name in ("a.wav", "sub/b.flac"):
        write_tone(tmp_path / "clips" / name, seconds=0.7)
    code, stdout, _ = _run(["transcribe", "--adapter-dir", str(run_dir / "adapter"), "--audio",
                            str(tmp_path / "clips"), "--json", "--no-progress"], capsys)
    assert code == 0
    result = json.loads(stdout)
    assert [r["id"] for r in result["utterances"]] == [str(tmp_path / "clips" / "a.wav"),
                                                        str(tmp_path / "clips" / "sub" / "b.flac")]
    assert result["summary"]["baseline"] is None and result["summary"]["delta"] is None
    row = result["utterances"][0]
    assert row["ref"] is None and isinstance(row["adapter"]["hyp"], str) and row["adapter"]["wer"] is None


def test_no_baseline_runs_the_adapter_only(trained_run, tiny_manifests, capsys):
    _, run_dir = trained_run
    code, stdout, _ = _run(["transcribe", "--adapter-dir", str(run_dir / "adapter"), "--manifest",
                            str(tiny_manifests[1]), "--no-baseline", "--json", "--no-progress"], capsys)
    result = json.loads(stdout)
    assert code == 0 and result["summary"]["baseline"] is None and result["summary"]["adapter"] is not None
    assert "baseline" not in result["utterances"][0] and "baseline" not in result["timing"]


def test_adapter_on_another_base_model_is_refused(trained_run, tiny_manifests, tmp_path, capsys):
    from lora_training.testing.tiny import save_tiny_moonshine

    _, run_dir = trained_run
    other = save_tiny_moonshine(tmp_path / "other", seed=7)
    code, _, stderr = _run(["transcribe", "--model-id", str(other), "--adapter-dir", str(run_dir / "adapter"),
                            "--manifest", str(tiny_manifests[1]), "--no-progress"], capsys)
    assert code == 1 and "refusing to load" in stderr and len(stderr.strip().splitlines()) == 1


def test_safety_manifest_gate(trained_run, tiny_manifests, tmp_path, capsys):
    """A safety set is transcribed by both systems; the budget decides the exit status."""
    outputs, run_dir = trained_run
    _, evals = tiny_manifests
    code, stdout, _ = _run(["evaluate", "tiny_run", "--outputs", str(outputs), "--safety-manifest", str(evals),
                            "--json", "--no-progress"], capsys)
    result = json.loads(stdout)
    safety = result["safety"]
    assert safety["normalizer"] == "safety" and safety["n_utterances"] == 3
    assert safety["delta_wer_points"] == pytest.approx(100 * (safety["adapter"]["wer"] - safety["baseline"]["wer"]),
                                                       abs=1e-3)
    assert safety["passed"] == (safety["delta_wer_points"] <= 1.0)
    assert code == (0 if safety["passed"] else 1)
    assert (run_dir / "eval_results.json").is_file()
    assert result["model"]["adapter_dir"].endswith("best_adapter")


def test_safety_scoring_fails_the_gate_over_budget():
    from lora_training.evaluation.evaluate import _score_safety, _status
    from lora_training.evaluation.inputs import Clip

    clips = [Clip("a", "a.wav", "twenty five cats sat down"), Clip("b", "b.wav", "the dog barked")]
    hyps = {"baseline": {"a": {"hyp": "25 cats sat down"}, "b": {"hyp": "the dog barked"}},
            "adapter": {"a": {"hyp": "25 cats sat down"}, "b": {"hyp": "the WER barked"}}}
    block = _score_safety({"path": "s.jsonl", "description": None, "clips": clips}, hyps, [], budget=1.0)
    assert block["baseline"]["wer"] == 0.0  # numbers-aware: "twenty five" == "25"
    assert block["delta_wer_points"] == pytest.approx(100 / 7, abs=1e-3)
    assert block["passed"] is False
    status = _status({"failures": [], "safety": block})
    assert status["ok"] is False and "over the budget" in status["problems"][0]
    assert _score_safety({"path": "s", "description": None, "clips": clips}, hyps, [], budget=20.0)["passed"] is True


def test_keyterm_biasing_flags_reach_both_systems_and_the_result(trained_run, tiny_manifests, tmp_path, capsys):
    """--bias-vocabulary/--bias-boost bias the baseline and the adapter alike, are recorded in the result,
    and the biased terms' false alarms are counted (the bias vocabulary is --vocabulary's default)."""
    _, run_dir = trained_run
    vocabulary = tmp_path / "bias.txt"
    vocabulary.write_text("!= | not equals\n")  # in no reference; a boost of 100 puts it everywhere
    out = tmp_path / "biased.json"
    code, _, _ = _run(["transcribe", "--adapter-dir", str(run_dir / "adapter"), "--manifest", str(tiny_manifests[1]),
                       "--bias-vocabulary", str(vocabulary), "--bias-boost", "100", "--output", str(out),
                       "--no-progress"], capsys)
    assert code == 0
    result = json.loads(out.read_text())
    assert result["options"]["bias_vocabulary"] == str(vocabulary) and result["options"]["bias_boost"] == 100.0
    assert result["biasing"] == {"vocabulary": str(vocabulary), "terms": 1, "boost": 100.0, "rewrite_spoken": True}
    assert result["inputs"]["vocabulary"] == str(vocabulary)
    for system in ("baseline", "adapter"):
        alarms = result["summary"][system]["term_recall"]["false_alarms"]
        assert alarms["total"] >= 3 and set(alarms["per_term"]) == {"!="}
        assert all("!=" in row[system]["hyp"] for row in result["utterances"])

    code, stdout, _ = _run(["transcribe", "--adapter-dir", str(run_dir / "adapter"), "--manifest",
                            str(tiny_manifests[1]), "--vocabulary", str(vocabulary), "--json", "--no-progress"], capsys)
    plain = json.loads(stdout)
    assert code == 0 and plain["biasing"] is None and plain["options"]["bias_vocabulary"] is None
    code, stdout, _ = _run(["transcribe", "--adapter-dir", str(run_dir / "adapter"), "--manifest", str(tiny_manifests[1]),
                            "--bias-vocabulary", str(vocabulary), "--no-rewrite-spoken", "--json", "--no-progress"],
                           capsys)
    assert code == 0 and json.loads(stdout)["biasing"]["rewrite_spoken"] is False
    for system in ("baseline", "adapter"):
        assert (plain["summary"][system]["term_recall"]["false_alarms"]["total"]
                < result["summary"][system]["term_recall"]["false_alarms"]["total"])


def test_evaluate_run_and_pipelines_take_the_biasing_options():
    from lora_training.errors import ConfigError
    from lora_training.runners.evaluation import check_overrides, overridable

    assert {"bias_vocabulary", "bias_boost", "rewrite_spoken"} <= set(overridable())
    check_overrides({"bias_vocabulary": "vocabulary.txt", "bias_boost": 4.0}, "stage evaluate")
    with pytest.raises(ConfigError, match="bias_boost: expected a finite logit bonus >= 0"):
        check_overrides({"bias_boost": -1.0}, "stage evaluate")

"""report.md and its PNG curves, and the compare table, from hand-made run folders."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from lora_training.cli import main
from lora_training.config import ExperimentConfig
from lora_training.reporting.compare import compare_runs
from lora_training.reporting.report import write_report

FIXTURE = Path(__file__).parent / "fixtures" / "eval_results.json"


def make_run(root: Path, name: str, *, wers=(0.42, 0.30, 0.20, 0.25), with_results=True, manifests=None,
             safety=None, tests=None) -> Path:
    """A finished run: config.json, state.json, metrics.jsonl (a dev eval every 10 steps, with `safety` WERs
    beside them when given; `tests`: the eval manifest's (baseline, best) WERs) and maybe eval_results.json."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    train, evals = manifests or ("missing_train.jsonl", "missing_eval.jsonl")
    ExperimentConfig(model_id="embedded:moonshine-base", train_manifest=str(train), eval_manifest=str(evals),
                     max_steps=10 * (len(wers) - 1), eval_interval=10).save(run_dir / "config.json")
    result = json.loads(FIXTURE.read_text())
    lines = []
    for i, wer in enumerate(wers):
        if i:
            lines += [{"type": "train", "step": 10 * i - 5, "loss": 2.0 / i},
                      {"type": "train", "step": 10 * i, "loss": 1.5 / i}]
        summary = dict(result["summary"]["baseline"], wer=wer)
        lines.append({"type": "eval", "set": "dev", "step": 10 * i, **summary,
                      "samples": [{"ref": "run kubectl apply", "hyp": "run cube control apply"}],
                      **({"safety_wer": safety[i], "safety_n": 16} if safety else {})})
    best = min(range(len(wers)), key=lambda i: wers[i])
    for step, adapter, wer in ((0, "baseline", tests[0]), (10 * (len(wers) - 1), "best", tests[1])) if tests else ():
        lines.append({"type": "test", "set": "test", "step": step, "adapter": adapter,
                      "adapter_step": 10 * best if adapter == "best" else 0,
                      **dict(result["summary"]["baseline"], wer=wer),
                      "samples": [{"ref": "kubectl get pods", "hyp": f"kubectl get pods ({adapter})"}]})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run_dir / "state.json").write_text(json.dumps({
        "phase": "completed", "step": 10 * (len(wers) - 1), "started_at": 1000.0, "ended_at": 1754.0,
        "best": {"step": 10 * best, "wer": wers[best]}}))
    if with_results:
        shutil.copy(FIXTURE, run_dir / "eval_results.json")
    return run_dir


def test_report_writes_markdown_whose_images_exist(tmp_path, tiny_manifests):
    run_dir = make_run(tmp_path, "v5", manifests=tiny_manifests)
    report = write_report(run_dir)
    text = report.read_text()
    assert report == run_dir / "report.md"
    sections = ("Objective", "Data", "Configuration", "Training curves", "Results", "Samples", "Safety", "Conclusions")
    assert re.findall(r"^## (.+)$", text, flags=re.M) == list(sections)
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images == ["loss.png", "eval.png"]
    for image in images:
        assert (run_dir / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "${" not in text and "$objective" not in text
    assert "| WER | 42.11% | 10.53% | -31.58 pts |" in text
    assert "| train | " in text and "| 8 | " in text  # the tiny train manifest: 8 utterances
    assert "Best dev WER 20.00% at step 20" in text
    assert "- **better** `utt\\_2`: WER 166.67% → 0.00%" in text
    assert "~~at~~" in text and "**dev@example.com**" in text
    assert "open \\[config\\] in vim" in text  # markdown-special characters escaped
    assert "| safety WER | 0.00% | 0.00% | +0.00 pts | +1.00 pts | passed |" in text
    assert "WER falls from 42.11% to 10.53% (-31.58 points)." in text
    assert "1 clip(s) failed and were not scored" in text


def test_report_without_evaluation_falls_back_to_the_trainer(tmp_path):
    run_dir = make_run(tmp_path, "v1", with_results=False)
    text = write_report(run_dir).read_text()
    assert "the trainer's dev evals (step 0 vs best step 20): optimistic, since best_adapter was chosen" in text
    assert "Not measured: run `just evaluate v1`" in text
    assert "| WER | 42.00% | 20.00% | -22.00 pts |" in text
    assert "unreadable" in text  # the manifests of this hand-made run do not exist


def test_report_without_evaluation_uses_the_trainers_test_not_the_dev_set(tmp_path):
    """The dev evals chose best_adapter; the eval manifest's two tests are the verdict the report states."""
    run_dir = make_run(tmp_path, "v2", with_results=False, tests=(0.45, 0.33))
    text = write_report(run_dir).read_text()
    assert "the trainer's test on the eval manifest (untouched model at step 0 vs best_adapter of step 20" in text
    assert "| WER | 45.00% | 33.00% | -12.00 pts |" in text  # not the dev set's 42% -> 20%
    assert "Trainer (best_adapter on the first clips of the eval manifest)" in text and "(best)" in text
    row = compare_runs([run_dir])[0]
    assert (row["baseline_wer"], row["best_wer"], row["best_step"]) == (0.45, 0.33, 20)


def test_report_shows_the_safety_wer_curve(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    labels = []
    real_plot = Axes.plot

    def plot(self, *args, **kwargs):
        labels.append(kwargs.get("label"))
        return real_plot(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", plot)
    run_dir = make_run(tmp_path, "v3", with_results=False, safety=(0.10, 0.10, 0.12, 0.18), tests=(0.45, 0.33))
    text = write_report(run_dir).read_text()
    assert "safety WER (16 clips)" in labels and "dev WER" in labels and "test WER (eval manifest)" in labels
    assert ("Safety WER in the loop (16 general-English clips): 10.00% at step 0, 18.00% at step 30, "
            "highest 18.00% at step 30.") in text


def test_report_rejects_unknown_schema_and_placeholders(tmp_path):
    from lora_training.errors import LoraTrainingError

    run_dir = make_run(tmp_path, "bad")
    template = tmp_path / "t.md"
    template.write_text("# $name\n$nonsense\n")
    with pytest.raises(LoraTrainingError, match="placeholder"):
        write_report(run_dir, template=template)
    result = json.loads(FIXTURE.read_text())
    result["schema_version"] = 99
    (run_dir / "eval_results.json").write_text(json.dumps(result))
    with pytest.raises(LoraTrainingError, match="expected schema_version 1, got 99"):
        write_report(run_dir)


def test_compare_table_across_runs(tmp_path, capsys):
    make_run(tmp_path, "my_voice_tune", wers=(0.42, 0.35), with_results=False)
    make_run(tmp_path, "my_voice_tune_v5")
    rows = compare_runs([tmp_path / "my_voice_tune", tmp_path / "my_voice_tune_v5"])
    assert [r["name"] for r in rows] == ["my_voice_tune", "my_voice_tune_v5"]
    assert rows[0]["best_wer"] == 0.35 and rows[0]["source"] == "trainer" and rows[0]["safety_delta_points"] is None
    assert rows[1]["best_wer"] == pytest.approx(0.105263, abs=1e-6) and rows[1]["source"] == "eval_results"
    assert rows[1]["safety_passed"] is True and rows[1]["train_seconds"] == 754.0 and rows[1]["best_step"] == 40

    assert main(["compare", "my_voice_tune", "my_voice_tune_v5", "--outputs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    v1 = next(line for line in out.splitlines() if line.startswith("my_voice_tune "))
    v5 = next(line for line in out.splitlines() if line.startswith("my_voice_tune_v5"))
    assert "35.00%*" in v1 and "42.00%" in v1 and "10/10" in v1
    assert "10.53%" in v5 and "+0.00 pts" in v5 and "0:12:34" in v5 and "LoRA r16 decoder" in v5
    assert "* from the trainer" in out and "within noise" in out

    assert main(["report", "my_voice_tune_v5", "--outputs", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "my_voice_tune_v5" / "report.md")

"""Pipelines: parsing errors, halting at a failed stage, --resume, and a full run on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_training.errors import ConfigError
from lora_training.runners.pipeline import StageFailed, load_pipeline, run_pipeline
from lora_training.testing.factories import make_manifest
from lora_training.runs.state import read_state


def _toml(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def test_pipeline_file_problems_are_reported_together(tmp_path):
    path = _toml(tmp_path / "p.toml", """
colour = "blue"
[[stages]]
name = "a"
kind = "teleport"
[[stages]]
name = "b"
kind = "split"
[[stages]]
name = "b"
kind = "wait"
""")
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    text = str(info.value)
    assert "unknown top-level key(s) colour" in text
    assert "stage 1 (a): kind, expected one of" in text and "'teleport'" in text
    assert "duplicate stage name 'b'" in text


def test_shipped_pipelines_pass_the_checks(tmp_path):
    """pipelines/*.toml and the demo's in-code pipeline load with every stage checked."""
    from lora_training.runners.demo import demo_pipeline
    from lora_training.runners.pipeline import check_pipeline

    for path in sorted(Path(__file__).resolve().parents[2].glob("pipelines/*.toml")):
        assert load_pipeline(path, outputs=str(tmp_path)).stages
    assert check_pipeline(demo_pipeline(tmp_path)) == []
    assert check_pipeline(demo_pipeline(tmp_path, "seed-002")) == []


def test_a_pipeline_built_in_python_may_pass_none_for_an_optional_option(tmp_path):
    from lora_training.runners.pipeline import Pipeline, Stage, check_pipeline

    def train(**options):
        return Pipeline(name="p", path="p.toml", outputs=str(tmp_path), stages=[Stage("train", "run-experiment", {
            "experiment": "e", "train_manifest": "t.jsonl", "eval_manifest": "e.jsonl", **options})])

    assert check_pipeline(train(replay_manifest=None, replay_ratio=0.0)) == []
    assert any("replay_ratio: expected float" in p for p in check_pipeline(train(replay_ratio=None)))


def _tiny_pipeline(tmp_path, tiny_model_dir) -> Path:
    texts = [f"run kubectl apply number {i}" if i % 2 else f"the WER dropped by {i}" for i in range(12)]
    terms = [["kubectl"] if i % 2 else ["WER"] for i in range(12)]
    make_manifest(tmp_path / "data", 12, texts=texts, terms=terms, name="all.jsonl", seconds=0.6)
    data = tmp_path / "data"
    return _toml(tmp_path / "tiny.toml", f"""
name = "tiny"
[[stages]]
name = "split"
kind = "split"
input = "{data / 'all.jsonl'}"
train_out = "{data / 'train.jsonl'}"
eval_out = "{data / 'eval.jsonl'}"
eval_fraction = 0.25

[[stages]]
name = "train"
kind = "run-experiment"
experiment = "tiny_run"
model_id = "{tiny_model_dir}"
train_manifest = "{data / 'train.jsonl'}"
eval_manifest = "{data / 'eval.jsonl'}"
max_steps = 4
eval_interval = 2
batch_size = 4
lora_r = 4
lora_alpha = 8
num_threads = 1
device = "cpu"

[[stages]]
name = "wait"
kind = "wait"
experiment = "tiny_run"
interval = 0.2
""")


def test_forced_failure_halts_and_resume_completes(tmp_path, tiny_model_dir):
    pipeline = load_pipeline(_tiny_pipeline(tmp_path, tiny_model_dir), outputs=str(tmp_path / "out"))
    lines: list[str] = []
    with pytest.raises(StageFailed) as info:
        run_pipeline(pipeline, fail_stage="train", write=lines.append, progress=False)
    message = str(info.value)
    assert "halted at stage train (run-experiment)" in message and "--resume" in message
    state = read_state(tmp_path / "out" / "pipelines" / "tiny")
    assert state["phase"] == "failed"
    assert [s["status"] for s in state["stages"]] == ["done", "failed", "pending"]
    assert (tmp_path / "data" / "train.jsonl").exists()

    lines.clear()
    state = run_pipeline(pipeline, resume=True, write=lines.append, progress=False)
    assert state["phase"] == "completed"
    assert any("split (split): done earlier, skipped" in line for line in lines)
    assert [s["status"] for s in state["stages"]] == ["done", "done", "done"]
    run_state = json.loads((tmp_path / "out" / "tiny_run" / "state.json").read_text())
    assert run_state["phase"] == "completed" and run_state["step"] == 4


def test_unknown_stage_option_is_found_before_anything_runs(tmp_path):
    path = _toml(tmp_path / "bad.toml", """
[[stages]]
name = "split"
kind = "split"
input = "x.jsonl"
colour = "blue"
""")
    with pytest.raises(ConfigError, match=r"bad.toml: stage 1 \(split\): unknown key\(s\) colour, expected only: in"):
        load_pipeline(path, outputs=str(tmp_path))


def test_full_pipeline_on_the_tiny_model(tmp_path, tiny_model_dir):
    """Every stage kind, end to end, in seconds: split → synth → mix → train → wait → check → evaluate → report."""
    path = _tiny_pipeline(tmp_path, tiny_model_dir)
    data = tmp_path / "data"
    vocabulary = data / "vocabulary.txt"
    vocabulary.write_text("kubectl | cube control\nWER | W E R\n")
    text = path.read_text().replace(
        'train_manifest = "' + str(data / "train.jsonl") + '"', 'train_manifest = "' + str(data / "mixed.jsonl") + '"'
    )
    text = text.replace('[[stages]]\nname = "train"', f"""[[stages]]
name = "synth"
kind = "synth"
vocabulary = "{vocabulary}"
count = 4
min_per_term = 1
output = "{data / 'synthetic.jsonl'}"
gate = false
workers = 1

[[stages]]
name = "mix"
kind = "mix"
inputs = ["{data / 'train.jsonl'}", "{data / 'synthetic.jsonl'}"]
output = "{data / 'mixed.jsonl'}"

[[stages]]
name = "train\"""")
    text += """
[[stages]]
name = "check"
kind = "check"
experiment = "tiny_run"

[[stages]]
name = "evaluate"
kind = "evaluate"
experiment = "tiny_run"
safety = false

[[stages]]
name = "report"
kind = "report"
experiment = "tiny_run"
"""
    path.write_text(text)
    lines: list[str] = []
    state = run_pipeline(load_pipeline(path, outputs=str(tmp_path / "out")), write=lines.append, progress=False)
    assert state["phase"] == "completed"
    assert [s["name"] for s in state["stages"]] == ["split", "synth", "mix", "train", "wait", "check", "evaluate", "report"]
    run_dir = tmp_path / "out" / "tiny_run"
    results = json.loads((run_dir / "eval_results.json").read_text())
    assert {"baseline", "adapter", "delta"} <= set(results["summary"])
    assert results["status"]["ok"] and results["safety"] is None
    report = (run_dir / "report.md").read_text()
    for image in [line.split("(")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]:
        assert (run_dir / image).is_file()
    mixed = [json.loads(line) for line in (data / "mixed.jsonl").read_text().splitlines()]
    assert {row["source"] for row in mixed} == {"real", "synthetic"}


def test_demo_refuses_a_workdir_it_did_not_make(tmp_path):
    from lora_training.errors import ConfigError
    from lora_training.runners.demo import MARKER, _clear

    mine = tmp_path / "data"
    (mine / "recordings").mkdir(parents=True)
    (mine / "my_voice_all.jsonl").write_text("{}\n")
    with pytest.raises(ConfigError, match="not a demo folder"):
        _clear(mine)
    assert (mine / "my_voice_all.jsonl").exists()
    demo = tmp_path / "demo"
    _clear(demo)
    (demo / "old.txt").write_text("x")
    _clear(demo)
    assert sorted(p.name for p in demo.iterdir()) == [MARKER]


def test_synth_check_stage_halts_a_cloning_pipeline_before_anything_else(tmp_path, monkeypatch):
    """The cloned-voice plan's first stage finds missing cloning weights in one line, before phase 1."""
    import lora_training.synth.tts.cloning as cloning

    monkeypatch.setattr(cloning.importlib.util, "find_spec", lambda name: object())  # "installed"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hub"))  # no cached weights
    make_manifest(tmp_path / "data", 2, name="refs.jsonl", seconds=3.0)
    (tmp_path / "vocab.txt").write_text("kubectl\n")
    pipeline = load_pipeline(_toml(tmp_path / "clone.toml", f"""
name = "clone"
[[stages]]
name = "synth-check"
kind = "synth-check"
vocabulary = "{tmp_path / 'vocab.txt'}"
output = "{tmp_path / 'synthetic.jsonl'}"
backend = "f5-tts"
reference_manifest = "{tmp_path / 'data' / 'refs.jsonl'}"
"""), outputs=str(tmp_path / "out"))
    with pytest.raises(StageFailed) as info:
        run_pipeline(pipeline, write=lambda line: None, progress=False)
    assert "synth-check" in str(info.value) and "weights" in str(info.value), str(info.value)
    assert not (tmp_path / "synthetic.jsonl").exists()

"""The recipe on a tiny random Moonshine: evals, adapters, NaN, stop/resume equivalence.

Safety in the loop is off here (it has its own tests in test_dev_and_safety.py): 16 built-in
clips would triple these runs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from lora_training.config import ExperimentConfig
from lora_training.runners.experiment import start_experiment
from lora_training.runs import RunDir
from lora_training.runs.metrics_log import read_metrics
from lora_training.runs.state import read_state
from lora_training.training.trainer import Trainer


def _cfg(tiny_model_dir, tiny_manifests, **kw) -> ExperimentConfig:
    train, evals = tiny_manifests
    base = dict(model_id=str(tiny_model_dir), train_manifest=str(train), eval_manifest=str(evals), max_steps=6,
                eval_interval=3, log_interval=1, lr=5e-3, warmup_steps=0, batch_size=4, lora_r=4, lora_alpha=8,
                lora_dropout=0.1, num_threads=1, device="cpu", safety_in_loop=0, replay_ratio=0)
    return ExperimentConfig(**{**base, **kw})


def _run(tmp_path, name, cfg, resume=False):
    run_dir = tmp_path / name
    run_dir.mkdir(exist_ok=True)
    cfg.save(run_dir / "config.json")
    phase = Trainer(cfg, run_dir).run(resume=resume)
    return run_dir, phase


def test_run_evaluates_baseline_and_interval_and_saves_adapters(tmp_path, tiny_model_dir, tiny_manifests):
    from lora_training.models.adapters import load_adapter, read_sidecar
    from lora_training.models.registry import resolve_model

    run_dir, phase = _run(tmp_path, "basic", _cfg(tiny_model_dir, tiny_manifests))
    assert phase == "completed"
    records = read_metrics(run_dir / "metrics.jsonl")
    evals = [r for r in records if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [0, 3, 6]
    assert all({"wer", "cer", "term_recall"} <= set(r) and r["set"] == "dev" for r in evals)
    assert [(r["step"], r["adapter"]) for r in records if r["type"] == "test"] == [(0, "baseline"), (6, "best")]
    losses = [r["loss"] for r in records if r["type"] == "train"]
    assert len(losses) == 6 and losses[-1] < losses[0]
    state = read_state(run_dir)
    assert state["phase"] == "completed" and state["step"] == 6
    assert set(state["adapters"]) == {"adapter", "best_adapter"}
    for name in ("adapter", "best_adapter"):
        folder = run_dir / name
        assert (folder / "adapter_model.safetensors").is_file() and (folder / "adapter_config.json").is_file()
        sidecar = read_sidecar(folder)
        assert sidecar["base_model"] == str(tiny_model_dir)
        assert sidecar["manifests"]["train_manifest"]["sha256"]
        model, _ = resolve_model(str(tiny_model_dir))
        load_adapter(model, folder, base_model=str(tiny_model_dir))
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_000003", "step_000006"]


def test_adapter_refuses_other_base_model(tmp_path, tiny_model_dir, tiny_manifests):
    from lora_training.errors import ModelError
    from lora_training.models.adapters import load_adapter
    from lora_training.testing.tiny import tiny_moonshine

    run_dir, _ = _run(tmp_path, "refuse", _cfg(tiny_model_dir, tiny_manifests, max_steps=1, eval_interval=1))
    other, _ = tiny_moonshine(seed=123)
    with pytest.raises(ModelError, match="refusing to load"):
        load_adapter(other, run_dir / "adapter", base_model="other")


def test_nan_loss_fails_with_step(tmp_path, tiny_model_dir, tiny_manifests, monkeypatch):
    real_loss = Trainer._loss

    def poisoned(self, examples):
        loss = real_loss(self, examples)
        return loss * float("nan") if self.step == 2 else loss

    monkeypatch.setattr(Trainer, "_loss", poisoned)
    run_dir, phase = _run(tmp_path, "nan", _cfg(tiny_model_dir, tiny_manifests))
    assert phase == "failed"
    state = read_state(run_dir)
    assert state["phase"] == "failed" and state["failed_step"] == 2
    assert "step 3: loss became nan" in state["error"]


def test_bad_manifest_fails_before_model_loads(tmp_path, tiny_model_dir, tiny_manifests, monkeypatch):
    import lora_training.models.registry as registry

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "missing.wav", "text": "hello"}\n')
    monkeypatch.setattr(registry, "resolve_model", lambda *a, **k: pytest.fail("model loaded before data check"))
    run_dir, phase = _run(tmp_path, "bad", _cfg(tiny_model_dir, tiny_manifests, train_manifest=str(bad)))
    assert phase == "failed"
    assert "bad.jsonl:1" in read_state(run_dir)["error"]


def test_stop_then_resume_matches_uninterrupted_run(tmp_path, tiny_model_dir, tiny_manifests, monkeypatch):
    # Respelling drawn often, so a resume that drew other spellings than the straight run would show.
    cfg = _cfg(tiny_model_dir, tiny_manifests, max_steps=6, eval_interval=2, respell_terms=0.5)
    straight, phase = _run(tmp_path, "straight", cfg)
    assert phase == "completed"

    real_step = Trainer.train_step

    def stop_after_third(self):
        loss = real_step(self)
        if self.step == 2:  # the counter is incremented after train_step returns: this is step 3
            self.request_stop()
        return loss

    monkeypatch.setattr(Trainer, "train_step", stop_after_third)
    interrupted, phase = _run(tmp_path, "interrupted", cfg)
    assert phase == "stopped"
    assert read_state(interrupted)["step"] == 3
    monkeypatch.setattr(Trainer, "train_step", real_step)
    _, phase = _run(tmp_path, "interrupted", cfg, resume=True)
    assert phase == "completed"

    a = load_file(str(straight / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(interrupted / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    records = read_metrics(interrupted / "metrics.jsonl")
    assert [r["step"] for r in records if r["type"] == "eval"] == [0, 2, 4, 6]
    assert [(r["step"], r["adapter"]) for r in records if r["type"] == "test"] == [(0, "baseline"), (6, "best")]


def test_throughput_counts_the_utterances_in_each_batch(tmp_path, tiny_model_dir, tiny_manifests):
    """Batch 4 on the 6 utterances the dev carve leaves of 8: an epoch is 4 + 2 utterances, not 4 × 2
    (utt/s was overstated)."""
    trainer = Trainer(_cfg(tiny_model_dir, tiny_manifests, batch_size=4), tmp_path)
    trainer.setup(resume=False)
    counts = []
    for step in range(2):  # one epoch
        trainer.step = step
        counts.append(trainer.train_step()[1])
    trainer.cleanup()
    assert len(trainer.train_examples) == 6 and sorted(counts) == [2, 4]


def test_training_labels_respell_terms_with_a_shared_start(tmp_path, tiny_model_dir, tiny_manifests):
    """stdout can start with stderr's `▁st`: with respelling on, its labels take that spelling too."""
    from lora_training.testing.factories import make_manifest

    texts = ["print to stdout", "read stderr first", "check the logs", "pipe stdout to grep", "merge the branch",
             "restart it now", "stderr is empty", "push to main"]
    terms = [["stdout"], ["stderr"], None, ["stdout"], None, None, ["stderr"], None]
    train = make_manifest(tmp_path / "data", 8, texts=texts, terms=terms, name="train.jsonl", seconds=0.6)
    on = Trainer(_cfg(tiny_model_dir, (train, tiny_manifests[1]), respell_terms=1.0), tmp_path / "on")
    on.setup(resume=False)
    tokenizer = on.processor.tokenizer
    canonical = {e.key: e.labels for e in on.train_examples}
    seen = [e for i in range(2) for e in on.data_order.micro_batch(i)]
    on.cleanup()
    respelled = [e for e in seen if e.respellings]
    assert respelled and all("▁st" in tokenizer.convert_ids_to_tokens(e.labels) for e in respelled)
    assert all(e.labels != canonical[e.key] and tokenizer.decode(e.labels) == tokenizer.decode(canonical[e.key])
               for e in respelled if "stdout" in tokenizer.decode(e.labels))
    off = Trainer(_cfg(tiny_model_dir, (train, tiny_manifests[1]), respell_terms=0.0), tmp_path / "off")
    off.setup(resume=False)
    off.cleanup()
    assert not any(e.respellings for e in off.train_examples)


def test_dora_both_sites_trains(tmp_path, tiny_model_dir, tiny_manifests):
    cfg = _cfg(tiny_model_dir, tiny_manifests, max_steps=2, eval_interval=2, use_dora=True, adapter_sites="both")
    run_dir, phase = _run(tmp_path, "dora", cfg)
    assert phase == "completed"
    adapter_cfg = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["use_dora"] is True
    keys = load_file(str(run_dir / "adapter" / "adapter_model.safetensors")).keys()
    assert any(".encoder." in k for k in keys) and any(".decoder." in k for k in keys)


def test_start_refuses_existing_names(tmp_path, tiny_model_dir, tiny_manifests):
    from lora_training.errors import LoraTrainingError

    cfg = _cfg(tiny_model_dir, tiny_manifests, max_steps=1, eval_interval=1)
    info = start_experiment("once", cfg, outputs=tmp_path, foreground=True)
    assert info["phase"] == "completed"
    with pytest.raises(LoraTrainingError, match="--overwrite"):
        start_experiment("once", cfg, outputs=tmp_path, foreground=True)
    assert start_experiment("once", cfg, outputs=tmp_path, overwrite=True, foreground=True)["phase"] == "completed"
    with pytest.raises(Exception, match="experiment name"):
        RunDir.named("../escape", tmp_path)

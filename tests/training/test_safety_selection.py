"""Safety-aware selection and stopping (training/selection.py): best_adapter is the best dev WER whose
own safety score is within --safety-budget of step 0's; --safety-patience scores over it in a row end
the run, which says why in state.json, train.log, `status` and the report; a resumed run decides the
same. Dev and safety WERs are scripted per step on the tiny model, as test_dev_and_safety.py does."""

from __future__ import annotations

import json
import logging

import pytest

from lora_training.config import ExperimentConfig
from lora_training.errors import ConfigError
from lora_training.runs.metrics_log import read_metrics
from lora_training.runs.state import read_state
from lora_training.testing.factories import make_manifest
from lora_training.training.selection import Selection
from lora_training.training.trainer import Trainer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety_selection")
    return {
        "eval": make_manifest(root / "eval", 3, texts=["kubectl get pods", "the WER went up", "ship it"],
                              name="eval.jsonl", seconds=0.9),
        "safety": make_manifest(root / "safety", 4, texts=[f"the weather is fine on day {i}" for i in range(4)],
                                name="safety.jsonl", seconds=0.7),
    }


def _cfg(tiny_model_dir, tiny_manifests, data, **kw) -> ExperimentConfig:
    base = dict(model_id=str(tiny_model_dir), train_manifest=str(tiny_manifests[0]), eval_manifest=str(data["eval"]),
                max_steps=8, eval_interval=2, log_interval=1, lr=5e-3, warmup_steps=0, batch_size=4, lora_r=4,
                lora_alpha=8, num_threads=1, device="cpu", safety_manifest=str(data["safety"]), safety_in_loop=2,
                safety_every=1, safety_budget=0.5, safety_patience=0)
    return ExperimentConfig(**{**base, **kw})


@pytest.fixture
def scripted(monkeypatch):
    """Script the dev and safety WERs by step: `script(dev={step: wer}, safety={step: wer})`; returns the
    box the trainer goes in, so the scores know its step."""
    from lora_training.training.evals import InLoopEvals

    real, box, tables = InLoopEvals.score, [], {}

    def score(self, model, processor, s, **kw):
        result = real(self, model, processor, s, **kw)
        table = tables.get(s.name)
        if not table:
            return result
        wer = table[box[0].step]  # every clip at that rate: a change shows on every clip, beyond noise
        return {**result, "wer": wer, **({"errors": [wer * w for w in result["words"]]} if "words" in result else {})}

    monkeypatch.setattr(InLoopEvals, "score", score)

    def script(dev: dict[int, float], safety: dict[int, float] | None = None) -> list:
        tables.clear()
        tables.update({"dev": dev, **({"safety": safety} if safety else {})})
        return box

    return script


def _run(tmp_path, cfg, box, name="run", resume=False, stop_at=None, monkeypatch=None) -> tuple[str, dict]:
    run_dir = tmp_path / name
    run_dir.mkdir(exist_ok=True)
    cfg.save(run_dir / "config.json")
    box[:] = [Trainer(cfg, run_dir)]
    if stop_at is not None:
        real_step = Trainer.train_step

        def stopping(self):
            result = real_step(self)
            if self.step + 1 == stop_at:  # train() counts the step after this returns
                self.request_stop()
            return result

        monkeypatch.setattr(Trainer, "train_step", stopping)
    try:
        phase = box[0].run(resume=resume)
    finally:
        if stop_at is not None:
            monkeypatch.setattr(Trainer, "train_step", real_step)
    return phase, read_state(run_dir)


def _status(tmp_path, state, name="run") -> tuple[str, str]:
    from lora_training.reporting.status_view import render_status

    row = {"name": name, "run_dir": str(tmp_path / name), **state}
    return render_status([row], detailed=True), render_status([row], detailed=False)


def _report(tmp_path, name="run") -> str:
    from lora_training.reporting.report import write_report

    return write_report(tmp_path / name).read_text(encoding="utf-8")


# --- the rule, without a model -----------------------------------------------------------

def _row(wer, safety=None):
    return {"wer": wer, "term_recall": {"overall": {"recall": None}},
            **({} if safety is None else {"safety_wer": safety})}


def _feed(sel: Selection, rows: dict[int, tuple]) -> list[bool]:
    from lora_training.training.evals import brief

    chosen, last = [], None
    for step, args in rows.items():
        result = _row(*args)
        last = brief(step, result, last)
        chosen.append(sel.consider(step, result, last)[0])
    return chosen


def test_rule_chooses_the_best_dev_wer_within_budget_and_never_an_unscored_eval():
    sel = Selection(budget=0.5, patience=0, dev_patience=0)
    # step 2: within +0.4; 4: best dev but +1.0 over; 6: no safety score of its own; 8: exactly +0.5 (within)
    chosen = _feed(sel, {0: (0.9, 0.10), 2: (0.5, 0.104), 4: (0.2, 0.11), 6: (0.1, None), 8: (0.45, 0.105)})
    assert chosen == [True, True, False, False, True]
    assert sel.best["step"] == 8 and sel.lowest_dev == 0.1
    side = sel.sidecar()
    assert side["safety_budget"] == 0.5 and side["safety_wer"] == 0.105 and side["safety_start"] == 0.10
    assert (side["excluded_for_safety"], side["excluded_unscored"]) == ([4], [6])
    assert side["no_trained_within_budget"] is False
    assert sel.summary()["over_budget_steps"] == [4]


def test_rule_without_safety_is_the_dev_wer_alone():
    sel = Selection(budget=0.5, patience=2, dev_patience=0)
    assert _feed(sel, {0: (0.9,), 2: (0.5,), 4: (0.2,), 6: (0.3,)}) == [True, True, True, False]
    assert sel.stop_reason() is None and sel.warning() is None
    assert sel.sidecar()["safety_budget"] is None and sel.sidecar()["safety_rule"].startswith("off")
    assert sel.summary()["rule"] == "lowest dev WER (safety in the loop off)"


def test_patience_counts_consecutive_scores_over_budget_and_the_dev_stop_is_unchanged():
    sel = Selection(budget=0.5, patience=2, dev_patience=0)
    _feed(sel, {0: (0.9, 0.10), 2: (0.8, 0.2), 4: (0.7, 0.10), 6: (0.6, 0.2), 8: (0.5, None)})
    assert sel.streak == 1 and sel.stop_reason() is None  # 4 was back within budget; 8 has no score
    _feed(sel, {10: (0.4, 0.12)})
    assert sel.stop_reason() == ("safety WER +2.00 points over step 0 at 2 consecutive safety evals "
                                 "(steps 6, 10; budget +0.50)")
    dev = Selection(budget=0.5, patience=0, dev_patience=2)
    _feed(dev, {0: (0.9, 0.1), 2: (0.5, 0.5), 4: (0.95, 0.1), 6: (0.97, 0.1)})  # 2: lowest dev, though over budget
    assert dev.best["step"] == 0 and dev.stop_reason() == "2 dev evals without a lower dev WER (patience 2)"


def test_checkpointed_state_restores_the_same_decisions():
    rows = {0: (0.9, 0.10), 2: (0.5, 0.2), 4: (0.4, None), 6: (0.6, 0.10)}
    sel = Selection(budget=0.5, patience=3, dev_patience=4)
    _feed(sel, rows)
    saved = json.loads(json.dumps(sel.checkpoint()))  # what trainer_state.json holds
    again = Selection(budget=0.5, patience=3, dev_patience=4)
    again.restore(saved)
    assert again == sel
    later = {8: (0.3, 0.2), 10: (0.2, 0.3)}
    assert _feed(again, later) == _feed(sel, later) and again == sel
    old = Selection(budget=0.5, patience=3, dev_patience=4)  # a checkpoint from before this rule
    old.restore({"best": {"step": 2, "wer": 0.5}, "evals_since_best": 1})
    assert (old.lowest_dev, old.safety_start, old.evals_since_best) == (0.5, None, 1)


def test_config_refuses_a_negative_budget_or_patience(tiny_model_dir, tiny_manifests, data):
    with pytest.raises(ConfigError, match=r"safety_budget: expected WER points >= 0.*got -1.*safety_patience"):
        _cfg(tiny_model_dir, tiny_manifests, data, safety_budget=-1.0, safety_patience=-1)


# --- in a run ----------------------------------------------------------------------------

def test_a_better_dev_wer_over_the_safety_budget_is_not_chosen(tmp_path, tiny_model_dir, tiny_manifests, data,
                                                               scripted, caplog):
    from lora_training.models.adapters import read_sidecar

    box = scripted(dev={0: 0.9, 2: 0.5, 4: 0.2, 6: 0.6, 8: 0.7},
                   safety={0: 0.10, 2: 0.104, 4: 0.15, 6: 0.10, 8: 0.10})
    with caplog.at_level(logging.INFO, logger="lora_training.train"):
        phase, state = _run(tmp_path, _cfg(tiny_model_dir, tiny_manifests, data), box)
    assert phase == "completed" and not state["early_stopped"] and state["stop_reason"] is None
    assert state["best"]["step"] == 2 and state["test"]["best"]["adapter_step"] == 2
    sidecar = read_sidecar(tmp_path / "run" / "best_adapter")
    assert (sidecar["chosen_on"], sidecar["step"], sidecar["safety_budget"]) == ("dev", 2, 0.5)
    assert sidecar["safety_wer"] == 0.104 and sidecar["excluded_for_safety"] == [4]  # restated when the run ended
    assert sidecar["metric"].startswith("wer") and not sidecar["no_trained_within_budget"]
    assert state["selection"]["excluded_for_safety"] == [4] and state["selection_warning"] is None
    test = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["type"] == "test"][-1]
    assert (test["adapter"], test["adapter_step"]) == ("best", 2)  # the eval manifest tests best_adapter
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("safety over budget at step 4: +5.00 WER points") and "not chosen" in m for m in said)
    detailed, _ = _status(tmp_path, state)
    assert "selection:  lowest dev WER within +0.50 safety WER points of step 0; over budget at steps 4" in detailed
    report = _report(tmp_path)
    assert "Best dev WER 50.00% at step 2" in report and "passed over for safety: step 4" in report


def test_safety_over_budget_in_a_row_stops_the_run_and_says_why(tmp_path, tiny_model_dir, tiny_manifests, data,
                                                                scripted, caplog):
    box = scripted(dev={0: 0.9, 2: 0.5, 4: 0.4, 6: 0.3, 8: 0.2}, safety={0: 0.10, 2: 0.10, 4: 0.12, 6: 0.113, 8: 0.2})
    with caplog.at_level(logging.INFO, logger="lora_training.train"):
        phase, state = _run(tmp_path, _cfg(tiny_model_dir, tiny_manifests, data, safety_patience=2), box)
    reason = "safety WER +1.30 points over step 0 at 2 consecutive safety evals (steps 4, 6; budget +0.50)"
    assert phase == "completed" and state["step"] == 6 and state["early_stopped"] and state["stop_reason"] == reason
    assert state["best"]["step"] == 2 and state["test"]["best"]["adapter_step"] == 2
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["type"] == "eval"] == [0, 2, 4, 6]
    assert f"early stop at step 6: {reason}" in [r.getMessage() for r in caplog.records]  # what `poll` streams
    detailed, table = _status(tmp_path, state)
    assert f"early stop: {reason}" in detailed and f"  early stop: {reason}" in table.splitlines()
    report = _report(tmp_path)
    assert f"The run stopped early at step 6: {reason}." in report  # the curves section
    assert f"- Training stopped early: {reason}." in report  # the conclusions
    assert "completed at step 6 (early stop: safety WER +1.30 points" in report


def test_no_trained_step_within_budget_keeps_the_untouched_adapter_and_says_so(tmp_path, tiny_model_dir,
                                                                               tiny_manifests, data, scripted, caplog):
    from lora_training.models.adapters import read_sidecar

    box = scripted(dev={0: 0.9, 2: 0.5, 4: 0.4, 6: 0.3, 8: 0.2}, safety={0: 0.1, 2: 0.2, 4: 0.2, 6: 0.2, 8: 0.2})
    with caplog.at_level(logging.INFO, logger="lora_training.train"):
        phase, state = _run(tmp_path, _cfg(tiny_model_dir, tiny_manifests, data), box)
    assert phase == "completed" and state["best"]["step"] == 0 and state["test"]["best"]["adapter_step"] == 0
    warning = state["selection_warning"]
    assert warning.startswith("no trained checkpoint stayed within the safety budget") and "no-op adapter" in warning
    assert any(r.levelname == "WARNING" and r.getMessage() == f"WARNING: {warning}" for r in caplog.records)
    sidecar = read_sidecar(tmp_path / "run" / "best_adapter")
    assert sidecar["step"] == 0 and sidecar["no_trained_within_budget"]
    assert sidecar["excluded_for_safety"] == [2, 4, 6, 8]
    detailed, table = _status(tmp_path, state)
    assert f"WARNING: {warning}" in detailed and f"  WARNING: {warning}" in table.splitlines()
    assert "WARNING: no trained checkpoint stayed within the safety budget" in _report(tmp_path)


def test_safety_off_chooses_on_dev_alone_and_never_stops_for_it(tmp_path, tiny_model_dir, tiny_manifests, data,
                                                                scripted):
    from lora_training.models.adapters import read_sidecar

    box = scripted(dev={0: 0.9, 2: 0.5, 4: 0.2, 6: 0.6, 8: 0.7})
    phase, state = _run(tmp_path, _cfg(tiny_model_dir, tiny_manifests, data, safety_in_loop=0, safety_patience=1), box)
    assert phase == "completed" and state["step"] == 8 and not state["early_stopped"]
    sidecar = read_sidecar(tmp_path / "run" / "best_adapter")
    assert sidecar["step"] == 4 and sidecar["safety_budget"] is None and sidecar["safety_rule"].startswith("off")
    assert state["selection"] == {"rule": "lowest dev WER (safety in the loop off)", "safety_budget": None}


def test_an_eval_without_its_own_safety_score_is_not_chosen(tmp_path, tiny_model_dir, tiny_manifests, data, scripted):
    from lora_training.models.adapters import read_sidecar

    # --safety-every 2: scored at 0, 4, 8; step 2's dev WER is the lowest but it has no score of its own.
    box = scripted(dev={0: 0.9, 2: 0.1, 4: 0.5, 6: 0.6, 8: 0.7}, safety={0: 0.1, 4: 0.1, 8: 0.1})
    phase, state = _run(tmp_path, _cfg(tiny_model_dir, tiny_manifests, data, safety_every=2), box)
    assert phase == "completed" and state["best"]["step"] == 4
    assert read_sidecar(tmp_path / "run" / "best_adapter")["excluded_unscored"] == [2]


def test_a_resumed_run_keeps_the_counters_and_stops_where_the_uninterrupted_one_did(
        tmp_path, tiny_model_dir, tiny_manifests, data, scripted, monkeypatch):
    from lora_training.training.checkpoints import CheckpointManager

    dev = {0: 0.9, 2: 0.5, 4: 0.4, 6: 0.3, 8: 0.2}
    safety = {0: 0.10, 2: 0.10, 4: 0.12, 6: 0.113, 8: 0.2}  # over at 4 and 6: the stop is at 6
    cfg = _cfg(tiny_model_dir, tiny_manifests, data, safety_patience=2)
    box = scripted(dev=dev, safety=safety)
    _, whole = _run(tmp_path, cfg, box, name="whole")
    phase, _ = _run(tmp_path, cfg, box, name="split", stop_at=5, monkeypatch=monkeypatch)  # checkpoint at 5
    assert phase == "stopped"
    _, ckpt = CheckpointManager(tmp_path / "split" / "checkpoints").load_latest()
    assert ckpt["selection"]["streak"] == 1 and ckpt["selection"]["safety_start"] == 0.10
    phase, resumed = _run(tmp_path, cfg, box, name="split", resume=True)
    assert phase == "completed" and resumed["stop_reason"] == whole["stop_reason"] and resumed["step"] == 6
    assert resumed["selection"] == whole["selection"] and resumed["best"]["step"] == whole["best"]["step"] == 2


def _safety_row(wer, errors, words):
    return {"wer": wer, "safety_wer": sum(errors) / sum(words), "safety_errors": errors, "safety_words": words}


def test_one_misheard_word_is_within_noise_but_a_change_on_every_clip_is_over():
    words = [21] * 8  # the in-loop set's size: one word is ~0.6 points
    start = [1, 0, 0, 1, 0, 0, 0, 0]
    selection = Selection(budget=0.5, patience=2, dev_patience=0)
    selection.consider(0, _safety_row(0.40, start, words), {"step": 0, "wer": 0.40})

    one_word = [1, 1, 0, 1, 0, 0, 0, 0]  # +0.60 points, on one clip
    chosen, note = selection.consider(100, _safety_row(0.10, one_word, words), {"step": 100, "wer": 0.10})
    assert chosen and "within noise" in note and selection.streak == 0 and selection.best["step"] == 100

    every_clip = [e + 1 for e in start]  # +4.8 points, on all 8 clips
    chosen, note = selection.consider(200, _safety_row(0.05, every_clip, words), {"step": 200, "wer": 0.05})
    assert not chosen and "over budget" in note and selection.streak == 1
    assert selection.over[-1]["interval"][0] > 0

    restored = Selection(budget=0.5, patience=2, dev_patience=0)
    restored.restore(json.loads(json.dumps(selection.checkpoint())))
    assert restored.start_errors == start and restored.start_words == words and restored.streak == 1


def test_a_new_looping_safety_transcript_is_over_though_one_clip_is_within_noise():
    """One clip is never 'shown' by a paired interval on 8 clips, but a loop is forgetting, not noise."""
    words = [21] * 8
    start = [1, 0, 0, 1, 0, 0, 0, 0]
    selection = Selection(budget=0.5, patience=2, dev_patience=0)
    selection.consider(0, {**_safety_row(0.40, start, words), "safety_looping": 0}, {"step": 0, "wer": 0.40})
    loop = [1, 30, 0, 1, 0, 0, 0, 0]  # one clip decoded into a loop: +17 points, all of it on that clip
    row = _safety_row(0.10, loop, words)
    chosen, note = selection.consider(100, row, {"step": 100, "wer": 0.10})  # no loop count: within noise
    assert chosen and "within noise" in note
    chosen, note = selection.consider(200, {**row, "safety_looping": 1}, {"step": 200, "wer": 0.05})
    assert not chosen and "loops" in note and selection.streak == 1 and selection.best["step"] == 100
    restored = Selection(budget=0.5, patience=2, dev_patience=0)
    restored.restore(json.loads(json.dumps(selection.checkpoint())))
    assert restored.start_looping == 0

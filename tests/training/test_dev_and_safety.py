"""Choose on dev, report on test, watch safety: the dev carve, how often the eval manifest is read,
what best_adapter was chosen on, seen terms from the training text, and the in-loop safety WER."""

from __future__ import annotations

import logging

import pytest

from lora_training.config import ExperimentConfig
from lora_training.data.manifest import Utterance
from lora_training.data.split import sentence_key
from lora_training.errors import ConfigError
from lora_training.runs.metrics_log import read_metrics
from lora_training.runs.state import read_state
from lora_training.testing.factories import make_manifest
from lora_training.training.dev_split import CARVED, carve_dev, size_for
from lora_training.training.evals import seen_terms
from lora_training.training.trainer import Trainer

EVAL_SECONDS = 0.9  # the eval manifest's clips are this long, and no other clip is: a call's set shows by length


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dev_safety")
    # New sentences with the training set's jargon, and one term it never trains on (dev@example.com).
    texts = ["kubectl get pods", "the WER went up", "write to dev@example.com"]
    return {
        "eval": make_manifest(root / "eval", 3, texts=texts, name="eval.jsonl", seconds=EVAL_SECONDS),
        "safety": make_manifest(root / "safety", 6, texts=[f"the weather is fine on day {i}" for i in range(6)],
                                name="safety.jsonl", seconds=0.7),
        "dev": make_manifest(root / "dev", 3, texts=["deploy on friday", "the build is green", "ship it"],
                             name="dev.jsonl", seconds=0.5),
    }


def _cfg(tiny_model_dir, tiny_manifests, data, **kw) -> ExperimentConfig:
    base = dict(model_id=str(tiny_model_dir), train_manifest=str(tiny_manifests[0]), eval_manifest=str(data["eval"]),
                max_steps=6, eval_interval=2, log_interval=1, lr=5e-3, warmup_steps=0, batch_size=4, lora_r=4,
                lora_alpha=8, num_threads=1, device="cpu", safety_manifest=str(data["safety"]), safety_in_loop=4)
    return ExperimentConfig(**{**base, **kw})


def _run(tmp_path, cfg, name="run", resume=False) -> tuple[Trainer, str]:
    run_dir = tmp_path / name
    run_dir.mkdir(exist_ok=True)
    cfg.save(run_dir / "config.json")
    trainer = Trainer(cfg, run_dir)
    return trainer, trainer.run(resume=resume)


def _rows(n_real: int, n_synthetic: int, repeat: int = 1) -> list[Utterance]:
    """n_real recordings (each sentence `repeat` times) and synthetic rows, half sharing a recorded sentence."""
    real = [Utterance(audio=f"r{i}_{k}.wav", text=f"Sentence {i}.", source="real")
            for i in range(n_real // repeat) for k in range(repeat)]
    synthetic = [Utterance(audio=f"s{i}.wav", text=f"sentence {i}" if i % 2 else f"synthetic {i}", source="synthetic")
                 for i in range(n_synthetic)]
    return real + synthetic


# --- the carve --------------------------------------------------------------------------

@pytest.mark.parametrize("primary, others, expected", [
    (100, 0, (10, 0)),       # ~100 recordings: 10 dev rows, ~10% of the data
    (100, 300, (10, 0)),     # synthetic rows are not needed
    (40, 300, (4, 6)),       # too few recordings for 10: synthetic rows top up
    (40, 0, (10, 0)),        # nothing to top up with: a quarter of the recordings at most
    (8, 0, (2, 0)),          # the tests' 8 rows
    (3000, 0, (200, 0)),     # the ceiling
    (3, 0, (0, 0)),          # too few for any dev set
], ids=["100", "100+300syn", "40+300syn", "40", "8", "3000", "3"])
def test_dev_size_is_a_share_of_the_recordings_with_a_floor_and_a_ceiling(primary, others, expected):
    assert size_for(primary, others, 0.1) == expected


def test_carve_is_sentence_disjoint_recordings_first_seeded_and_order_keeping():
    rows = _rows(40, 300, repeat=2)  # 20 sentences recorded twice each
    carve = carve_dev(rows, fraction=0.1, seed=7, where="train.jsonl")
    dev_keys = {sentence_key(u.text) for u in carve.dev}
    assert not dev_keys & {sentence_key(u.text) for u in carve.train}  # "Sentence 3." == "sentence 3"
    assert sum(u.source == "real" for u in carve.dev) == 4 and len(carve.dev) == 10
    # a synthetic take of a sentence recorded into dev is in neither set
    aside = [u for u in rows if sentence_key(u.text) in dev_keys and u not in carve.dev]
    assert carve.set_aside == len(aside) > 0 and all(u.source == "synthetic" for u in aside)
    assert len(carve.train) + len(carve.dev) + carve.set_aside == len(rows)
    assert carve.train == [u for u in rows if u in carve.train]  # training order is the manifest's
    again = carve_dev(rows, fraction=0.1, seed=7, where="train.jsonl")
    assert (again.train, again.dev) == (carve.train, carve.dev)
    assert carve_dev(rows, fraction=0.1, seed=8, where="train.jsonl").dev != carve.dev
    enough = carve_dev(_rows(200, 300), fraction=0.1, seed=7, where="train.jsonl")
    assert len(enough.dev) == 20 and all(u.source == "real" for u in enough.dev)
    # Rows without `source` are recordings, as `mix` counts them.
    unlabelled = carve_dev([Utterance(audio=f"{i}.wav", text=f"line {i}") for i in range(8)], fraction=0.1, seed=1,
                           where="train.jsonl")
    assert len(unlabelled.dev) == 2


def test_carve_refuses_too_few_rows_with_the_way_out():
    with pytest.raises(ConfigError, match=r"^train.jsonl: no dev set could be carved.*got 3 utterance.*--dev-manifest"):
        carve_dev(_rows(3, 0), fraction=0.1, seed=1, where="train.jsonl")


def test_carve_is_stable_across_a_stop_and_resume(tmp_path, tiny_model_dir, tiny_manifests, data, monkeypatch):
    cfg = _cfg(tiny_model_dir, tiny_manifests, data, safety_in_loop=0)
    real_step = Trainer.train_step

    def stop_after_third(self):
        result = real_step(self)
        if self.step == 2:
            self.request_stop()
        return result

    monkeypatch.setattr(Trainer, "train_step", stop_after_third)
    first, phase = _run(tmp_path, cfg)
    assert phase == "stopped"
    monkeypatch.setattr(Trainer, "train_step", real_step)
    # Another dev set would make the checkpoint's best WER incomparable: refused, naming the checkpoint.
    _, phase = _run(tmp_path, ExperimentConfig.from_dict({**cfg.to_dict(), "dev_fraction": 0.5}), resume=True)
    error = read_state(tmp_path / "run")["error"]
    assert phase == "failed" and "step_000003: dev set, expected the one its best WER was measured on" in error
    second, phase = _run(tmp_path, cfg, resume=True)
    assert phase == "completed"
    assert [u.audio for u in first.dev_utts] == [u.audio for u in second.dev_utts] and len(first.dev_utts) == 2
    assert [u.audio for u in first.train_utts] == [u.audio for u in second.train_utts]
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [(r["step"], r["adapter"]) for r in records if r["type"] == "test"] == [(0, "baseline"), (6, "best")]
    # Continued past its end, a run tests again at its new end, and the old verdict goes.
    _, phase = _run(tmp_path, ExperimentConfig.from_dict({**cfg.to_dict(), "max_steps": 8}), resume=True)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [(r["step"], r["adapter"]) for r in records if r["type"] == "test"] == [(0, "baseline"), (8, "best")]
    assert set(read_state(tmp_path / "run")["test"]) == {"baseline", "best"}


# --- the eval manifest is the verdict, read twice ---------------------------------------

def _count_eval_transcriptions(monkeypatch, trainer_box: list) -> list[int]:
    """Wrap transcription; return the steps at which the eval manifest's clips were decoded."""
    import lora_training.evaluation.transcribe as transcribe

    real, steps = transcribe.greedy_transcribe, []

    def counting(model, processor, audios, **kw):
        if all(len(a) == round(EVAL_SECONDS * 16000) for a in audios):
            steps.append(trainer_box[0].step)
        return real(model, processor, audios, **kw)

    monkeypatch.setattr(transcribe, "greedy_transcribe", counting)
    return steps


@pytest.mark.parametrize("poison_step, expected", [(None, [0, 6]), (2, [0])], ids=["completed", "failed"])
def test_eval_manifest_is_transcribed_at_step_0_and_at_the_end_only(tmp_path, tiny_model_dir, tiny_manifests, data,
                                                                    monkeypatch, poison_step, expected):
    box: list = []
    steps = _count_eval_transcriptions(monkeypatch, box)
    if poison_step is not None:  # a run that fails before its end never reads the eval manifest again
        real_loss = Trainer._loss
        monkeypatch.setattr(Trainer, "_loss", lambda self, ex: real_loss(self, ex) * (
            float("nan") if self.step == poison_step else 1.0))
    cfg = _cfg(tiny_model_dir, tiny_manifests, data, safety_in_loop=0)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg.save(run_dir / "config.json")
    box.append(Trainer(cfg, run_dir))
    box[0].run()
    assert steps == expected
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records if r["type"] == "test"] == expected
    assert all(r["set"] == "dev" for r in records if r["type"] == "eval")


def test_best_adapter_is_chosen_on_dev_and_its_sidecar_says_so(tmp_path, tiny_model_dir, tiny_manifests, data,
                                                               monkeypatch):
    from lora_training.models.adapters import read_sidecar
    from lora_training.training.evals import InLoopEvals

    scripted = {0: 0.9, 2: 0.3, 4: 0.5, 6: 0.4}  # dev WER by step: step 2 must win
    real_score, box = InLoopEvals.score, []

    def score(self, model, processor, s, **kw):
        result = real_score(self, model, processor, s, **kw)
        return {**result, "wer": scripted[box[0].step]} if s.name == "dev" else result

    monkeypatch.setattr(InLoopEvals, "score", score)
    for dev_manifest, dev_set, n in ((None, CARVED, 2), (str(data["dev"]), str(data["dev"]), 3)):
        cfg = _cfg(tiny_model_dir, tiny_manifests, data, safety_in_loop=0, dev_manifest=dev_manifest)
        run_dir = tmp_path / f"run{n}"
        run_dir.mkdir()
        cfg.save(run_dir / "config.json")
        box[:] = [Trainer(cfg, run_dir)]
        assert box[0].run() == "completed"
        sidecar = read_sidecar(run_dir / "best_adapter")
        assert (sidecar["chosen_on"], sidecar["dev_set"], sidecar["dev_utterances"]) == ("dev", dev_set, n)
        assert sidecar["metric"].startswith("wer") and sidecar["step"] == 2 and sidecar["best"]["wer"] == 0.3
        assert read_sidecar(run_dir / "adapter")["chosen_on"] == "last step"
        state = read_state(run_dir)
        assert state["best"]["step"] == 2 and state["test"]["best"]["adapter_step"] == 2
        test = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["type"] == "test"][-1]
        assert (test["adapter"], test["adapter_step"], test["n_utterances"]) == ("best", 2, 3)


def test_adapter_weights_tests_the_saved_adapter_and_puts_the_final_one_back(tmp_path):
    import torch
    from peft import get_peft_model_state_dict

    from lora_training.models.adapters import apply_adapter
    from lora_training.testing.tiny import tiny_moonshine
    from lora_training.training.evals import adapter_weights

    model = apply_adapter(tiny_moonshine()[0], r=4, alpha=8, dropout=0.0, use_dora=False, sites="decoder",
                          target_modules=["q_proj", "fc1"])

    def train_a_little() -> dict:
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p))
        return {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}

    best = train_a_little()
    model.save_pretrained(str(tmp_path / "best_adapter"))
    final = train_a_little()
    with adapter_weights(model, tmp_path / "best_adapter"):
        inside = get_peft_model_state_dict(model)
        assert all(torch.equal(inside[k], best[k]) for k in best)
    after = get_peft_model_state_dict(model)
    assert all(torch.equal(after[k], final[k]) for k in final)
    assert not any(torch.equal(best[k], final[k]) for k in best)  # the two adapters really differ


# --- seen terms -------------------------------------------------------------------------

def test_seen_terms_are_found_in_the_training_text():
    train = [Utterance(audio="a.wav", text="run kubectl apply now"), Utterance(audio="b.wav", text="the wer dropped"),
             Utterance(audio="c.wav", text="restart it", terms=["nginx"]), Utterance(audio="d.wav", text="kubectls")]
    seen = seen_terms(train, ["kubectl", "WER", "dev@example.com", "kubectl apply"])
    # case-sensitive ("wer" is not "WER"), at word edges, a contained term counts, `terms` always count
    assert seen == ["kubectl", "kubectl apply", "nginx"]


def test_sidecar_seen_terms_come_from_text_without_terms_fields(tmp_path, tiny_model_dir, data):
    from lora_training.models.adapters import read_sidecar

    texts = ["run kubectl apply", "the WER dropped", "restart nginx now", "open __init__.py",
             "push to main", "merge the branch", "check the logs", "email the team"]
    train = make_manifest(tmp_path / "train", 8, texts=texts, name="train.jsonl", seconds=0.6)  # no `terms`
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("kubectl | cube control\nWER | where\nnginx | engine x\n__init__.py | dunder init\n"
                          "dev@example.com | dev at example dot com\n")
    cfg = _cfg(tiny_model_dir, (train,), data, safety_in_loop=0, max_steps=2, vocabulary=str(vocabulary))
    trainer, phase = _run(tmp_path, cfg)
    assert phase == "completed"
    kept = " ".join(u.text for u in trainer.train_utts)
    expected = sorted(t for t in ("kubectl", "WER", "nginx", "__init__.py") if t in kept)
    assert expected and read_sidecar(tmp_path / "run" / "best_adapter")["train_terms"] == expected
    test = next(r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["type"] == "test")
    per_term = test["term_recall"]["per_term"]  # eval terms found with the vocabulary, split by the training text
    assert per_term["dev@example.com"]["seen"] is False
    assert all(per_term[t]["seen"] for t in per_term if t in expected)


# --- safety in the loop -----------------------------------------------------------------

def test_safety_wer_is_logged_per_dev_eval_and_shown_by_status(tmp_path, tiny_model_dir, tiny_manifests, data, caplog):
    from lora_training.reporting.status_view import render_status

    with caplog.at_level(logging.INFO, logger="lora_training.train"):
        trainer, phase = _run(tmp_path, _cfg(tiny_model_dir, tiny_manifests, data))
    assert phase == "completed"
    # 4 evenly spaced clips of 6, fixed for the run
    assert trainer.evals.safety.refs == [f"the weather is fine on day {i}" for i in (0, 1, 3, 4)]
    evals = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [0, 2, 4, 6]
    # --safety-every 2: at step 0, at every 2nd dev eval (step 4) and at the last step; step 2 skips it.
    assert ["safety_wer" in r for r in evals] == [True, False, True, True]
    for row in (evals[0], evals[2], evals[3]):
        assert row["safety_n"] == 4 and isinstance(row["safety_wer"], float) and "safety_wer_interval" in row
    state = read_state(tmp_path / "run")
    assert state["safety_baseline"] == evals[0]["safety_wer"]
    assert state["last_eval"]["safety_wer"] == evals[-1]["safety_wer"] and state["best"]["safety_n"] == 4
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dev eval step")]
    assert len(lines) == 4 and ["on 4 clips" in line for line in lines] == [True, False, True, True]
    assert all("since step 0" in line for line in lines[2:])
    row = {"name": "run", "run_dir": str(tmp_path / "run"), **state}
    detailed = render_status([row], detailed=True)
    assert "last dev:" in detailed and "best dev:" in detailed and "(4 clips, " in detailed
    assert "test:       eval manifest (3 clips): untouched WER" in detailed and "→ best_adapter (step" in detailed
    table = render_status([row], detailed=False)
    change = 100 * (evals[-1]["safety_wer"] - evals[0]["safety_wer"])
    assert "dev WER" in table.splitlines()[0] and "safety" in table.splitlines()[0]
    assert f"{change:+.2f} pts" in table.splitlines()[2]


def test_builtin_safety_set_missing_leaves_the_run_going(tmp_path, tiny_model_dir, tiny_manifests, data, monkeypatch,
                                                          caplog):
    import lora_training.evaluation.safety as safety

    def missing():
        raise ConfigError("--safety builtin: no speech found, expected Debian packages")

    monkeypatch.setattr(safety, "find_sources", missing)
    with caplog.at_level(logging.INFO, logger="lora_training.train"):
        _, phase = _run(tmp_path, _cfg(tiny_model_dir, tiny_manifests, data, safety_manifest=None))
    assert phase == "completed"
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("safety in the loop")]
    assert len(said) == 1 and "unavailable" in said[0] and "Debian packages" in said[0]
    evals = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["type"] == "eval"]
    assert evals and not any("safety_wer" in r for r in evals)


# --- preflight --------------------------------------------------------------------------

def test_preflight_checks_the_dev_and_safety_manifests(tmp_path, tiny_model_dir, tiny_manifests, data):
    from lora_training.runners.preflight import preflight_problems

    def problems(**kw):
        return "\n".join(preflight_problems(_cfg(tiny_model_dir, tiny_manifests, data, **kw)))

    assert problems() == ""
    assert "dev_manifest: expected a manifest other than the eval manifest" in problems(dev_manifest=str(data["eval"]))
    assert "safety_manifest: expected a manifest other than the replay manifest" in problems(
        replay_manifest=str(data["safety"]))
    assert "batch_size: expected at most the 8 utterances of" in problems(batch_size=7)
    assert "less the 2 held out for the dev set (6 left), got 7" in problems(batch_size=7)
    assert problems(batch_size=7, dev_manifest=str(data["dev"])) == ""
    missing = str(tmp_path / "no_dev.jsonl")
    assert missing in problems(dev_manifest=missing)


def test_a_dev_eval_without_safety_carries_the_latest_safety_score():
    from lora_training.training.evals import brief

    row = {"wer": 0.2, "term_recall": {"overall": {"recall": 0.5}}}
    earlier = brief(4, {**row, "safety_wer": 0.05, "safety_n": 8})
    assert earlier["safety_step"] == 4
    later = brief(6, row, earlier)
    assert (later["step"], later["safety_wer"], later["safety_n"], later["safety_step"]) == (6, 0.05, 8, 4)
    assert "safety_wer" not in brief(6, row, None)

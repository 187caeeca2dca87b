"""What each epoch holds: the synthetic cap, replay (repeating when small) and augmented views."""

from collections import Counter

import numpy as np
import pytest

from lora_training.data.manifest import Utterance
from lora_training.training.collate import Example, build_examples
from lora_training.training.data_order import DataOrder


def _examples(prefix, n, *, synthetic=False, views=0):
    return [Example(f"{prefix}{i}", np.zeros(1600 + 10 * i, np.float32), [1, 2], synthetic,
                    tuple(Example(f"{prefix}{i}#view{v}", np.zeros(1600, np.float32), [1, 2]) for v in range(1, views + 1)))
            for i in range(n)]


def _keys(order, epoch):
    return [e.key for batch in order.epoch(epoch) for e in batch]


def test_synthetic_rows_are_capped_per_epoch_and_all_heard_across_epochs():
    real, synthetic = _examples("r", 10), _examples("s", 40, synthetic=True)
    order = DataOrder(real + synthetic, [], batch_size=4, replay_ratio=0, seed=1, max_synthetic_share=0.5)
    heard = set()
    for epoch in range(12):
        keys = _keys(order, epoch)
        assert sum(k.startswith("r") for k in keys) == 10 and sum(k.startswith("s") for k in keys) == 10
        heard |= {k for k in keys if k.startswith("s")}
    assert len(heard) == 40
    uncapped = DataOrder(real + synthetic, [], batch_size=4, replay_ratio=0, seed=1, max_synthetic_share=1.0)
    assert len(_keys(uncapped, 0)) == 50


def test_synthetic_only_data_is_not_capped_to_nothing():
    order = DataOrder(_examples("s", 12, synthetic=True), [], batch_size=4, replay_ratio=0, seed=1,
                      max_synthetic_share=0.5)
    assert len(_keys(order, 0)) == 12


def test_a_small_replay_set_repeats_to_the_ratio():
    real, replay = _examples("r", 10), _examples("p", 3)
    order = DataOrder(real, replay, batch_size=4, replay_ratio=1.0, seed=1)
    counts = Counter(k for k in _keys(order, 0) if k.startswith("p"))
    assert sum(counts.values()) == 10 and set(counts.values()) <= {3, 4} and len(counts) == 3


def test_each_epoch_hears_one_view_of_each_recording_and_the_choice_is_reproducible():
    real = _examples("r", 6, views=2)
    order = DataOrder(real, [], batch_size=3, replay_ratio=0, seed=3)
    picks = [sorted(_keys(order, epoch)) for epoch in range(8)]
    assert all(len(p) == 6 and len({k.split("#")[0] for k in p}) == 6 for p in picks)
    assert {k for p in picks for k in p if k.startswith("r0")} == {"r0", "r0#view1", "r0#view2"}
    again = DataOrder(real, [], batch_size=3, replay_ratio=0, seed=3)
    assert [sorted(_keys(again, epoch)) for epoch in range(8)] == picks


class _Audio:
    def get(self, path):
        rng = np.random.default_rng(len(path))
        return (0.1 * rng.standard_normal(16000)).astype(np.float32)


class _Tokenizer:
    def __call__(self, text, add_special_tokens=False):
        return type("T", (), {"input_ids": [len(w) for w in text.split()]})()


def test_views_are_made_for_real_recordings_only_and_are_seeded():
    utts = [Utterance(audio="a.wav", text="one two", source="real"),
            Utterance(audio="b.wav", text="three", source="synthetic")]
    first = build_examples(utts, _Audio(), _Tokenizer(), 2, views=2, seed=5)
    again = build_examples(utts, _Audio(), _Tokenizer(), 2, views=2, seed=5)
    other = build_examples(utts, _Audio(), _Tokenizer(), 2, views=2, seed=6)
    real, synthetic = first
    assert [v.key for v in real.views] == ["a.wav#view1", "a.wav#view2"] and synthetic.views == ()
    assert synthetic.synthetic and not real.synthetic and real.labels == [3, 3, 2]
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(real.views, again[0].views))
    assert not np.array_equal(real.views[0].audio, real.views[1].audio)
    assert not all(np.array_equal(a.audio, b.audio) for a, b in zip(real.views, other[0].views))


def test_builtin_replay_is_the_replay_half_or_off_with_a_reason(monkeypatch):
    from lora_training.errors import ConfigError
    from lora_training.evaluation import safety

    assert safety.replay_source("mine.jsonl") == ("mine.jsonl", None)
    assert safety.replay_source(None) == (None, None)
    halves = []
    monkeypatch.setattr(safety, "builtin_safety_manifest", lambda half: halves.append(half) or f"/cache/{half}.jsonl")
    assert safety.replay_source("builtin") == ("/cache/replay.jsonl", None) and halves == ["replay"]

    def missing(half):
        raise ConfigError("safety set: no packages installed")

    monkeypatch.setattr(safety, "builtin_safety_manifest", missing)
    path, note = safety.replay_source("builtin")
    assert path is None and note.startswith("replay off:") and "no packages installed" in note


def test_in_loop_evals_decode_with_the_keyterm_hook_and_the_rewrite(monkeypatch, tmp_path):
    from lora_training.evaluation import transcribe
    from lora_training.training.evals import EvalSet, InLoopEvals

    seen = []

    def fake(model, processor, audios, *, batch_size, progress=None, bias=None, rewrite=None):
        seen.append((bias, rewrite))
        return [transcribe.ClipResult(text=rewrite("word error rate")) for _ in audios]

    monkeypatch.setattr(transcribe, "transcribe_clips", fake)
    dev = EvalSet("dev", "dev.jsonl", ["WER"], [np.zeros(1600, np.float32)], None)
    hook = object()

    def rewrite(text):
        return text.replace("word error rate", "WER")

    result = InLoopEvals(dev, dev, None, seen_terms=[], vocabulary=None, batch_size=2, bias=hook,
                         rewrite=rewrite).dev(None, None)
    assert seen == [(hook, rewrite)]
    assert result["wer"] == 0.0 and result["samples"] == [{"ref": "WER", "hyp": "WER"}]


def test_the_runs_vocabulary_gives_its_evals_the_hook_and_the_rewrite(tmp_path):
    from types import SimpleNamespace

    from lora_training.training.evals import eval_decoding

    class Tokenizer:
        def encode(self, text, add_special_tokens=False):
            return [ord(c) for c in text]

        def convert_ids_to_tokens(self, ids):
            return [chr(i) for i in ids]

    processor = SimpleNamespace(tokenizer=Tokenizer())
    vocabulary = tmp_path / "v.txt"
    vocabulary.write_text("WER | word error rate\n")
    on = eval_decoding(processor, str(vocabulary), 1.0, True)
    assert on["bias"] is not None and on["rewrite"]("the word error rate") == "the WER"
    assert eval_decoding(processor, str(vocabulary), 1.0, False)["rewrite"] is None
    assert eval_decoding(processor, None, 1.0, True) == {"bias": None, "rewrite": None}

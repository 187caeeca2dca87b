"""Respelling terms in training labels: same text, shorter first tokens, seeded per epoch, rows unchanged."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lora_training.config import ExperimentConfig
from lora_training.data.vocabulary import load_vocabulary
from lora_training.errors import ConfigError
from lora_training.training.collate import Example
from lora_training.training.data_order import DataOrder
from lora_training.training.respell import Respeller, Respelling, _token_span, respelled


@pytest.fixture(scope="module")
def tokenizer():
    from lora_training.models.embedded import build_processor, tokenizer_json

    return build_processor(tokenizer_json()).tokenizer


def _pieces(tokenizer, ids):
    return tuple(tokenizer.convert_ids_to_tokens(list(ids)))


def test_stdout_is_also_spelled_from_stderrs_first_token(tokenizer):
    """`▁stdout` is one token; `▁st` (stderr's first token) must be able to lead to it too."""
    speller = Respeller(tokenizer, ["stdout", "stderr"])
    text = "Use stdout, then (stdout) now"
    ids = tokenizer.encode(text, add_special_tokens=False)
    word_start, glued = speller.respellings(text)
    assert _pieces(tokenizer, ids[word_start.start:word_start.end]) == ("▁stdout",)
    assert [_pieces(tokenizer, v) for v in word_start.variants] == [("▁st", "d", "out")]
    assert _pieces(tokenizer, ids[glued.start:glued.end]) == ("stdout",)
    assert [_pieces(tokenizer, v) for v in glued.variants] == [("st", "d", "out")]
    # Without stderr nothing starts with `▁st`: stdout keeps its one spelling.
    assert Respeller(tokenizer, ["stdout", "kubectl"]).respellings(text) == ()


def test_every_respelling_of_the_example_vocabulary_decodes_to_the_same_text(tokenizer):
    terms = load_vocabulary("lora_training/data/example_vocabulary.txt").written_forms()
    speller = Respeller(tokenizer, terms)
    rng = random.Random(0)
    respelled_terms = set()
    for term in terms:
        for text in (f"Please check {term} before the release.", f"({term}) is here", f"{term}"):
            ids = tokenizer.encode(text, add_special_tokens=False)
            spans = speller.respellings(text)
            respelled_terms |= {term} if spans else set()
            for span in spans:
                for variant in span.variants:
                    changed = [*ids[:span.start], *variant, *ids[span.end:]]
                    assert changed != ids
                    assert tokenizer.decode(changed) == tokenizer.decode(ids), (term, text)
            assert tokenizer.decode(respelled(ids, spans, 1.0, rng)) == tokenizer.decode(ids)
    # Only terms that another term's first token can start: stdout (▁st), Docker (▁Do), DoRA, CI/CD (▁C).
    assert respelled_terms == {"stdout", "Docker", "DoRA", "CI/CD"}


def test_token_span_needs_token_edges_at_both_ends_of_the_term():
    text = "a stdouts b"
    # "▁a", "▁stdout", "s", "▁b": the term ends inside the text, at a token edge.
    offsets = [(0, 1), (1, 8), (8, 9), (9, 11)]
    assert _token_span(offsets, text, 2, 8) == (1, 2)
    # A token crossing the term's end, or its start, gives no span.
    assert _token_span([(0, 1), (1, 9), (9, 11)], text, 2, 8) is None
    assert _token_span([(0, 3), (3, 8), (8, 11)], text, 2, 8) is None


def test_respelled_follows_the_share_and_the_generator():
    labels = [5, 6, 7, 8, 9, 2]
    spans = (Respelling(1, 2, ((60, 61),)), Respelling(3, 5, ((80, 81, 82), (83,))))
    assert respelled(labels, spans, 0.0, random.Random(1)) == labels
    assert respelled(labels, spans, 1.0, random.Random(1))[:3] == [5, 60, 61]
    always = respelled(labels, spans, 1.0, random.Random(1))
    assert always[3] == 7 and always[-1] == 2 and always[4:-1] in ([80, 81, 82], [83])
    draws = {tuple(respelled(labels, spans, 0.5, random.Random(seed))) for seed in range(40)}
    assert tuple(labels) in draws and len(draws) >= 4
    assert respelled(labels, spans, 0.5, random.Random(7)) == respelled(labels, spans, 0.5, random.Random(7))


def _examples(n: int) -> list[Example]:
    spans = (Respelling(0, 1, ((10, 11),)),)
    return [Example(f"clip{i}", np.zeros(1600 + 10 * i, np.float32), [1, 2], i % 2 == 0, respellings=spans)
            for i in range(n)]


def test_respelling_keeps_every_epochs_rows_and_order_and_repeats_on_resume():
    rows = _examples(24)
    plain = DataOrder(rows, [], batch_size=4, replay_ratio=0, seed=3)
    spelled = DataOrder(rows, [], batch_size=4, replay_ratio=0, seed=3, respell_share=0.5)
    for epoch in range(3):
        a, b = plain.epoch(epoch), spelled.epoch(epoch)
        assert [[e.key for e in batch] for batch in a] == [[e.key for e in batch] for batch in b]
        labels = [e.labels for batch in b for e in batch]
        assert [10, 11, 2] in labels and [1, 2] in labels
        # A resumed run rebuilds the epoch from (seed, epoch): the same labels.
        again = DataOrder(rows, [], batch_size=4, replay_ratio=0, seed=3, respell_share=0.5).epoch(epoch)
        assert [[e.labels for e in batch] for batch in again] == [[e.labels for e in batch] for batch in b]
    assert all(e.labels == [1, 2] for batch in plain.epoch(0) for e in batch)
    assert spelled.describe().endswith("; 24 term occurrence(s) with a shared start, each respelled with probability 0.5")
    assert "respelled" not in plain.describe()


def test_config_default_validation_and_old_configs(tmp_path):
    assert ExperimentConfig(train_manifest="t.jsonl", eval_manifest="e.jsonl").respell_terms == 0.3
    with pytest.raises(ConfigError, match="respell_terms: expected a share in"):
        ExperimentConfig(train_manifest="t.jsonl", eval_manifest="e.jsonl", respell_terms=1.5)
    data = ExperimentConfig(train_manifest="t.jsonl", eval_manifest="e.jsonl").to_dict()
    del data["respell_terms"]
    path = tmp_path / "config.json"
    path.write_text(__import__("json").dumps(data))
    assert ExperimentConfig.load(path).respell_terms == 0.0  # a run saved before respelling resumes as it began

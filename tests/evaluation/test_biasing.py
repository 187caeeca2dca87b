"""Keyterm biasing: the token trie, the depth bonus, the logits hook, and decoding with it on a tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lora_training.testing.signals import loud_syllables
from lora_training.evaluation.biasing import (KeytermBias, KeytermTrie, depth_bonus, keyterm_bias, shared_starts,
                                              shorter_starts, term_sequences)


@pytest.fixture(scope="module")
def tokenizer():
    from lora_training.models.embedded import build_processor, tokenizer_json

    return build_processor(tokenizer_json()).tokenizer


def _pieces(tokenizer, sequences):
    return {tuple(tokenizer.convert_ids_to_tokens(list(s))) for s in sequences}


def test_term_sequences_at_a_word_start_and_glued(tokenizer):
    """The tokens differ at a word start (▁py) and glued to text before (py, as in "(pytest")."""
    assert _pieces(tokenizer, term_sequences(tokenizer, ["pytest"])) == {("▁py", "test"), ("py", "test")}
    assert _pieces(tokenizer, term_sequences(tokenizer, ["C#", "!="])) == {("▁C", "#"), ("C", "#"),
                                                                           ("▁!=",), ("!=",)}
    assert _pieces(tokenizer, term_sequences(tokenizer, ["git rebase"])) == {("▁git", "▁re", "base"),
                                                                            ("git", "▁re", "base")}
    # A form given twice, or whose variants coincide, gives each sequence once.
    assert len(term_sequences(tokenizer, ["pytest", "pytest"])) == 2
    # The same ids the tokenizer gives the form inside a sentence.
    sentence = tokenizer.encode("run pytest now", add_special_tokens=False)
    assert tuple(sentence[1:3]) in term_sequences(tokenizer, ["pytest"])


def test_shorter_starts_spell_the_same_text_from_a_shorter_first_token(tokenizer):
    (word_start,) = [s for s in term_sequences(tokenizer, ["stdout"]) if _pieces(tokenizer, [s]) == {("▁stdout",)}]
    assert _pieces(tokenizer, shorter_starts(tokenizer, word_start)) == {("▁s", "td", "out"), ("▁st", "d", "out"),
                                                                          ("▁std", "out")}
    for sequence in term_sequences(tokenizer, ["git rebase", "PostgreSQL", "(stdout)", "__init__"]):
        for variant in shorter_starts(tokenizer, sequence):
            assert tokenizer.decode(list(variant)) == tokenizer.decode(list(sequence))
            assert len(tokenizer.convert_ids_to_tokens([variant[0]])[0]) < len(tokenizer.convert_ids_to_tokens([sequence[0]])[0])
    # A word-start token never shrinks to the bare `▁`: `▁k·ub·ect·l` has no shorter start.
    assert shorter_starts(tokenizer, tokenizer.encode("kubectl", add_special_tokens=False)) == []
    # Shared starts: only those beginning with another sequence's first token.
    shared = shared_starts(tokenizer, term_sequences(tokenizer, ["stdout", "stderr"]))
    assert {_pieces(tokenizer, [s]).pop(): _pieces(tokenizer, v) for s, v in shared.items()} == {
        ("▁stdout",): {("▁st", "d", "out")}, ("stdout",): {("st", "d", "out")}, ("▁st", "derr"): set(),
        ("st", "derr"): set()}


def test_hook_continues_shared_first_tokens_to_every_term_without_new_starts(tokenizer):
    """`▁st` starts stderr (`▁st·derr`); an adapter that starts stdout with it must be able to finish stdout."""
    hook = keyterm_bias(tokenizer, ["stdout", "stderr"], 1.0)
    canonical = KeytermTrie.build(term_sequences(tokenizer, ["stdout", "stderr"]))
    assert set(hook.trie.children[0]) == set(canonical.children[0])  # no ordinary word gains a start bonus
    st = tokenizer.convert_tokens_to_ids("▁st")
    after = {tokenizer.convert_ids_to_tokens([t])[0] for t in hook.trie.continuations([st], starts=False)}
    assert after == {"derr", "d"}
    d = tokenizer.convert_tokens_to_ids("d")
    assert tokenizer.convert_ids_to_tokens(list(hook.trie.continuations([st, d], starts=False))) == ["out"]


def test_depth_bonus_is_the_runtimes_log_scheme():
    assert depth_bonus(2.0, 1) == 2.0
    assert depth_bonus(2.0, 2) == pytest.approx(2 * (1 + math.log(2)))  # 3.386
    assert depth_bonus(2.0, 3) == pytest.approx(4.197, abs=1e-3)
    assert depth_bonus(0.0, 5) == 0.0


def test_trie_tracks_partial_matches_starting_at_any_step():
    trie = KeytermTrie.build([(5, 6, 7), (5, 8), (9,), (5, 5, 6)])
    assert trie.max_depth == 3
    starts = {5: 1, 9: 1}
    assert trie.continuations([]) == starts
    assert trie.continuations([1, 2]) == starts
    assert trie.continuations([1, 5]) == {**starts, 6: 2, 8: 2, 5: 2}
    assert trie.continuations([5, 6]) == {**starts, 7: 3}
    # [5, 5] is in (5, 5, 6) at depth 2 and its last 5 starts (5, 6, 7) at depth 1: 6 counts at the deeper one.
    assert trie.continuations([3, 5, 5]) == {**starts, 6: 3, 8: 2, 5: 2}
    # A finished term continues nowhere; a term can start right after it.
    assert trie.continuations([5, 6, 7]) == starts
    assert trie.continuations([1, 5], starts=False) == {6: 2, 8: 2, 5: 2}


def test_hook_adds_the_depth_bonus_per_row():
    boost = 1.5
    hook = KeytermBias(KeytermTrie.build([(5, 6, 7), (9,)]), boost)
    logits = torch.zeros((3, 12))
    hook(logits, [[], [4, 5], [5, 6]])
    expected = torch.zeros((3, 12))
    expected[:, [5, 9]] = boost
    expected[1, 6] = depth_bonus(boost, 2)
    expected[2, 7] = depth_bonus(boost, 3)
    torch.testing.assert_close(logits, expected)
    # A term's first token that also continues a match gets the deeper bonus, not both added.
    hook = KeytermBias(KeytermTrie.build([(5, 5)]), boost)
    logits = torch.zeros((1, 8))
    hook(logits, [[5]])
    assert logits[0, 5].item() == pytest.approx(depth_bonus(boost, 2))


def test_off_or_zero_boost_gives_no_hook(tokenizer):
    assert keyterm_bias(tokenizer, ["pytest"], 0.0) is None
    assert keyterm_bias(tokenizer, [], 2.0) is None
    assert isinstance(keyterm_bias(tokenizer, ["pytest"], 2.0), KeytermBias)


@pytest.fixture(scope="module")
def decoding():
    """A tiny random model, three encoded clips, their budgets and step logits of the unbiased decode."""
    from transformers import MoonshineForConditionalGeneration

    from lora_training.models.moonshine_ops import decode_states, encode_clips
    from lora_training.testing.tiny import tiny_moonshine_config

    config = tiny_moonshine_config()
    config.initializer_range = 0.3  # wide weights: varied tokens, not one token repeated
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MoonshineForConditionalGeneration(config).eval()
    rng = np.random.default_rng(2)
    audios = [loud_syllables(s, rng) for s in (1.0, 1.5, 2.0)]
    budgets = [8, 8, 8]
    steps = []
    with torch.inference_mode():
        clips = encode_clips(model, audios)
        plain = decode_states(model, clips, budgets, bias=lambda logits, _: steps.append(logits.clone()))
    return model, clips, budgets, plain, steps


def _decode(decoding, bias):
    from lora_training.models.moonshine_ops import decode_states

    model, clips, budgets, _, _ = decoding
    with torch.inference_mode():
        return decode_states(model, clips, budgets, bias=bias)


def test_boost_zero_decodes_the_unbiased_tokens(decoding, tokenizer):
    _, _, _, plain, _ = decoding
    trie = KeytermTrie.build(term_sequences(tokenizer, ["kubectl", "pytest", "C#", "dev@example.com"]))
    assert _decode(decoding, KeytermBias(trie, 0.0)) == plain
    assert _decode(decoding, None) == plain


def test_biased_decoding_prefers_a_terms_tokens_when_near_the_top(decoding):
    """Row 0's runner-up first token becomes a term's first token: a bonus just above its gap to the
    top picks it, one just below does not; once picked, the term's 2nd token (step 1's runner-up)
    wins with the depth-2 bonus, which is 1.69x the start bonus."""
    _, _, _, plain, steps = decoding
    top2 = steps[0][0].topk(2)
    first, gap = top2.indices[1].item(), (top2.values[0] - top2.values[1]).item()
    assert _decode(decoding, KeytermBias(KeytermTrie.build([(first,)]), gap * 0.99))[0] == plain[0]
    steered = _decode(decoding, KeytermBias(KeytermTrie.build([(first,)]), gap * 1.01))[0]
    assert steered[0] == first and plain[0][0] != first

    # A term made of row 0's first token and step 1's runner-up: the depth-2 bonus finishes it.
    top2 = steps[1][0].topk(2)
    second, gap = top2.indices[1].item(), (top2.values[0] - top2.values[1]).item()
    assert second != plain[0][0] != plain[0][1], "the term's 2nd token must be neither its 1st nor step 1's top"
    term = [plain[0][0], second]
    boost = gap / (1 + math.log(2))
    assert _decode(decoding, KeytermBias(KeytermTrie.build([term]), boost * 1.01))[0][:2] == term
    assert _decode(decoding, KeytermBias(KeytermTrie.build([term]), boost * 0.99))[0][:2] == plain[0][:2]

import random

import pytest

from lora_training.evaluation.intervals import paired_delta_interval, rate_interval, within_noise


def _corpus(n, seed=1):
    rng = random.Random(seed)
    words = [rng.randint(5, 15) for _ in range(n)]
    return words, [rng.randint(0, w) for w in words]


def test_rate_interval_holds_the_rate_and_narrows_with_more_utterances():
    small, large = _corpus(20), _corpus(2000)
    for words, errors in (small, large):
        low, high = rate_interval(errors, words)
        assert low <= sum(errors) / sum(words) <= high
    width = [rate_interval(e, w)[1] - rate_interval(e, w)[0] for w, e in (small, large)]
    assert width[1] < width[0] / 4


def test_interval_is_reproducible():
    words, errors = _corpus(50)
    assert rate_interval(errors, words) == rate_interval(errors, words)


@pytest.mark.parametrize(("errors", "words", "expected"), [
    ([1], [2], None),            # one utterance: no resampling distribution
    ([0, 0], [0, 0], None),      # no reference words
    ([0, 0, 0], [3, 4, 5], [0.0, 0.0]),  # every resample equal: the degenerate case is that value
])
def test_rate_interval_edges(errors, words, expected):
    assert rate_interval(errors, words) == expected


def test_paired_delta_sees_a_consistent_small_gain_that_separate_intervals_miss():
    words, base = _corpus(40)
    new = [max(0, e - 1) for e in base]  # one edit fewer on nearly every utterance
    delta = paired_delta_interval(base, new, words)
    assert delta[1] < 0 and within_noise(delta) is False
    separate_base, separate_new = rate_interval(base, words), rate_interval(new, words)
    assert separate_new[1] > separate_base[0]  # unpaired intervals overlap


def test_identical_systems_are_within_noise():
    words, base = _corpus(30)
    assert within_noise(paired_delta_interval(base, base, words)) is True
    assert within_noise(None) is None


def test_paired_deltas_from_score_rows():
    from lora_training.evaluation.intervals import paired_deltas
    from lora_training.evaluation.metrics import score

    refs = [f"run kubectl apply number {i}" for i in range(12)]
    base = score(refs, [r.replace("kubectl", "cube control") for r in refs], terms=[["kubectl"]] * 12)
    new = score(refs, refs, terms=[["kubectl"]] * 12)
    out = paired_deltas(base["per_utterance"], new["per_utterance"])
    assert out["wer"][1] < 0 and out["term_recall"][0] > 0
    assert within_noise(out["wer"]) is False

"""95% intervals for corpus-level rates, by bootstrap over utterances (SciPy's `stats.bootstrap`).

A corpus rate is a ratio of sums (word edits / reference words, terms hit / terms), so the
utterance is the unit that is resampled: its words are not independent of each other. A change
between two systems on the same utterances gets a *paired* interval (both systems resampled with
the same indices, as in sacrebleu's paired bootstrap), which is far tighter than two separate
intervals, and is called "within noise" when it includes zero. Seeded: the same inputs always
give the same interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0


def _bootstrap(data: tuple, statistic) -> list[float] | None:
    import numpy as np
    from scipy.stats import bootstrap

    n = len(data[0])
    if n < 2:
        return None
    arrays = tuple(np.asarray(d, dtype=float) for d in data)
    # BCa corrects the percentile interval's bias and skew; it degenerates (NaN) when every
    # resample gives the same value, and then the percentile interval is that value.
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the degenerate case is handled below, not the user's concern
            result = bootstrap(arrays, statistic, paired=True, vectorized=True, n_resamples=RESAMPLES,
                               confidence_level=CONFIDENCE, method=method, rng=np.random.default_rng(SEED))
        low, high = result.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return [float(low), float(high)]
    return None


def _ratio(numerators, denominators, axis=-1):
    import numpy as np

    total = np.sum(denominators, axis=axis)
    return np.sum(numerators, axis=axis) / np.where(total > 0, total, 1)


def rate_interval(numerators: Sequence[float], denominators: Sequence[float]) -> list[float] | None:
    """Interval of sum(numerators) / sum(denominators); None with fewer than 2 utterances or no units."""
    if sum(denominators) <= 0:
        return None
    return _bootstrap((numerators, denominators), _ratio)


def paired_delta_interval(base: Sequence[float], new: Sequence[float],
                          denominators: Sequence[float]) -> list[float] | None:
    """Interval of (sum(new) - sum(base)) / sum(denominators), resampling utterances jointly."""
    if sum(denominators) <= 0:
        return None

    def delta(b, n, d, axis=-1):
        return _ratio(n, d, axis) - _ratio(b, d, axis)

    return _bootstrap((base, new, denominators), delta)


def within_noise(interval: list[float] | None) -> bool | None:
    """True when a change's interval includes zero; None when there is no interval."""
    if interval is None:
        return None
    return interval[0] <= 0 <= interval[1]


def paired_deltas(base_rows: list[dict], new_rows: list[dict]) -> dict[str, list[float] | None]:
    """Paired 95% intervals of new - base for WER, CER and term recall, from two systems' per-utterance
    rows of `metrics.score` on the same utterances, in the same order."""
    if len(base_rows) != len(new_rows):
        raise ValueError(f"paired_deltas: rows differ, expected the same utterances, got {len(base_rows)} "
                         f"and {len(new_rows)}")
    terms = [len(r["terms_hit"]) + len(r["terms_missed"]) for r in base_rows]
    # Recall counts hits, where WER counts errors: the sign of "better" is opposite, the maths the same.
    return {
        "wer": paired_delta_interval([r["errors"] for r in base_rows], [r["errors"] for r in new_rows],
                                     [r["words"] for r in base_rows]),
        "cer": paired_delta_interval([r["char_errors"] for r in base_rows], [r["char_errors"] for r in new_rows],
                                     [r["chars"] for r in base_rows]),
        "term_recall": paired_delta_interval([len(r["terms_hit"]) for r in base_rows],
                                             [len(r["terms_hit"]) for r in new_rows], terms),
    }

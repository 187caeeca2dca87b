"""How numbers look to the user, everywhere: percentages and h:mm:ss durations."""

from __future__ import annotations

import math


def percent(value: float | None, missing: str = "-") -> str:
    """A fraction as a percentage with two decimals (0.1734 -> "17.34%")."""
    return missing if value is None else f"{100 * value:.2f}%"


def hms(seconds: float | None, missing: str = "-") -> str:
    """A duration as h:mm:ss; `missing` for None or a non-finite ETA."""
    if seconds is None or not math.isfinite(seconds):
        return missing
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

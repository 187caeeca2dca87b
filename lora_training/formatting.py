"""How numbers look to the user, everywhere: percentages and h:mm:ss durations."""

from __future__ import annotations

import math


def percent(value: float | None, missing: str = "-") -> str:
    """A fraction as a percentage with two decimals (0.1734 -> "17.34%")."""
    return missing if value is None else f"{100 * value:.2f}%"


def interval_text(interval: list[float] | None, signed: bool = False) -> str:
    """" [12.1, 22.9]" for a 95% interval of a fraction, in percent (points when `signed`); "" for none."""
    if not interval:
        return ""
    spec = "+.1f" if signed else ".1f"
    return f" [{100 * interval[0]:{spec}}, {100 * interval[1]:{spec}}]"


def hms(seconds: float | None, missing: str = "-") -> str:
    """A duration as h:mm:ss; `missing` for None or a non-finite ETA."""
    if seconds is None or not math.isfinite(seconds):
        return missing
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

"""Line charts as inline SVG, drawn on the server from metrics.jsonl rows: the page needs no chart
library, and a poll swaps in a fresh chart like any other HTML. The report's curves (reporting/plots.py)
are PNGs written once at the end; these are redrawn at every poll while the run trains."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

# The drawing box in SVG units; the SVG scales to its container (studio.css: svg.chart).
WIDTH, HEIGHT = 480, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 10, 28


@dataclass
class Series:
    label: str
    points: list[tuple[int, float]]  # (step, value)
    color: str
    unit: str = ""
    spec: str = ".2f"  # the legend's and tooltips' number format, as `just status` prints it
    dashed: bool = False
    # A dot per point where points are few (evals); a training loss has one per step, so only its last.
    markers: bool = True


def loss_series(rows: list[dict[str, Any]]) -> list[Series]:
    """The training loss of each logged step (a NaN loss is written as a string and left out)."""
    train = [(r["step"], r["loss"]) for r in rows if r.get("type") == "train" and _finite(r.get("loss"))]
    return [Series("training loss", train, "#0b63c5", spec=".4f", markers=False)]


def eval_series(rows: list[dict[str, Any]]) -> list[Series]:
    """Dev WER, dev term recall and the in-loop safety WER, in percent, at each dev eval (as the report)."""
    evals = [r for r in rows if r.get("type") == "eval" and _finite(r.get("wer"))]
    recall = [(r["step"], v) for r in evals
              if _finite(v := ((r.get("term_recall") or {}).get("overall") or {}).get("recall"))]
    safety = [r for r in evals if _finite(r.get("safety_wer"))]
    clips = f" ({safety[0].get('safety_n')} clips)" if safety else ""
    return [Series("dev WER", [(r["step"], 100 * r["wer"]) for r in evals], "#b3261e", "%"),
            Series("dev term recall", [(s, 100 * v) for s, v in recall], "#1b7a3a", "%"),
            Series(f"safety WER{clips}", [(r["step"], 100 * r["safety_wer"]) for r in safety], "#7b3fa0", "%",
                   dashed=True)]


def line_chart(title: str, series: list[Series], x_max: int) -> Markup:
    """A <figure>: the SVG (steps 0..x_max across, 0 up to a round top) and a legend with each last value."""
    drawn = [s for s in series if s.points]
    top = _round_up(max((v for s in drawn for _, v in s.points), default=1.0))
    x_max = max([x_max, 1, *(x for s in drawn for x, _ in s.points)])

    def x(step: float) -> float:
        return round(LEFT + (WIDTH - LEFT - RIGHT) * step / x_max, 1)

    def y(value: float) -> float:
        return round(HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * value / top, 1)

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">']
    for value in (0, top / 2, top):
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value)}" y2="{y(value)}" stroke="#d8dde3"/>'
                     f'<text x="{LEFT - 4}" y="{y(value) + 4}" text-anchor="end" font-size="12" fill="#5f6b76">'
                     f'{value:g}</text>')
    for step in dict.fromkeys((0, x_max // 2, x_max)):
        anchor = "start" if step == 0 else "end" if step == x_max else "middle"
        parts.append(f'<text x="{x(step)}" y="{HEIGHT - 10}" text-anchor="{anchor}" font-size="12" '
                     f'fill="#5f6b76">{"step " if step == 0 else ""}{step}</text>')
    if not drawn:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#5f6b76">no points yet</text>')
    for s in drawn:
        coords = " ".join(f"{x(step)},{y(value)}" for step, value in s.points)
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        parts.append(f'<g class="series" data-series="{escape(s.label)}" data-points="{len(s.points)}">'
                     f'<polyline points="{coords}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>')
        for step, value in s.points if s.markers else s.points[-1:]:
            parts.append(f'<circle cx="{x(step)}" cy="{y(value)}" r="3" fill="{s.color}">'
                         f'<title>{escape(s.label)} at step {step}: {value:{s.spec}}{s.unit}</title></circle>')
        parts.append("</g>")
    parts.append("</svg>")
    legend = "".join(f'<span class="runs-key"><i style="border-color:{s.color}"'
                     f'{" class=dashed" if s.dashed else ""}></i>{escape(s.label)} {_last(s)}</span>' for s in series)
    return Markup(f'<figure class="runs-chart">{"".join(parts)}<figcaption><b>{escape(title)}</b> '
                  f'{legend}</figcaption></figure>')


def _last(s: Series) -> str:
    if not s.points:
        return '<span class="muted">none yet</span>'
    step, value = s.points[-1]
    return f'{value:{s.spec}}{s.unit} <span class="muted">(step {step})</span>'


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _round_up(value: float) -> float:
    """The axis top: the next 1, 2, 2.5 or 5 times a power of ten at or above `value` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value * (1 - 1e-9))

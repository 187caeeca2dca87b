"""The report's curves: training loss, and eval WER / term recall over steps, as PNGs in the run folder."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lora_training.reporting.report import RunFiles


def plot_curves(run: RunFiles) -> list[str]:
    """loss.png (training loss) and eval.png (eval WER and term recall) in the run folder; names written."""
    from matplotlib.figure import Figure  # the Figure API renders with Agg and touches no global backend

    from lora_training.atomic import atomic_write_bytes

    written = []
    train = [r for r in run.metrics if r.get("type") == "train" and isinstance(r.get("loss"), (int, float))]
    if train:
        fig = Figure(figsize=(6.4, 3.4), layout="constrained")
        ax = fig.subplots()
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue")
        ax.set(xlabel="step", ylabel="training loss", title=f"{run.name}: training loss")
        ax.grid(alpha=0.3)
        written.append(atomic_write_bytes(run.folder.plot("loss"), _png(fig)).name)
    evals = run.evals
    if evals:
        fig = Figure(figsize=(6.4, 3.4), layout="constrained")
        ax = fig.subplots()
        steps = [r["step"] for r in evals]
        ax.plot(steps, [100 * r["wer"] for r in evals], marker="o", color="tab:red", label="WER")
        recall = [(r["step"], r["term_recall"]["overall"]["recall"]) for r in evals
                  if r.get("term_recall", {}).get("overall", {}).get("recall") is not None]
        if recall:
            ax.plot([s for s, _ in recall], [100 * v for _, v in recall], marker="s", color="tab:green",
                    label="term recall")
        best = run.best_eval
        ax.axvline(best["step"], color="grey", linestyle=":", label=f"best WER (step {best['step']})")
        ax.set(xlabel="step", ylabel="%", title=f"{run.name}: evaluation")
        ax.grid(alpha=0.3)
        ax.legend()
        written.append(atomic_write_bytes(run.folder.plot("eval"), _png(fig)).name)
    return written


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()

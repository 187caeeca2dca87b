"""The report's curves, as PNGs in the run folder: training loss; and dev WER, term recall and the
in-loop safety WER over steps, with the two tests on the eval manifest as points. The safety curve
shares the axis with dev WER so a rise in general-English errors lines up with the steps that
caused it."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lora_training.reporting.report import RunFiles


def plot_curves(run: RunFiles) -> list[str]:
    """loss.png (training loss) and eval.png (dev WER, term recall, safety WER, test WER) in the run folder;
    the names written."""
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
        ax.plot(steps, [100 * r["wer"] for r in evals], marker="o", color="tab:red", label="dev WER")
        recall = [(r["step"], r["term_recall"]["overall"]["recall"]) for r in evals
                  if r.get("term_recall", {}).get("overall", {}).get("recall") is not None]
        if recall:
            ax.plot([s for s, _ in recall], [100 * v for _, v in recall], marker="s", color="tab:green",
                    label="dev term recall")
        safety = [r for r in evals if r.get("safety_wer") is not None]
        if safety:
            ax.plot([r["step"] for r in safety], [100 * r["safety_wer"] for r in safety], marker="^", linestyle="--",
                    color="tab:purple", label=f"safety WER ({safety[0]['safety_n']} clips)")
        tests = [r for r in (run.test("baseline"), run.test("best")) if r]
        if tests:  # at the step of the weights tested: 0, and best_adapter's
            ax.plot([r["adapter_step"] for r in tests], [100 * r["wer"] for r in tests], marker="X", linestyle="none",
                    markersize=9, color="black", label="test WER (eval manifest)")
        best = run.best_eval
        ax.axvline(best["step"], color="grey", linestyle=":", label=f"best dev WER (step {best['step']})")
        ax.set(xlabel="step", ylabel="%", title=f"{run.name}: evaluation")
        ax.grid(alpha=0.3)
        ax.legend()
        written.append(atomic_write_bytes(run.folder.plot("eval"), _png(fig)).name)
    return written


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()

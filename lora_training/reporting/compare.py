"""`compare`: one row of headline numbers per run, from its eval_results.json where present, else
from the trainer's own test and dev evals (the console marks which)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from lora_training.config import adapter_kind, sites_text
from lora_training.options import option
from lora_training.reporting.report import RunFiles, read_run
from lora_training.runs import DEFAULT_OUTPUTS


@dataclass
class CompareOptions:
    names: list[str] = option([], "experiment names", positional=True, nargs="+", metavar="NAME")
    outputs: str = option(DEFAULT_OUTPUTS, "folder holding experiment folders")


def run_row(run: RunFiles) -> dict[str, Any]:
    """One run's headline numbers for `compare`: from eval_results.json where present, else the trainer."""
    from lora_training.runs.results import interval, metric

    c, s = run.config, run.state
    best, baseline = run.test("best") or run.best_eval, run.test("baseline") or run.baseline_eval
    results = run.eval_results
    summary = (results or {}).get("summary") or {}
    safety = (results or {}).get("safety") or {}
    seconds = (s.get("ended_at") or (time.time() if s.get("phase") == "running" else None))
    return {
        "name": run.name,
        "phase": s.get("phase"),
        "model": c["model_id"],
        "adapter": f"{adapter_kind(c)} r{c['lora_r']} {sites_text(c)}",
        "steps": s.get("step"),
        "max_steps": c["max_steps"],
        "train_seconds": round(seconds - s["started_at"], 1) if seconds and s.get("started_at") else None,
        "baseline_wer": metric(summary.get("baseline"), "wer") if results else metric(baseline, "wer"),
        "best_wer": metric(summary.get("adapter"), "wer") if results else metric(best, "wer"),
        "best_step": (results["model"].get("adapter") or {}).get("step") if results
        else (best or {}).get("adapter_step", (best or {}).get("step")),
        "best_wer_interval": interval(summary.get("adapter"), "wer") if results else (best or {}).get("wer_interval"),
        "n_words": (summary.get("adapter") or {}).get("n_words") if results else None,
        # The paired interval of the adapter's WER change: what says "within noise" across runs.
        "wer_change_interval": (summary.get("delta_interval") or {}).get("wer") if results else None,
        "term_recall": metric(summary.get("adapter"), "term_recall") if results else metric(best, "term_recall"),
        "term_counts": (f"{(summary['adapter']['term_recall']['overall'] or {}).get('hits')}/"
                        f"{(summary['adapter']['term_recall']['overall'] or {}).get('total')}"
                        if results and summary.get("adapter") else None),
        "safety_delta_points": safety.get("delta_wer_points"),
        "safety_passed": safety.get("passed"),
        "source": "eval_results" if results else ("trainer" if best else None),
    }


def compare_runs(run_dirs: list[str | os.PathLike]) -> list[dict[str, Any]]:
    return [run_row(read_run(d)) for d in run_dirs]

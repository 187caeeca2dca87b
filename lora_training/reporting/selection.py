"""The report's account of safety-aware selection and stopping (training/selection.py), read from
state.json: the rule that chose best_adapter, the lower dev WERs it passed over and why, why the run
stopped early, and the warning when no trained step stayed within the safety budget. Plain
sentences (the report escapes them), kept apart so report.py stays one read."""

from __future__ import annotations

from typing import Any


def _steps(steps: list[int]) -> str:
    return ("step " if len(steps) == 1 else "steps ") + ", ".join(map(str, steps))


def selection_lines(state: dict[str, Any]) -> list[str]:
    """The curves section's sentences: the rule, what it excluded, the early stop."""
    sel, lines = state.get("selection") or {}, []
    if sel.get("rule"):
        text = f"best_adapter is the {sel['rule']}."
        if sel.get("safety_budget") is not None:
            over, excluded, unscored = (sel.get(k) or [] for k in ("over_budget_steps", "excluded_for_safety",
                                                                   "excluded_unscored"))
            text += (f" Safety WER over the budget at {_steps(over)}." if over
                     else " No safety score went over the budget.")
            if excluded:
                text += f" Lower dev WERs passed over for safety: {_steps(excluded)}."
            if unscored:
                text += f" Lower dev WERs without a safety score of their own (not eligible): {_steps(unscored)}."
        lines.append(text)
    if state.get("stop_reason"):
        lines.append(f"The run stopped early at step {state.get('step', '?')}: {state['stop_reason']}.")
    return lines


def selection_conclusions(state: dict[str, Any]) -> list[str]:
    """The conclusions' sentences: the warning first, it changes what best_adapter is."""
    out = [f"WARNING: {state['selection_warning']}."] if state.get("selection_warning") else []
    if state.get("stop_reason"):
        out.append(f"Training stopped early: {state['stop_reason']}.")
    return out

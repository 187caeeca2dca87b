"""Console views of experiment states (the JSON from `status --json` is the source).

WERs during a run are the dev set's (what best_adapter is chosen on), labelled so; the eval
manifest's numbers appear only as the run's `test` verdict. The safety column is the change of
the in-loop safety WER since step 0, in points: the first sign that ordinary English suffers. Since
it decides which dev eval may become best_adapter and can stop a run, both views say when it did:
the reason of an early stop, and the warning when no trained step stayed within the safety budget.
"""

from __future__ import annotations

import time
from typing import Any

from lora_training.formatting import hms, interval_text, percent


def num_text(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def age_text(ts) -> str:
    if not ts:
        return "-"
    delta = int(time.time() - ts)
    return f"{delta}s ago" if delta < 120 else f"{delta // 60}m ago" if delta < 7200 else f"{delta // 3600}h ago"


def render_status(rows: list[dict[str, Any]], detailed: bool) -> str:
    if not rows:
        return "no experiments yet (start one with `just run-experiment NAME ...`)"
    if detailed:
        return "\n\n".join(_render_one(r) for r in rows)
    header = (f"{'name':<24} {'phase':<10} {'step':>11} {'loss':>8} {'dev WER':>9} {'best dev':>9} "
              f"{'safety Δ':>11} {'ETA':>8}  updated")
    lines = [header, "-" * len(header)]
    for r in rows:
        best = (r.get("best") or {}).get("wer")
        last = (r.get("last_eval") or {}).get("wer")
        step = f"{r.get('step', 0)}/{r.get('max_steps', '?')}"
        eta = hms(r.get("eta_seconds")) if r.get("phase") == "running" else "-"
        lines.append(f"{r['name']:<24} {r.get('phase', '?'):<10} {step:>11} "
                     f"{num_text(r.get('loss'), '.4f'):>8} {percent(last):>9} {percent(best):>9} "
                     f"{safety_change_text(r):>11} {eta:>8}  {age_text(r.get('updated_at'))}")
        if r.get("phase") == "unreadable":  # its state file is damaged: say why under its row
            lines.append(f"  {r['error']}")
        lines += [f"  {note}" for note in notes_of(r)]
    return "\n".join(lines)


def notes_of(r: dict[str, Any]) -> list[str]:
    """What safety-aware selection and stopping did (training/selection.py), one line each."""
    return ([f"early stop: {r['stop_reason']}"] if r.get("stop_reason") else []) + (
        [f"WARNING: {r['selection_warning']}"] if r.get("selection_warning") else [])


def _render_one(r: dict[str, Any]) -> str:
    best = r.get("best") or {}
    last = r.get("last_eval") or {}
    selection = r.get("selection") or {}
    lines = [
        f"experiment: {r['name']}  ({r['run_dir']})",
        f"phase:      {r.get('phase')}" + (f"  error: {r['error']}" if r.get("error") else ""),
        f"step:       {r.get('step', 0)}/{r.get('max_steps', '?')}"
        + (f"  ETA {hms(r.get('eta_seconds'))}" if r.get("phase") == "running" else ""),
        f"loss:       {num_text(r.get('loss'), '.4f')}  lr {num_text(r.get('lr'), '.2e')}",
        f"last dev:   step {last.get('step', '-')}  WER {percent(last.get('wer'))}  term recall "
        f"{percent(last.get('term_recall'))}  safety WER {safety_text(last, r.get('safety_baseline'))}",
        f"best dev:   step {best.get('step', '-')}  WER {percent(best.get('wer'))}  term recall "
        f"{percent(best.get('term_recall'))}  safety WER {safety_text(best, r.get('safety_baseline'))}  (best_adapter)",
        *([f"selection:  {selection['rule']}" + (f"; over budget at steps {', '.join(map(str, steps))}"
                                                  if (steps := selection.get("over_budget_steps")) else "")]
          if selection.get("rule") else []),
        *notes_of(r),
        f"test:       {verdict_text(r.get('test') or {})}",
        f"pid:        {r.get('pid', '-')}  updated {age_text(r.get('updated_at'))}",
    ]
    for name, path in (r.get("adapters") or {}).items():
        lines.append(f"{name + ':':<13}{path}")
    if r.get("log_tail"):
        lines.append("last log lines:")
        lines.extend(f"  {line}" for line in r["log_tail"])
    return "\n".join(lines)


def safety_change_text(r: dict[str, Any]) -> str:
    last, start = (r.get("last_eval") or {}).get("safety_wer"), r.get("safety_baseline")
    return "-" if last is None or start is None else f"{100 * (last - start):+.2f} pts"


def safety_text(row: dict[str, Any], start: float | None) -> str:
    if row.get("safety_wer") is None:
        return "-"
    change = "" if start is None else f", {100 * (row['safety_wer'] - start):+.2f} pts since step 0"
    return f"{percent(row['safety_wer'])} ({row.get('safety_n')} clips{change})"


def verdict_text(test: dict[str, Any]) -> str:
    """The eval manifest's verdict: the untouched model at step 0, best_adapter at the end."""
    base, best = test.get("baseline"), test.get("best")
    if not base:
        return "-"
    text = f"eval manifest ({base.get('n_utterances')} clips): untouched WER {percent(base['wer'])}"
    if not best:
        return text + "; best_adapter is tested at the end of the run"
    return (text + f" → best_adapter (step {best.get('adapter_step')}) {percent(best['wer'])}"
            + interval_text(best.get("wer_interval")))


def render_validation(results: list[dict]) -> str:
    """`validate-manifest`: one line per manifest, each problem beneath a bad one."""
    lines = []
    for r in results:
        if r["ok"]:
            lines.append(f"{r['path']}: {r['utterances']} utterances, {r['hours']:.2f} hours, OK")
        else:
            lines.append(f"{r['path']}: {len(r['problems'])} problem(s)")
            lines += [f"  {problem}" for problem in r["problems"]]
    return "\n".join(lines)


def render_model_check(result: dict) -> str:
    return "\n".join([
        f"model:      {result['model']}",
        f"resolved:   {result['resolved']}",
        f"load time:  {result['load_seconds']:.1f} s",
        f"audio:      {result['audio']} ({result['audio_seconds']:.1f} s)",
        f"transcript: {result['transcript']}",
        f"decode:     {result['decode_seconds']:.2f} s",
    ])

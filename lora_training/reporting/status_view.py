"""Console views of experiment states (the JSON from `status --json` is the source)."""

from __future__ import annotations

import time
from typing import Any


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _eta(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _age(ts) -> str:
    if not ts:
        return "-"
    delta = int(time.time() - ts)
    return f"{delta}s ago" if delta < 120 else f"{delta // 60}m ago" if delta < 7200 else f"{delta // 3600}h ago"


def render_status(rows: list[dict[str, Any]], detailed: bool) -> str:
    if not rows:
        return "no experiments yet (start one with `just run-experiment NAME ...`)"
    if detailed:
        return "\n\n".join(_render_one(r) for r in rows)
    header = f"{'name':<24} {'phase':<10} {'step':>11} {'loss':>8} {'last WER':>9} {'best WER':>9} {'ETA':>8}  updated"
    lines = [header, "-" * len(header)]
    for r in rows:
        best = (r.get("best") or {}).get("wer")
        last = (r.get("last_eval") or {}).get("wer")
        step = f"{r.get('step', 0)}/{r.get('max_steps', '?')}"
        eta = _eta(r.get("eta_seconds")) if r.get("phase") == "running" else "-"
        lines.append(f"{r['name']:<24} {r.get('phase', '?'):<10} {step:>11} "
                     f"{_num(r.get('loss'), '.4f'):>8} {_pct(last):>9} {_pct(best):>9} {eta:>8}  "
                     f"{_age(r.get('updated_at'))}")
    return "\n".join(lines)


def _render_one(r: dict[str, Any]) -> str:
    best = r.get("best") or {}
    last = r.get("last_eval") or {}
    lines = [
        f"experiment: {r['name']}  ({r['run_dir']})",
        f"phase:      {r.get('phase')}" + (f"  error: {r['error']}" if r.get("error") else ""),
        f"step:       {r.get('step', 0)}/{r.get('max_steps', '?')}"
        + (f"  ETA {_eta(r.get('eta_seconds'))}" if r.get("phase") == "running" else ""),
        f"loss:       {_num(r.get('loss'), '.4f')}  lr {_num(r.get('lr'), '.2e')}",
        f"last eval:  step {last.get('step', '-')}  WER {_pct(last.get('wer'))}  term recall {_pct(last.get('term_recall'))}",
        f"best eval:  step {best.get('step', '-')}  WER {_pct(best.get('wer'))}  term recall {_pct(best.get('term_recall'))}",
        f"pid:        {r.get('pid', '-')}  updated {_age(r.get('updated_at'))}",
    ]
    for name, path in (r.get("adapters") or {}).items():
        lines.append(f"{name + ':':<13}{path}")
    if r.get("log_tail"):
        lines.append("last log lines:")
        lines.extend(f"  {line}" for line in r["log_tail"])
    return "\n".join(lines)

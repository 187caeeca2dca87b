"""The quality benchmark's table: one row per variant, read from `evaluate`'s result JSON.

What the result JSON gives is used as given: WER and its interval, false alarms, the safety WER
and its interval, and, where the result's own baseline is the untouched model (no biasing), the
paired change (`summary.delta` + `summary.delta_interval`, `safety.delta_wer_points` +
`safety.delta_interval`). Computed here, from the per-utterance rows with
`evaluation.intervals`, is only what it lacks:
- seen/unseen term recall relative to the user's *recordings* (the result splits by the adapter's
  sidecar `train_terms`, which for ours and seed002 includes the synthetic speech), with intervals;
- the change against the untouched model for a result whose baseline decoded with keyterm
  biasing (ours), and the ours − plain differences, all paired (same utterances resampled together);
- per-utterance false alarms and safety word errors behind those paired intervals (the result
  keeps only totals and per-clip WER); the false-alarm sums are checked against the given totals.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Column key, header, lower is better.
COMPARED = (("wer", "test WER", True), ("seen", "seen recall", False), ("unseen", "unseen recall", False),
            ("false_alarms", "false alarms", True), ("safety_wer", "safety WER", True))
UNSEEN_TARGET = 0.75
SAFETY_BUDGET_POINTS = 0.5


@dataclass
class View:
    """One system of one result JSON: its test rows and safety rows by utterance id."""

    label: str
    result: dict
    system: str  # "baseline" or "adapter" inside the result
    rows: dict = field(init=False)
    safety_rows: dict = field(init=False)

    def __post_init__(self) -> None:
        self.rows = {u["id"]: u for u in self.result["utterances"]}
        self.safety_rows = {u["id"]: u for u in (self.result.get("safety") or {}).get("utterances", [])}

    @property
    def summary(self) -> dict:
        return self.result["summary"][self.system]

    @property
    def safety(self) -> dict | None:
        return (self.result.get("safety") or {}).get(self.system)

    @property
    def biased(self) -> bool:
        return self.result.get("biasing") is not None


# --- per-utterance numbers (what the result lacks) ---------------------------------------------

def _terms_of(view: View, utt: dict, vocabulary: list[str]) -> list[str]:
    """The reference terms `evaluate` scored: the rows' `terms` when any row has them, else found in the ref."""
    from lora_training.evaluation.metrics import find_terms

    if any(u["terms"] is not None for u in view.rows.values()):
        return utt["terms"] or []
    return find_terms(utt["ref"], vocabulary)


def per_utterance(view: View, ids: list[str], safety_ids: list[str], seen: set[str],
                  vocabulary: list[str]) -> dict[str, list[float]]:
    """Numerators and denominators per utterance (the same utterances, in the same order, for every
    view), for rates and paired intervals."""
    from lora_training.evaluation.metrics import find_terms, score

    out: dict[str, list[float]] = {k: [] for k in ("errors", "words", "seen_hits", "seen_total", "unseen_hits",
                                                   "unseen_total", "false_alarms", "ones")}
    for i in ids:
        utt, own = view.rows[i], view.rows[i][view.system]
        out["errors"].append(own["errors"])
        out["words"].append(own["words"])
        for part, keep in (("seen", True), ("unseen", False)):
            out[f"{part}_hits"].append(sum((t in seen) == keep for t in own["terms_hit"]))
            out[f"{part}_total"].append(sum((t in seen) == keep for t in own["terms_hit"] + own["terms_missed"]))
        alarms = Counter(find_terms(own["hyp"], vocabulary)) - Counter(_terms_of(view, utt, vocabulary))
        out["false_alarms"].append(sum(alarms.values()))
        out["ones"].append(1)
    if safety_ids and view.safety:
        scored = score([view.safety_rows[i]["ref"] for i in safety_ids],
                       [view.safety_rows[i][view.system]["hyp"] for i in safety_ids], normalizer="safety")
        out["safety_errors"] = [r["errors"] for r in scored["per_utterance"]]
        out["safety_words"] = [r["words"] for r in scored["per_utterance"]]
    return out


def _rate(numerators, denominators) -> dict:
    from lora_training.evaluation.intervals import rate_interval

    hits, total = sum(numerators), sum(denominators)
    return {"hits": hits, "total": total, "recall": hits / total if total else None,
            "interval": rate_interval(numerators, denominators)}


def _paired(base: dict, new: dict, num: str, den: str, *, scale: float | None = None) -> dict:
    """new − base of sum(num)/sum(den) with its paired interval; `scale` turns a per-utterance rate into a count."""
    from lora_training.evaluation.intervals import paired_delta_interval

    if num not in base or num not in new or sum(base[den]) <= 0:
        return {"value": None, "interval": None}
    value = (sum(new[num]) - sum(base[num])) / sum(base[den])
    interval = paired_delta_interval(base[num], new[num], base[den])
    if scale is not None:
        value, interval = value * scale, interval and [x * scale for x in interval]
    return {"value": value, "interval": interval}


def paired_columns(base: dict, new: dict) -> dict:
    """Every compared column's paired change new − base (fractions; false alarms as a count)."""
    return {"wer": _paired(base, new, "errors", "words"),
            "seen": _paired(base, new, "seen_hits", "seen_total"),
            "unseen": _paired(base, new, "unseen_hits", "unseen_total"),
            "false_alarms": _paired(base, new, "false_alarms", "ones", scale=len(base["ones"])),
            "safety_wer": _paired(base, new, "safety_errors", "safety_words")}


# --- the rows -----------------------------------------------------------------------------------

def build_table(views: dict[str, View], walls: dict[str, float | None], seen: list[str], vocabulary: list[str],
                notes: list[str]) -> dict:
    """The JSON document: rows, ours − plain, the targets, and notes."""
    seen_set = set(seen)
    base = views.get("baseline")
    # Clips that failed in any result are left out of every paired comparison (the result drops them per run).
    first = next(iter(views.values()))
    ids = [i for i in first.rows if all(i in v.rows for v in views.values())]
    safety_ids = [i for i in first.safety_rows if all(i in v.safety_rows for v in views.values())]
    numbers = {name: per_utterance(v, ids, safety_ids, seen_set, vocabulary) for name, v in views.items()}
    rows = []
    for name, view in views.items():
        n = numbers[name]
        given = view.result["summary"].get("delta")
        fa_given = view.summary["term_recall"]["false_alarms"]["total"]
        if fa_given != sum(n["false_alarms"]):
            notes.append(f"{name}: false alarms recounted per utterance sum to {sum(n['false_alarms'])}, the result "
                         f"says {fa_given}; the paired false-alarm interval may be off")
        safety = view.safety or {}
        row = {"variant": name, "eval_results": view.result.get("_path"), "system": view.system,
               "biasing": view.result.get("biasing"),
               "wer": {"value": view.summary["wer"], "interval": view.summary.get("wer_interval"),
                       "n_words": view.summary.get("n_words")},
               "seen": _rate(n["seen_hits"], n["seen_total"]), "unseen": _rate(n["unseen_hits"], n["unseen_total"]),
               "false_alarms": fa_given,
               "safety_wer": {"value": safety.get("wer"), "interval": safety.get("wer_interval"),
                              "n_words": safety.get("n_words")},
               "wall_seconds": walls.get(name)}
        if name == "baseline":
            row["delta"] = None
        elif view.system == "adapter" and not view.biased and given is not None:
            # The result's own baseline is the untouched model decoded as the baseline row: its paired change is ours.
            block = view.result.get("safety") or {}
            row["delta"] = {"source": "evaluate",
                            "wer": {"value": given["wer"], "interval": view.result["summary"]["delta_interval"]["wer"]},
                            "safety_wer": {"value": None if block.get("delta_wer_points") is None
                                           else block["delta_wer_points"] / 100,
                                           "interval": block.get("delta_interval")}}
        elif base is not None:
            paired = paired_columns(numbers["baseline"], n)
            row["delta"] = {"source": "paired vs baseline rows", "wer": paired["wer"],
                            "safety_wer": paired["safety_wer"]}
        else:
            row["delta"] = None
        rows.append(row)
    table = {"rows": rows, "seen_terms": seen, "notes": notes}
    if "ours" in views and "plain" in views:
        table["ours_vs_plain"] = paired_columns(numbers["plain"], numbers["ours"])
    # One changed choice each (sites, target modules): the variant − ours, paired, sets the default.
    table["variants_vs_ours"] = {name: paired_columns(numbers["ours"], numbers[name])
                                 for name in views if name.startswith("ours-") and "ours" in views}
    table["targets"] = targets(table, numbers)
    return table


def _verdict(change: dict, lower_is_better: bool) -> str:
    interval = change.get("interval")
    if interval is None:
        return "no interval"
    low, high = interval
    if (high < 0) if lower_is_better else (low > 0):
        return "better"
    if (low > 0) if lower_is_better else (high < 0):
        return "worse"
    return "within noise"


def targets(table: dict, numbers: dict) -> list[dict]:
    """The issue's three targets, each with the numbers behind its verdict."""
    rows = {r["variant"]: r for r in table["rows"]}
    out = []
    if "ours_vs_plain" in table:
        verdicts = {key: _verdict(table["ours_vs_plain"][key], lower) for key, _, lower in COMPARED}
        out.append({"target": "ours beats plain on every column beyond the noise (paired 95% interval excludes 0)",
                    "holds": all(v == "better" for v in verdicts.values()), "columns": verdicts})
    if "ours" in rows:
        unseen = rows["ours"]["unseen"]
        out.append({"target": f"unseen-term recall of ours >= {UNSEEN_TARGET:.0%}",
                    "holds": unseen["recall"] is not None and unseen["recall"] >= UNSEEN_TARGET,
                    "value": unseen["recall"], "interval": unseen["interval"]})
        delta = (rows["ours"].get("delta") or {}).get("safety_wer") or {}
        out.append({"target": f"safety WER of ours within +{SAFETY_BUDGET_POINTS} points of the baseline",
                    "holds": delta.get("value") is not None and 100 * delta["value"] <= SAFETY_BUDGET_POINTS,
                    "value_points": None if delta.get("value") is None else 100 * delta["value"],
                    "interval": delta.get("interval")})
    return out


# --- rendering ----------------------------------------------------------------------------------

def _pct(value, interval) -> str:
    from lora_training.formatting import interval_text

    return "-" if value is None else f"{100 * value:.1f}{interval_text(interval)}"


def _signed(change: dict | None, *, count: bool = False) -> str:
    if not change or change.get("value") is None:
        return "-"
    if count:
        iv = change.get("interval")
        return f"{change['value']:+.0f}" + (f" [{iv[0]:+.1f}, {iv[1]:+.1f}]" if iv else "")
    from lora_training.formatting import interval_text

    return f"{100 * change['value']:+.1f}{interval_text(change.get('interval'), signed=True)}"


def _recall(r: dict) -> str:
    return f"{_pct(r['recall'], r['interval'])} ({r['hits']}/{r['total']})"


def _minutes(seconds) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def render(table: dict) -> str:
    """The table, ours − plain and the targets as text (rich, no colour when piped)."""
    import io

    from rich.console import Console
    from rich.table import Table

    from lora_training.formatting import interval_text

    grid = Table(title="Quality: the simulated user's test set (95% intervals; Δ: paired change vs baseline, "
                       "in points)", title_justify="left")
    for header in ("variant", "test WER %", "Δ WER", "seen recall %", "unseen recall %", "false alarms",
                   "safety WER %", "Δ safety", "wall time"):
        grid.add_column(header, justify="left" if header == "variant" else "right")
    for r in table["rows"]:
        delta = r.get("delta") or {}
        mark = " *" if delta.get("source", "").startswith("paired") else ""
        grid.add_row(r["variant"] + mark, _pct(r["wer"]["value"], r["wer"]["interval"]), _signed(delta.get("wer")),
                     _recall(r["seen"]), _recall(r["unseen"]), str(r["false_alarms"]),
                     _pct(r["safety_wer"]["value"], r["safety_wer"]["interval"]), _signed(delta.get("safety_wer")),
                     _minutes(r["wall_seconds"]))
    buffer = io.StringIO()
    console = Console(file=buffer, width=220, highlight=False)
    console.print(grid)
    lines = [buffer.getvalue().rstrip()]
    lines += [f"  {note}" for note in table["notes"]]
    if "ours_vs_plain" in table:
        lines.append("\nours − plain (paired 95% interval; better/worse only when it excludes 0):")
        for key, header, lower in COMPARED:
            change = table["ours_vs_plain"][key]
            text = _signed(change, count=key == "false_alarms")
            lines.append(f"  {header:<14} {text:<26} {_verdict(change, lower)}")
    for name, changes in (table.get("variants_vs_ours") or {}).items():
        lines.append(f"\n{name} − ours (paired 95% interval):")
        for key, header, lower in COMPARED:
            lines.append(f"  {header:<14} {_signed(changes[key], count=key == 'false_alarms'):<26} "
                         f"{_verdict(changes[key], lower)}")
    if table["targets"]:
        lines.append("\ntargets:")
        for t in table["targets"]:
            detail = ""
            if "columns" in t:
                detail = ", ".join(f"{k} {v}" for k, v in t["columns"].items())
            elif "value_points" in t:
                detail = "no value" if t["value_points"] is None else f"{t['value_points']:+.2f} points"
            elif "value" in t:
                detail = "no value" if t["value"] is None else f"{100 * t['value']:.1f}%" + interval_text(t["interval"])
            lines.append(f"  [{'HOLDS' if t['holds'] else 'FAILS'}] {t['target']}: {detail}")
    return "\n".join(lines)


def load_view(label: str, path: str | Path, system: str) -> View:
    result = json.loads(Path(path).read_text(encoding="utf-8"))
    result["_path"] = str(path)
    return View(label, result, system)

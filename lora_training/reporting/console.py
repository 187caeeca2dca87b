"""Console view of an evaluation result (the JSON of `transcribe` / `evaluate`), drawn with rich.

Everything shown is read from the result dict, so `--json` output, this view and the markdown
report can never disagree. Texts go in as rich `Text`, never as markup: a transcript such as
"[bold]" or "arr[0]" is printed as written.
"""

from __future__ import annotations

import difflib
import io
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from lora_training.evaluation.intervals import within_noise
from lora_training.formatting import hms, interval_text, percent

# (label, metric name, lower is better, as a percentage)
_ROWS = (
    ("WER", "wer", True, True),
    ("CER", "cer", True, True),
    ("WER, exact case+punct.", "exact_wer", True, True),
    ("term recall", "term_recall", False, True),
    ("  seen in training", "term_recall_seen", False, True),
    ("  unseen", "term_recall_unseen", False, True),
    ("symbol accuracy", "symbol_accuracy", False, True),
    ("false alarms", "false_alarms", True, False),
    ("looping outputs", "n_looping", True, False),
)
BETTER, WORSE = "green", "red"


def _value(value, is_pct: bool) -> str:
    return percent(value) if is_pct else ("-" if value is None else str(value))


def _delta(delta, lower_is_better: bool, is_pct: bool, span: list[float] | None = None) -> Text:
    """The change, with its paired interval; a change whose interval holds zero is "within noise"."""
    if delta is None:
        return Text("-")
    shown = f"{100 * delta:+.2f} pts" if is_pct else f"{delta:+d}" if isinstance(delta, int) else f"{delta:+g}"
    shown += interval_text(span, signed=True)
    if delta == 0:
        return Text(shown, style="dim")
    if within_noise(span):
        return Text(shown + " within noise", style="dim")
    return Text(shown, style=BETTER if (delta < 0) == lower_is_better else WORSE)


def _systems(result: dict[str, Any]) -> list[str]:
    rows = result["utterances"]
    return [s for s in ("baseline", "adapter") if rows and s in rows[0]] or [
        s for s in ("baseline", "adapter") if result["timing"].get(s)]


def summary_table(result: dict[str, Any]) -> Table:
    """Metrics per system with the adapter's change; safety WER and speed at the bottom."""
    from lora_training.runs.results import interval, metric, term_counts

    systems = _systems(result)
    summary = result["summary"]
    both = len(systems) == 2
    table = Table(title=_title(result), title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("metric")
    for name in systems:
        table.add_column(name, justify="right")
    if both:
        table.add_column("change", justify="right")
    if any(summary.get(s) for s in systems):
        for label, name, lower, is_pct in _ROWS:
            values = [metric(summary.get(s), name) for s in systems]
            if all(v is None for v in values):
                continue
            cells = [_value(v, is_pct) + interval_text(interval(summary.get(s), name)) for v, s in zip(values, systems)]
            cells = [f"{c} ({term_counts(summary.get(s), name)})" if c != "-" and term_counts(summary.get(s), name)
                     else c for c, s in zip(cells, systems)]
            intervals = summary.get("delta_interval") or {}
            extra = [_delta((summary["delta"] or {}).get(name), lower, is_pct, intervals.get(name))] if both else []
            table.add_row(label, *cells, *extra)
    safety = result.get("safety")
    if safety:
        values = [(safety.get(s) or {}).get("wer") for s in systems]
        extra = []
        if both:
            d = safety["delta_wer_points"]
            span = interval_text(safety.get("delta_interval"), signed=True)
            extra = [Text("-") if d is None else
                     Text(f"{d:+.2f} pts{span}", style=BETTER if d <= safety["budget_wer_points"] else WORSE)]
        cells = [percent(v) + interval_text((safety.get(s) or {}).get("wer_interval")) for v, s in zip(values, systems)]
        table.add_row(f"safety WER ({safety['n_utterances']} clips)", *cells, *extra)
    counted = next((summary[s] for s in systems if summary.get(s)), None)
    if counted and counted.get("wer_interval"):
        table.caption = (f"[..]: 95% interval, bootstrap over {counted['n_utterances']} utterances "
                         f"({counted['n_words']} words); change: paired bootstrap")
        table.caption_justify = "left"
    timing = result["timing"]
    table.add_row("real-time factor", *[_value((timing.get(s) or {}).get("rtf"), False) for s in systems],
                  *([Text("")] if both else []))
    return table


def source_table(result: dict[str, Any]) -> Table | None:
    """WER per source of the eval clips (real, correction, synthetic...), when there is more than one."""
    from lora_training.reporting.sources import wer_by_source

    groups = wer_by_source(result)
    if not groups:
        return None
    systems = [s for s in ("baseline", "adapter") if s in groups[0]]
    table = Table(title="WER by source", title_justify="left", show_edge=False, pad_edge=False)
    for column in ("source", "clips", "words", *systems, *(["change"] if "delta" in groups[0] else [])):
        table.add_column(column, justify="left" if column == "source" else "right")
    for g in groups:
        cells = [percent(g[s]["wer"]) + interval_text(g[s]["wer_interval"]) for s in systems]
        change = [_delta(g["delta"], True, True, g["delta_interval"])] if "delta" in g else []
        table.add_row(Text(g["source"]), str(g["n_utterances"]), str(g["n_words"]), *cells, *change)
    return table


def _title(result: dict[str, Any]) -> str:
    model = result["model"]
    inputs = result["inputs"]
    source = inputs["manifest"] or ", ".join(inputs["audio"])
    adapter = f" + {model['adapter_dir']}" if model.get("adapter_dir") else ""
    biasing = result.get("biasing")
    bias = (f"; keyterm biasing: {biasing['terms']} terms, boost {biasing['boost']:g}"
            + (", spoken forms rewritten" if biasing.get("rewrite_spoken") else "")) if biasing else ""
    return f"{model['model_id']}{adapter} on {source} ({inputs['n_clips']} clips, {inputs['audio_seconds']:.0f} s){bias}"


def word_diff(before: str, after: str) -> tuple[Text, Text]:
    """Both texts word by word: words only in `before` struck through in red, words only in `after` green.

    Two lines rather than one merged line, so each stays readable without colour (logs, pipes).
    """
    a, b = before.split(), after.split()
    left, right = Text(), Text()
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        for words, line, style in ((a[i1:i2], left, f"strike {WORSE}"), (b[j1:j2], right, f"bold {BETTER}")):
            if words:
                line.append(" ".join(words), style=None if op == "equal" else style)
                line.append(" ")
    for line in (left, right):
        line.rstrip()
        if not line.plain:
            line.append("(empty)", style="dim")
    return left, right


def changed_samples(result: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """The n rows the adapter changed most (by utterance WER, then terms hit); worst rows with one system."""
    rows = result["utterances"]
    systems = _systems(result)
    if len(systems) == 1:
        s = systems[0]
        scored = [r for r in rows if r[s]["wer"] is not None and r[s]["wer"] > 0]
        return sorted(scored, key=lambda r: -r[s]["wer"])[:n]

    def change(row):
        b, a = row["baseline"], row["adapter"]
        wer = 0.0 if a["wer"] is None else abs(a["wer"] - b["wer"])
        terms = 0 if a["terms_hit"] is None else abs(len(a["terms_hit"]) - len(b["terms_hit"]))
        return (wer, terms)

    changed = [r for r in rows if r["baseline"]["hyp"] != r["adapter"]["hyp"]]
    return sorted(changed, key=change, reverse=True)[:n]


def samples_view(result: dict[str, Any], n: int) -> Group | None:
    rows = changed_samples(result, n)
    if not rows:
        return None
    systems = _systems(result)
    parts: list[Any] = [Text("\nmost changed samples (baseline → adapter)" if len(systems) == 2
                             else "\nworst samples (reference → hypothesis)", style="bold")]
    for row in rows:
        parts.append(_sample_header(row, systems))
        if len(systems) == 2:
            parts.append(Text("  ref:      ") + Text(row["ref"]))
            old, new = word_diff(row["baseline"]["hyp"], row["adapter"]["hyp"])
            parts += [Text("  baseline: ") + old, Text("  adapter:  ") + new]
        else:
            ref, hyp = word_diff(row["ref"], row[systems[0]]["hyp"])
            parts += [Text("  ref: ") + ref, Text("  hyp: ") + hyp]
    return Group(*parts)


def _sample_header(row: dict[str, Any], systems: list[str]) -> Text:
    header = Text("• ")
    if len(systems) == 2:
        b, a = row["baseline"], row["adapter"]
        if a["wer"] is None:
            header.append("changed", style="yellow")
        elif a["wer"] < b["wer"] or (a["wer"] == b["wer"] and len(a["terms_hit"]) > len(b["terms_hit"])):
            header.append("better", style=f"bold {BETTER}")
        elif a["wer"] > b["wer"] or len(a["terms_hit"]) < len(b["terms_hit"]):
            header.append("worse", style=f"bold {WORSE}")
        else:
            header.append("changed", style="yellow")
        header.append(f"  {row['id']}")
        if a["wer"] is not None:
            header.append(f"  WER {percent(b['wer'])} → {percent(a['wer'])}")
        if a.get("looping"):
            header.append("  looping", style=WORSE)
    else:
        s = row[systems[0]]
        header.append(f"{row['id']}  WER {percent(s['wer'])}")
    return header


def transcripts_table(result: dict[str, Any]) -> Table:
    """Every clip's text, for audio given without references."""
    systems = _systems(result)
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("clip")
    for name in systems:
        table.add_column(name if len(systems) == 2 else "transcript")
    for row in result["utterances"]:
        cells = [Text(row[s]["hyp"]) + (Text("  (looping)", style=WORSE) if row[s]["looping"] else Text(""))
                 for s in systems]
        table.add_row(Text(row["id"]), *cells)
    return table


def failures_table(failures: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(failures)} failure(s): skipped, not scored", title_justify="left",
                  title_style=f"bold {WORSE}", show_edge=False, pad_edge=False)
    for column in ("clip", "set", "stage", "error"):
        table.add_column(column, overflow="fold")
    for f in failures:
        stage = f["stage"] + (f" ({f['system']})" if f["system"] else "")
        table.add_row(Text(f["id"]), f["set"], stage, Text(f["error"]))
    return table


def status_line(result: dict[str, Any]) -> Text:
    status = result["status"]
    safety = result.get("safety")
    text = Text()
    if safety and safety["passed"] is not None:
        verdict = "passed" if safety["passed"] else "FAILED"
        text.append(f"safety gate {verdict}: {safety['delta_wer_points']:+.2f} WER points "
                    f"(budget +{safety['budget_wer_points']:.2f})\n", style=BETTER if safety["passed"] else WORSE)
    if status["ok"]:
        text.append("OK", style=f"bold {BETTER}")
    else:
        text.append("FAILED: " + "; ".join(status["problems"]), style=f"bold {WORSE}")
    return text


def results_view(result: dict[str, Any], *, show: int = 5) -> Group:
    """The whole console view: table (or transcripts), changed samples, failures, verdict."""
    parts: list[Any] = []
    if result["inputs"]["has_references"]:
        parts.append(summary_table(result))
        if (by_source := source_table(result)) is not None:
            parts += [Text(""), by_source]
        samples = samples_view(result, show)
        if samples is not None:
            parts.append(samples)
    else:
        parts.append(Text(_title(result), style="italic"))
        parts.append(transcripts_table(result))
        if result.get("safety"):
            parts.append(summary_table(result))
    if result["failures"]:
        parts.append(Text(""))
        parts.append(failures_table(result["failures"]))
    parts.append(Text(""))
    parts.append(status_line(result))
    return Group(*parts)


# Piped output (logs, `make demo | tee`) has no terminal width; rich would fold the table at 80.
PIPED_WIDTH = 120


def print_results(result: dict[str, Any], *, show: int = 5, console: Console | None = None) -> None:
    import sys

    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else PIPED_WIDTH)
    console.print(results_view(result, show=show))


def render_text(result: dict[str, Any], *, show: int = 5, width: int = 120) -> str:
    """The view as plain text (no colour), for tests and logs."""
    buffer = io.StringIO()
    print_results(result, show=show, console=Console(file=buffer, width=width, color_system=None, highlight=False))
    return buffer.getvalue()


def compare_table(rows: list[dict[str, Any]]) -> Table:
    """One line per run (rows from reporting.compare.compare_runs); the best adapter WER in bold.

    A WER marked * comes from the trainer's own evals because the run has no eval_results.json.
    """
    notes = ["[..]: 95% interval; a change whose paired interval holds 0 is within noise"]
    if any(r["source"] == "trainer" for r in rows):
        notes.append("* from the trainer (its end-of-run test, else its best dev eval); `just evaluate NAME` for "
                     "the full evaluation with safety")
    table = Table(show_edge=False, pad_edge=False, caption_justify="left", caption="\n".join(notes))
    table.add_column("run", no_wrap=True)
    for column in ("adapter", "steps", "time", "baseline WER", "adapter WER", "WER change", "term recall",
                   "safety Δ"):
        table.add_column(column, justify="left" if column == "adapter" else "right")
    scored = [r["best_wer"] for r in rows if r["best_wer"] is not None]
    best = min(scored) if scored else None
    for r in rows:
        mark = "*" if r["source"] == "trainer" else ""
        is_best = r["best_wer"] is not None and r["best_wer"] == best
        wer = Text(percent(r["best_wer"]) + mark + interval_text(r.get("best_wer_interval")),
                   style="bold" if is_best else "")
        if r["best_wer"] is None or r["baseline_wer"] is None:
            change = Text("-")
        else:
            span = r.get("wer_change_interval")
            change = _delta(r["best_wer"] - r["baseline_wer"], True, True, span)
        recall = percent(r["term_recall"]) + (f" ({r['term_counts']})" if r.get("term_counts") else "")
        if r["safety_delta_points"] is None:
            safety = Text("-")
        else:
            safety = Text(f"{r['safety_delta_points']:+.2f} pts", style=BETTER if r["safety_passed"] else WORSE)
        steps = f"{'-' if r['steps'] is None else r['steps']}/{r['max_steps']}"
        if r["phase"] != "completed":
            steps += f" {r['phase'] or '?'}"
        table.add_row(Text(r["name"]), r["adapter"], steps, hms(r["train_seconds"]), percent(r["baseline_wer"]), wer,
                      change, recall, safety)
    return table


def export_summary(result: dict) -> str:
    """What `export` wrote, how large, and whether the graphs transcribe as the PyTorch model does."""
    adapter = result.get("adapter") or {}
    lines = [f"exported {result['run']} ({'base model only' if not adapter else 'adapter step ' + str(adapter.get('step'))}"
             f" on {result['base_model']}) -> {result['out']}",
             f"weights: {result['quantization']['weights']}"]
    lines += [f"  {name:28} {info['bytes'] / 1e6:8.1f} MB" for name, info in result["files"].items()]
    check = result.get("verification")
    if check:
        lines.append(f"verified: {check['identical']}/{check['clips']} eval clips transcribed identically by the "
                     "exported graphs (onnxruntime) and the merged PyTorch model")
        lines += [f"  {d['id']}: torch {d['torch']!r} / export {d['export']!r}" for d in check["differing"][:3]]
    lines.append(f"dictate with it: just dictate --model {result['out']}")
    return "\n".join(lines)

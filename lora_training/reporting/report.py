"""The markdown training report of one run, and the rows of `compare`, read from outputs/NAME only.

    write_report(run_dir) -> outputs/NAME/report.md (+ loss.png, eval.png)

Sources: config.json, state.json, metrics.jsonl (dev evals with the in-loop safety WER; the two
tests on the eval manifest) and eval_results.json (`evaluate NAME`). Without eval_results.json the
results are the trainer's tests (untouched model vs best_adapter), else the dev evals of a run not
yet ended (optimistic: best_adapter was chosen on them); the report says which. The layout is
docs/training_report.md, a `string.Template`, so a user can reorder or reword it without code.
"""

from __future__ import annotations

import difflib
from collections import Counter
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from string import Template
from typing import Any

from lora_training.config import adapter_kind, sites_text
from lora_training.errors import LoraTrainingError
from lora_training.formatting import hms, interval_text, percent
from lora_training.options import option
from lora_training.reporting.plots import plot_curves
from lora_training.reporting.selection import selection_conclusions, selection_lines
from lora_training.reporting.sources import training_by_source, wer_by_source
from lora_training.reporting.terms import recall_by_source
from lora_training.runs import RunDir, RunRef

TEMPLATE = Path(__file__).resolve().parents[2] / "docs" / "training_report.md"
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#~"})


@dataclass
class ReportOptions(RunRef):
    template: str = option(str(TEMPLATE), "markdown template (a string.Template)")
    samples: int = option(5, "most-changed samples in the report", metavar="N")


@dataclass
class RunFiles:
    """Everything the report and `compare` read from one run folder."""

    name: str
    run_dir: Path
    config: dict[str, Any]
    state: dict[str, Any]
    metrics: list[dict[str, Any]]
    eval_results: dict[str, Any] | None

    @property
    def folder(self) -> RunDir:
        return RunDir(self.run_dir)

    @property
    def evals(self) -> list[dict[str, Any]]:
        """The dev evals (step 0 and every eval_interval steps)."""
        return [r for r in self.metrics if r.get("type") == "eval"]

    def test(self, adapter: str) -> dict[str, Any] | None:
        """The trainer's test on the eval manifest: `baseline` (step 0) or `best` (best_adapter, at the end)."""
        return next((r for r in self.metrics if r.get("type") == "test" and r.get("adapter") == adapter), None)

    @property
    def best_eval(self) -> dict[str, Any] | None:
        """best_adapter's dev eval (state.json's `best`: within the safety budget), else the lowest dev WER."""
        chosen = (self.state.get("best") or {}).get("step")
        return next((r for r in self.evals if r["step"] == chosen), None) or min(
            self.evals, key=lambda r: r["wer"], default=None)

    @property
    def baseline_eval(self) -> dict[str, Any] | None:
        return next((r for r in self.evals if r["step"] == 0), None)


def read_run(run_dir: str | os.PathLike) -> RunFiles:
    """Load a run folder; an error naming the file when config.json or a result is unusable."""
    from lora_training.runs.results import read_results

    run = RunDir(Path(run_dir))
    config = run.load_config().to_dict()
    results = read_results(run.eval_results, fix=f"rerun `just evaluate {run.name}`")
    return RunFiles(name=run.name, run_dir=run.path, config=config, state=run.read_state() or {},
                    metrics=run.read_metrics(), eval_results=results)


# --- sections ---------------------------------------------------------------------------

def _md(text: Any) -> str:
    return str(text).translate(_MD_SPECIAL)


def _pct(value) -> str:
    return percent(value, missing="–")


def _pts(value) -> str:
    return "–" if value is None else f"{100 * value:+.2f} pts"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _objective(run: RunFiles) -> str:
    c = run.config
    kind = adapter_kind(c)
    return (f"Personalise `{_md(c['model_id'])}` to one speaker's voice and vocabulary with a {kind} adapter "
            f"(r={c['lora_r']}, alpha={c['lora_alpha']}, {sites_text(c)} layers: "
            f"{', '.join(c['target_modules'])}): fewer word errors and exact jargon and symbols on the user's "
            f"own dictation, without damaging ordinary English (the safety WER).")


def _replay_path(config: dict) -> str | None:
    """The replay manifest the run read (`builtin` resolved), or None when it replayed nothing."""
    from lora_training.evaluation.safety import replay_source

    if not config.get("replay_ratio"):
        return None
    return replay_source(config.get("replay_manifest"))[0]


def _manifest_row(label: str, path: str | None) -> list[str] | None:
    from lora_training.data.manifest import load_manifest, total_seconds

    if not path:
        return None
    try:
        utts = load_manifest(path, check_audio=False)
    except LoraTrainingError as e:
        return [label, f"`{_md(path)}`", f"unreadable: {_md(str(e).splitlines()[0])}", "", "", ""]
    partial = any(u.duration is None for u in utts)
    hours = f"{total_seconds(utts, read_audio=False) / 3600:.2f}" + (" (partial)" if partial else "")
    sources = Counter(u.source or "unknown" for u in utts)
    terms = len({t for u in utts for t in (u.terms or [])})
    mix = ", ".join(f"{k} {v}" for k, v in sorted(sources.items()))
    return [label, f"`{_md(path)}`", str(len(utts)), hours, mix, str(terms)]


def _data(run: RunFiles) -> str:
    c = run.config
    rows = [r for r in (_manifest_row("train", c["train_manifest"]), _manifest_row("eval", c["eval_manifest"]),
                        _manifest_row("dev", c["dev_manifest"]), _manifest_row("replay", _replay_path(c)),
                        _manifest_row("corrections", c.get("corrections_manifest"))) if r]
    text = _table(["set", "manifest", "utterances", "hours", "sources", "distinct terms"], rows)
    if trained := training_by_source(c, _replay_path(c)):
        carved = "" if c["dev_manifest"] else "; the dev set was carved out of the train manifest's rows"
        text += "\n\nTraining rows by source: " + ", ".join(
            f"{k} {n}" + (f" (each heard {c['corrections_weight']} times per epoch)" if k == "correction" else "")
            for k, n in sorted(trained.items())) + carved + "."
    if overlap := run.state.get("overlap"):  # run-experiment's check of training against held-out rows
        text += ("\n\n" + "; ".join(f"train/{kind} overlap: {n} rows" for kind, n in overlap.items())
                 + " (same normalised text or same audio, checked before training).")
    safety = (run.eval_results or {}).get("safety")
    if safety:
        text += (f"\n\nSafety set: `{_md(safety['manifest'])}`, {safety['n_utterances']} clips"
                 + (f" ({_md(safety['description'])})." if safety.get("description") else "."))
    if c.get("vocabulary"):
        text += f"\n\nVocabulary: `{_md(c['vocabulary'])}`."
    return text


def _config(run: RunFiles) -> str:
    rows = [[f"`{k}`", f"`{_md(json.dumps(v, ensure_ascii=False))}`"] for k, v in run.config.items()]
    s = run.state
    if s.get("started_at") and s.get("ended_at"):
        rows.append(["wall time", hms(s["ended_at"] - s["started_at"])])
    rows.append(["outcome", f"{s.get('phase', 'unknown')} at step {s.get('step', '?')}"
                 + (f" (early stop: {_md(s.get('stop_reason') or 'dev WER')})" if s.get("early_stopped") else "")])
    return _table(["field", "value"], rows)


def _curves(run: RunFiles, plots: list[str]) -> str:
    if not plots:
        return "No metrics recorded yet (metrics.jsonl is empty or missing)."
    lines = [f"![{p[:-4]}]({p})" for p in plots]
    best = run.best_eval
    if best:
        lines.append(f"\nBest dev WER {_pct(best['wer'])} at step {best['step']} "
                     f"(baseline {_pct((run.baseline_eval or {}).get('wer'))} at step 0); "
                     f"{len(run.evals)} dev evaluations of {best.get('n_utterances', '?')} clips "
                     f"(`{_md(run.config.get('dev_manifest') or 'carved from train_manifest')}`).")
    safety = [r for r in run.evals if r.get("safety_wer") is not None]
    if safety:
        worst = max(safety, key=lambda r: r["safety_wer"])
        lines.append(f"Safety WER in the loop ({safety[0]['safety_n']} general-English clips): "
                     f"{_pct(safety[0]['safety_wer'])} at step {safety[0]['step']}, {_pct(safety[-1]['safety_wer'])} "
                     f"at step {safety[-1]['step']}, highest {_pct(worst['safety_wer'])} at step {worst['step']}.")
    lines += [_md(line) for line in selection_lines(run.state)]
    return "\n\n".join(lines)


def _summaries(run: RunFiles) -> tuple[dict | None, dict | None, str]:
    """(baseline, adapter, where from): eval_results.json if present, else the trainer's evals."""
    if run.eval_results:
        s = run.eval_results["summary"]
        return s.get("baseline"), s.get("adapter"), f"`{run.folder.eval_results.name}` (best adapter on the eval manifest)"
    baseline, tested = run.test("baseline"), run.test("best")
    if baseline and tested:
        return (baseline, tested, f"the trainer's test on the eval manifest (untouched model at step 0 vs best_adapter "
                                  f"of step {tested['adapter_step']}, chosen on the dev set); run `just evaluate "
                                  f"{run.name}` for the full evaluation with safety")
    best = run.best_eval
    return (run.baseline_eval, best,
            f"the trainer's dev evals (step 0 vs best step {best['step']}): optimistic, since best_adapter was chosen "
            "on them; the eval manifest is tested when the run ends" if best else "nothing: no evaluation yet")


def _results(run: RunFiles) -> str:
    from lora_training.runs.results import deltas, interval, metric, term_counts
    from lora_training.evaluation.intervals import within_noise

    baseline, adapter, source = _summaries(run)
    if baseline is None and adapter is None:
        return f"No results yet: {source}."
    delta = deltas(baseline, adapter) or {}
    spans = ((run.eval_results or {}).get("summary") or {}).get("delta_interval") or {}
    rows = []
    for label, name, is_pct in (("WER", "wer", True), ("CER", "cer", True),
                                 ("WER, exact case and punctuation", "exact_wer", True), ("term recall", "term_recall", True),
                                 ("term recall, seen", "term_recall_seen", True),
                                 ("term recall, unseen", "term_recall_unseen", True),
                                 ("symbol accuracy", "symbol_accuracy", True), ("false alarms", "false_alarms", False),
                                 ("looping outputs", "n_looping", False)):
        b, a = metric(baseline, name), metric(adapter, name)
        if a is None and b is None:
            continue
        fmt = _pct if is_pct else (lambda v: "–" if v is None else str(v))
        change = _pts(delta.get(name)) if is_pct else ("–" if delta.get(name) is None else f"{delta[name]:+}")
        if delta.get(name) is not None and spans.get(name):
            change += interval_text(spans[name], signed=True) + (" (within noise)" if within_noise(spans[name]) else "")
        cells = [fmt(v) + interval_text(interval(s, name)) + (f" ({term_counts(s, name)})" if term_counts(s, name) else "")
                 for v, s in ((b, baseline), (a, adapter))]
        rows.append([label, *cells, change])
    counted = adapter or baseline
    note = ""
    if counted.get("wer_interval"):
        note = (f"\n\n[..]: 95% interval, bootstrap over {counted['n_utterances']} utterances "
                f"({counted['n_words']} words); the change's interval is a paired bootstrap, and a change whose "
                f"interval holds 0 is within noise.")
    if by_wer := wer_by_source(run.eval_results):
        note += "\n\nWER by source of the eval clips:\n\n" + _table(
            ["source", "clips", "words", "baseline", "adapter", "change"],
            [[_md(g["source"]), str(g["n_utterances"]), str(g["n_words"]),
              *(_pct((g.get(s) or {}).get("wer")) + interval_text((g.get(s) or {}).get("wer_interval"))
                for s in ("baseline", "adapter")),
              _pts(g.get("delta")) + interval_text(g.get("delta_interval"), signed=True)] for g in by_wer])
    by_source = recall_by_source(run.eval_results)
    if by_source:
        note += ("\n\nTerm recall by where the adapter heard each term (eval-set occurrences):\n\n"
                 + _table(["heard in training", "terms", "baseline", "adapter"], by_source))
    return f"From {source}.\n\n" + _table(["metric", "baseline", "adapter", "change"], rows) + note


def _md_diff(before: str, after: str) -> tuple[str, str]:
    """Both texts with the words that differ marked: ~~removed~~ in the first, **added** in the second."""
    a, b = before.split(), after.split()
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            left += [_md(w) for w in a[i1:i2]]
            right += [_md(w) for w in b[j1:j2]]
        else:
            left += [f"~~{_md(w)}~~" for w in a[i1:i2]]
            right += [f"**{_md(w)}**" for w in b[j1:j2]]
    return " ".join(left) or "_(empty)_", " ".join(right) or "_(empty)_"


def _samples(run: RunFiles, n: int) -> str:
    from lora_training.reporting.console import changed_samples

    if not run.eval_results:
        tested = run.test("best")
        last = tested or (run.evals or [{}])[-1]
        if not last.get("samples"):
            return "No samples yet."
        where = "best_adapter on the first clips of the eval manifest" if tested else "last dev eval, first dev clips"
        return f"Trainer ({where}):\n\n" + "\n".join(
            f"- ref: {_md(s['ref'])}\n  - hyp: {_md(s['hyp'])}" for s in last["samples"])
    rows = changed_samples(run.eval_results, n)
    if not rows or "adapter" not in rows[0] or "baseline" not in rows[0]:
        return "The adapter changed no transcript." if rows == [] else "Needs both baseline and adapter transcripts."
    lines = [f"The {len(rows)} clips whose transcript the adapter changed most (removed words ~~struck~~, "
             "added words **bold**):", ""]
    for row in rows:
        b, a = row["baseline"], row["adapter"]
        verdict = "better" if a["wer"] < b["wer"] else "worse" if a["wer"] > b["wer"] else "same WER"
        old, new = _md_diff(b["hyp"], a["hyp"])
        lines += [f"- **{verdict}** `{_md(row['id'])}`: WER {_pct(b['wer'])} → {_pct(a['wer'])}",
                  f"  - ref: {_md(row['ref'])}", f"  - baseline: {old}", f"  - adapter: {new}"]
    return "\n".join(lines)


def _safety(run: RunFiles) -> str:
    safety = (run.eval_results or {}).get("safety")
    if not safety:
        return f"Not measured: run `just evaluate {run.name}` (the built-in safety set is the default)."
    b, a = safety.get("baseline") or {}, safety.get("adapter") or {}
    verdict = {True: "passed", False: "**FAILED**", None: "not applicable"}[safety["passed"]]
    text = _table(["", "baseline", "adapter", "change", "budget", "gate"],
                  [["safety WER", _pct(b.get("wer")) + interval_text(b.get("wer_interval")),
                    _pct(a.get("wer")) + interval_text(a.get("wer_interval")),
                    "–" if safety["delta_wer_points"] is None else
                    f"{safety['delta_wer_points']:+.2f} pts" + interval_text(safety.get("delta_interval"), signed=True),
                    f"+{safety['budget_wer_points']:.2f} pts", verdict]])
    return text + (f"\n\n{safety['n_utterances']} clips, numbers-aware normalisation (\"twenty five\" = \"25\")."
                   + (f" {_md(safety['description'])}." if safety.get("description") else ""))


def conclusions(run: RunFiles) -> list[str]:
    """Plain sentences read off the numbers: what changed, what did not, what to do next."""
    from lora_training.runs.results import metric

    baseline, adapter, _ = _summaries(run)
    if baseline is None or adapter is None:
        return [f"No comparison yet: run `just evaluate {run.name}`."]
    out = [_md(line) for line in selection_conclusions(run.state)]
    wb, wa = metric(baseline, "wer"), metric(adapter, "wer")
    out.append(f"WER {'falls' if wa < wb else 'rises' if wa > wb else 'stays'} from {_pct(wb)} to {_pct(wa)} "
               f"({100 * (wa - wb):+.2f} points).")
    tb, ta = metric(baseline, "term_recall"), metric(adapter, "term_recall")
    if tb is not None and ta is not None:
        out.append(f"Term recall goes from {_pct(tb)} to {_pct(ta)}.")
        ub, ua = metric(baseline, "term_recall_unseen"), metric(adapter, "term_recall_unseen")
        sb, sa = metric(baseline, "term_recall_seen"), metric(adapter, "term_recall_seen")
        if sa is not None and ua is not None:
            memorised = sa - sb > 0.2 and ua - ub <= 0
            out.append(f"On terms seen in training: {_pct(sb)} → {_pct(sa)}; on unseen terms: {_pct(ub)} → {_pct(ua)}"
                       + (" — the adapter memorised rather than generalised." if memorised else "."))
        elif sa is not None:
            out.append("The eval set has no term unseen in training, so generalisation to new terms is not measured.")
    else:
        out.append("No term recall: the eval manifest has no `terms` and no vocabulary was given.")
    looping = metric(adapter, "n_looping") or 0
    if looping > (metric(baseline, "n_looping") or 0):
        out.append(f"The adapter loops on {looping} clip(s), more than the baseline: inspect them in {run.folder.eval_results.name}.")
    safety = (run.eval_results or {}).get("safety")
    if safety and safety["passed"] is not None:
        out.append(f"Safety WER changes {safety['delta_wer_points']:+.2f} points: "
                   + ("within" if safety["passed"] else "over") + f" the +{safety['budget_wer_points']:.2f} budget.")
    elif not safety:
        out.append("Safety was not measured.")
    failures = (run.eval_results or {}).get("failures") or []
    if failures:
        out.append(f"{len(failures)} clip(s) failed and were not scored (see {run.folder.eval_results.name}).")
    good = wa < wb and (not safety or safety["passed"] is not False)
    out.append("**Verdict:** " + ("the adapter helps and keeps ordinary English intact." if good and safety else
                                  "the adapter helps; confirm safety with `just evaluate`." if good else
                                  "the adapter exceeds the safety budget: lower the learning rate or steps, or add "
                                  "replay data." if safety and safety["passed"] is False else
                                  "the adapter does not improve WER on this eval set."))
    return out


def write_report(run_dir: str | os.PathLike, *, template: str | os.PathLike = TEMPLATE,
                 samples: int = ReportOptions.samples) -> Path:
    """Render report.md (and its PNG curves) into the run folder; returns the report's path."""
    from lora_training.atomic import atomic_write_text
    from lora_training.evaluation.inputs import check_output

    run = read_run(run_dir)
    template = Path(template)
    if not template.is_file():
        raise LoraTrainingError(f"{template}: report template not found, expected docs/training_report.md "
                                "from the repository (or pass --template)")
    for output in (run.folder.report, run.folder.plot("loss"), run.folder.plot("eval")):
        check_output(output, {"template": template}, name="report")  # before any PNG is written
    plots = plot_curves(run)
    fields = {
        "name": _md(run.name),
        "run_dir": _md(run.run_dir),
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "objective": _objective(run),
        "data": _data(run),
        "config": _config(run),
        "curves": _curves(run, plots),
        "results": _results(run),
        "samples": _samples(run, samples),
        "safety": _safety(run),
        "conclusions": "\n".join(f"- {line}" for line in conclusions(run)),
    }
    try:
        text = Template(template.read_text(encoding="utf-8")).substitute(fields)
    except (KeyError, ValueError) as e:
        raise LoraTrainingError(f"{template}: unknown or malformed placeholder {e}, expected only "
                                f"{', '.join('$' + k for k in fields)}") from e
    return atomic_write_text(run.folder.report, text)


# --- compare ----------------------------------------------------------------------------

"""The console view is drawn from the result JSON alone: a fixture in, text out."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lora_training.reporting.console import changed_samples, render_text, word_diff

FIXTURE = Path(__file__).parent / "fixtures" / "eval_results.json"


@pytest.fixture
def result():
    return json.loads(FIXTURE.read_text())


def _line(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_table_shows_both_systems_and_the_change(result):
    text = render_text(result)
    assert _line(text, "WER").split() == ["WER", "│", "42.11%", "│", "10.53%", "│", "-31.58", "pts"]
    assert "0.00% (0/3)" in _line(text, "term recall") and "100.00% (3/3)" in _line(text, "term recall")
    assert "(0/2)" in _line(text, "  seen in training") and "(1/1)" in _line(text, "  unseen")
    assert "+0.00 pts" in _line(text, "safety WER (2 clips)")
    assert "0.0357" in _line(text, "real-time factor") and "0.0321" in _line(text, "real-time factor")


def test_most_changed_samples_are_labelled_better_or_worse(result):
    text = render_text(result, show=2)
    headers = [line for line in text.splitlines() if line.startswith("• ")]
    assert headers == ["• better  utt_2  WER 166.67% → 0.00%", "• worse  utt_3  WER 0.00% → 50.00%"]
    # Markup-like transcripts are printed as written, not interpreted by rich.
    assert "  baseline: open [config] in vim" in text
    assert [r["id"] for r in changed_samples(result, 10)] == ["utt_2", "utt_3", "utt_0", "utt_1"]


def test_failures_and_verdict_come_from_the_json(result):
    text = render_text(result)
    assert "1 failure(s): skipped, not scored" in text and "utt_9" in text
    assert "safety gate passed: +0.00 WER points (budget +1.00)" in text
    assert text.rstrip().endswith("FAILED: 1 clip failure(s) in the eval set(s)")

    ok = copy.deepcopy(result)
    ok["failures"], ok["status"] = [], {"ok": True, "problems": []}
    assert render_text(ok).rstrip().endswith("OK")


def test_single_system_without_references_lists_transcripts(result):
    for row in result["utterances"]:
        del row["adapter"]
        row["ref"] = None
    result["inputs"]["has_references"] = False
    result["safety"] = None
    text = render_text(result)
    assert "transcript" in text and "run cube control apply on the cluster" in text and "WER" not in text


def test_word_diff_marks_removed_and_added_words():
    before, after = word_diff("the where dropped", "the WER dropped")
    assert before.plain == "the where dropped" and after.plain == "the WER dropped"
    styled = {before.plain[s.start:s.end]: str(s.style) for s in before.spans}
    added = {after.plain[s.start:s.end]: str(s.style) for s in after.spans}
    assert "strike" in styled["where"] and "the" not in styled
    assert "green" in added["WER"] and "dropped" not in added

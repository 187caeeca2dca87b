import json

import jiwer
import pytest

from lora_training.data.normalize import normalize_for_safety
from lora_training.errors import ConfigError
from lora_training.evaluation.metrics import (
    corpus_cer,
    corpus_wer,
    count_term,
    find_terms,
    repetition_flag,
    score,
    symbol_accuracy,
    term_recall,
    utterance_wer,
)

# (reference, hypothesis, expected WER under the jargon normalisation), counted by hand.
JARGON_WER_CASES = [
    # dev@example.com -> dev (1 substitution) + at example dot com (4 insertions), 4 ref words.
    ("Send it to dev@example.com.", "send it to dev at example dot com", 5 / 4),
    ("The WER dropped", "the where dropped", 1 / 3),
    ("run kubectl apply", "run cube control apply", 2 / 3),
    ("open __init__.py", "open init.py", 1 / 2),
    ("bump to v1.2", "bump to v 1.2", 2 / 3),
    ("I like Next.js", "i like next js", 2 / 3),
    ("compile C++ code", "compile c plus plus code", 3 / 3),
    ("push --force", "push force", 1 / 2),
    ("one", "1", 0.0),
    ("call print() now", "call print now", 1 / 3),
    ("if a != b", "if a = b", 1 / 4),
    ("what about this ?", "what about this", 1 / 4),
    ("Hello, World!", "hello world", 0.0),
    ("It's DONE.", "it's done", 0.0),
    ("“Quoted” text — fine.", '"quoted" text fine', 0.0),
]


@pytest.mark.parametrize(("ref", "hyp", "expected"), JARGON_WER_CASES)
def test_utterance_wer_counts_jargon_errors(ref, hyp, expected):
    assert utterance_wer(ref, hyp) == pytest.approx(expected)


SAFETY_WER_CASES = [
    ("one", "1", 0.0),
    ("Twenty five apples.", "25 apples", 0.0),
    ("I'm well-known.", "im well known", 0.0),
    ("The WER dropped", "the where dropped", 1 / 3),
]


@pytest.mark.parametrize(("ref", "hyp", "expected"), SAFETY_WER_CASES)
def test_utterance_wer_safety_forgives_formatting_only(ref, hyp, expected):
    assert utterance_wer(ref, hyp, normalize_for_safety) == pytest.approx(expected)


def test_corpus_wer_pools_edits_and_matches_jiwer():
    refs = ["the cat sat", "on the mat today"]
    hyps = ["the cat sat down", "on a mat"]
    # 1 insertion + (1 substitution + 1 deletion) over 3 + 4 words; the mean of
    # utterance WERs would be (1/3 + 2/4) / 2 = 0.4167 instead.
    assert corpus_wer(refs, hyps) == pytest.approx(3 / 7)
    assert corpus_wer(refs, hyps) == pytest.approx(jiwer.wer(refs, hyps))


def test_corpus_wer_normalises_before_aligning():
    refs = ["Send it to dev@example.com.", "The WER dropped"]
    hyps = ["send it to dev at example dot com", "The WER dropped!"]
    assert corpus_wer(refs, hyps) == pytest.approx(5 / 7)


def test_corpus_cer_matches_jiwer():
    refs = ["ab c", "xyz"]
    hyps = ["ab d", "xy"]
    assert corpus_cer(refs, hyps) == pytest.approx(2 / 7)
    assert corpus_cer(refs, hyps) == pytest.approx(jiwer.cer(refs, hyps))


# Empty (or punctuation-only) references are not aligned; their hypothesis words count as insertions.
EMPTY_REFERENCE_CASES = [
    (corpus_wer, ["", "a b"], ["x y", "a b"], 2 / 2),
    (corpus_wer, ["...", "a b"], ["", "a b"], 0.0),
    (corpus_wer, ["", ""], ["hi there", "x"], 3.0),
    (corpus_wer, [""], [""], 0.0),
    (corpus_cer, ["", "ab"], ["x", "ab"], 1 / 2),
]


@pytest.mark.parametrize(("metric", "refs", "hyps", "expected"), EMPTY_REFERENCE_CASES)
def test_empty_references(metric, refs, hyps, expected):
    assert metric(refs, hyps) == pytest.approx(expected)


@pytest.mark.parametrize(("refs", "hyps"), [(["a"], []), ([], [])])
def test_corpus_wer_rejects_mismatched_or_empty_input(refs, hyps):
    with pytest.raises(ValueError):
        corpus_wer(refs, hyps)


FIND_TERMS_CASES = [
    ("run kubectl apply", ["kubectl"], ["kubectl"]),
    ("kubectls are", ["kubectl"], []),
    ("mykubectl is", ["kubectl"], []),
    ("WER and wer", ["WER"], ["WER"]),
    ("mail dev@example.com", ["@"], ["@"]),
    ("use Next.js today", ["Next", "Next.js"], ["Next.js"]),
    ("C++ and C", ["C", "C++"], ["C++", "C"]),
    ("kubectl apply -f x", ["apply", "kubectl apply"], ["kubectl apply"]),
    ("open __init__.py", ["__init__"], ["__init__"]),
    ("git push --force", ["force", "--force"], ["--force"]),
    ("kubectl, then kubectl", ["kubectl"], ["kubectl", "kubectl"]),
    ("anything", [], []),
]


@pytest.mark.parametrize(("text", "terms", "expected"), FIND_TERMS_CASES)
def test_find_terms(text, terms, expected):
    assert find_terms(text, terms) == expected


COUNT_TERM_CASES = [
    ("kubectl and kubectl", "kubectl", 2),
    ("kubectls", "kubectl", 0),
    ("xWER WER_x WER", "WER", 1),
    ("a @ b@c", "@", 2),
    ("PyTorch", "pytorch", 0),
]


@pytest.mark.parametrize(("text", "term", "expected"), COUNT_TERM_CASES)
def test_count_term(text, term, expected):
    assert count_term(text, term) == expected


def test_term_recall_splits_seen_and_unseen():
    refs_terms = [["kubectl", "WER"], ["kubectl", "kubectl"], ["PyTorch"]]
    hyps = ["kubectl shows where", "kubectl once", "pytorch"]
    result = term_recall(refs_terms, hyps, seen_terms={"kubectl"})
    assert result["overall"] == {"hits": 2, "total": 5, "recall": pytest.approx(0.4)}
    assert result["seen"] == {"hits": 2, "total": 3, "recall": pytest.approx(2 / 3)}
    assert result["unseen"] == {"hits": 0, "total": 2, "recall": 0.0}
    assert result["per_term"]["kubectl"] == {"hits": 2, "total": 3, "recall": pytest.approx(2 / 3), "seen": True}
    assert result["per_term"]["PyTorch"] == {"hits": 0, "total": 1, "recall": 0.0, "seen": False}
    assert result["false_alarms"] is None


def test_term_recall_without_seen_terms_reports_overall_only():
    result = term_recall([["kubectl"]], ["kubectl"])
    assert result["overall"] == {"hits": 1, "total": 1, "recall": 1.0}
    assert result["seen"] is None and result["unseen"] is None
    assert result["per_term"]["kubectl"]["seen"] is None


def test_term_recall_is_count_aware():
    result = term_recall([["kubectl", "kubectl"]], ["kubectl kubectl kubectl"], vocabulary=["kubectl"])
    assert result["overall"] == {"hits": 2, "total": 2, "recall": 1.0}
    assert result["false_alarms"] == {"total": 1, "per_term": {"kubectl": 1}}


def test_term_recall_false_alarms():
    result = term_recall(
        [["WER"], []],
        ["WER WER", "use kubectl and WER"],
        vocabulary=["WER", "kubectl", "PyTorch"],
    )
    assert result["false_alarms"] == {"total": 3, "per_term": {"WER": 2, "kubectl": 1}}
    assert result["overall"] == {"hits": 1, "total": 1, "recall": 1.0}


def test_term_recall_with_no_terms_has_no_rate():
    assert term_recall([[]], ["hello"])["overall"] == {"hits": 0, "total": 0, "recall": None}


SYMBOL_CASES = [
    (["Send it to dev@example.com. It works."], ["send it to dev at example dot com it works"], 0, 1, 0.0),
    (["open __init__.py and v1.2"], ["open __init__.py and v 1.2"], 1, 2, 0.5),
    (["use C++ and C#"], ["Use c++ and C#."], 2, 2, 1.0),
    (["no symbols here."], ["anything"], 0, 0, None),
    (["email me @ home @ work"], ["email me @ home at work"], 1, 2, 0.5),
    (["run --force"], ["run force"], 0, 1, 0.0),
    (["I like Next.js", "see foo/bar"], ["i like next js", "see foo/bar"], 1, 2, 0.5),
]


@pytest.mark.parametrize(("refs", "hyps", "hits", "total", "accuracy"), SYMBOL_CASES)
def test_symbol_accuracy(refs, hyps, hits, total, accuracy):
    assert symbol_accuracy(refs, hyps) == {"hits": hits, "total": total, "accuracy": accuracy}


REPETITION_CASES = [
    ("the the the the", True),
    ("and then, and then, And then, and then.", True),
    ("hello world foo bar foo bar foo bar foo bar", True),
    ("go to the go to the go to the go to the end", True),
    ("a b c d a b c d a b c d a b c d", True),
    ("okay hahahahahahahahahaha", True),
    ("no no no", False),
    ("one two one two one two", False),
    ("the cat sat on the mat the cat sat", False),
    ("run kubectl apply", False),
    ("1000000000", False),
    ("", False),
]


@pytest.mark.parametrize(("hyp", "expected"), REPETITION_CASES)
def test_repetition_flag(hyp, expected):
    assert repetition_flag(hyp) is expected


REFS = ["Send it to dev@example.com.", "The WER dropped", "run kubectl apply"]
HYPS = [
    "send it to dev at example dot com",
    "The WER dropped",
    "run kubectl apply kubectl apply kubectl apply kubectl apply",
]


def test_score_summary_from_vocabulary():
    result = score(REFS, HYPS, seen_terms=["kubectl"], vocabulary=["WER", "kubectl", "@"])
    assert result["n_utterances"] == 3
    assert result["normalizer"] == "jargon"
    # 5 + 0 + 6 edits over 4 + 3 + 3 reference words.
    assert result["wer"] == pytest.approx(11 / 10)
    assert 0.0 < result["cer"] < result["wer"]
    recall = result["term_recall"]
    assert recall["overall"] == {"hits": 2, "total": 3, "recall": pytest.approx(2 / 3), "interval": [0.0, 1.0]}
    assert recall["seen"] == {"hits": 1, "total": 1, "recall": 1.0}
    assert recall["unseen"] == {"hits": 1, "total": 2, "recall": 0.5}
    assert recall["false_alarms"] == {"total": 3, "per_term": {"kubectl": 3}}
    assert result["symbol_accuracy"] == {"hits": 0, "total": 1, "accuracy": 0.0}
    assert result["n_looping"] == 1
    keys = ("wer", "errors", "words", "terms_hit", "terms_missed", "looping")
    assert [{k: row[k] for k in keys} for row in result["per_utterance"]] == [
        {"wer": 1.25, "errors": 5, "words": 4, "terms_hit": [], "terms_missed": ["@"], "looping": False},
        {"wer": 0.0, "errors": 0, "words": 3, "terms_hit": ["WER"], "terms_missed": [], "looping": False},
        {"wer": 2.0, "errors": 6, "words": 3, "terms_hit": ["kubectl"], "terms_missed": [], "looping": True},
    ]
    assert json.loads(json.dumps(result)) == result


def test_score_uses_manifest_terms_when_given():
    result = score(REFS, HYPS, terms=[["dev@example.com"], ["WER"], []])
    assert result["term_recall"]["overall"] == {"hits": 1, "total": 2, "recall": 0.5, "interval": [0.0, 1.0]}
    assert result["term_recall"]["false_alarms"] is None
    assert result["per_utterance"][0]["terms_missed"] == ["dev@example.com"]


def test_score_normalizer_is_chosen_by_name():
    assert score(["It's"], ["its"])["wer"] == 1.0
    assert score(["It's"], ["its"], normalizer="safety")["wer"] == 0.0
    assert score(["WER"], ["wer"], normalizer="exact")["wer"] == 1.0
    with pytest.raises(ConfigError):
        score(["one"], ["1"], normalizer="whisper")


def test_score_rejects_terms_of_wrong_length():
    with pytest.raises(ValueError, match="score: terms"):
        score(REFS, HYPS, terms=[["WER"]])


def test_score_counts_add_up_to_the_corpus_rates():
    result = score(REFS, HYPS)
    rows = result["per_utterance"]
    assert result["n_words"] == sum(r["words"] for r in rows)
    assert result["wer"] == pytest.approx(sum(r["errors"] for r in rows) / sum(r["words"] for r in rows))
    assert result["cer"] == pytest.approx(sum(r["char_errors"] for r in rows) / sum(r["chars"] for r in rows))
    low, high = result["wer_interval"]
    assert low <= result["wer"] <= high

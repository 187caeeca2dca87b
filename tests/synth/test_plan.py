"""What synthesis never says: held-out manifests' sentences (`--exclude`) and held-out terms."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lora_training.data.manifest import Utterance, load_manifest, save_manifest
from lora_training.data.normalize import normalize_text
from lora_training.data.vocabulary import example_vocabulary_path, load_vocabulary, terms_in
from lora_training.errors import ConfigError
from lora_training.synth.plan import choose_holdout, plan_sentences
from lora_training.synth.sentences import generate_sentences
from lora_training.synth.synthesize import SynthConfig
from lora_training.testing.factories import write_tone

REPO = Path(__file__).resolve().parents[2]
VOCABULARY = str(example_vocabulary_path())


def _held_out_manifest(tmp_path, texts) -> str:
    """An eval manifest holding `texts` (as a user would write them: other case, other punctuation)."""
    rows = [Utterance(audio=str(write_tone(tmp_path / "eval" / f"{i}.wav", seconds=0.3, freq=300.0 + 10 * i)),
                      text=t.upper().rstrip(".!?")) for i, t in enumerate(texts)]
    return str(save_manifest(tmp_path / "eval" / "eval.jsonl", rows))


def test_generated_sentences_never_repeat_an_excluded_one_and_keep_count_and_coverage(tmp_path):
    # Every sentence the same seed would say, and those of three more seeds: the generator must route around them.
    excluded = sorted({s.text for seed in (5, 6, 7, 8)
                       for s in plan_sentences(SynthConfig(vocabulary=VOCABULARY, count=120, seed=seed)).sentences})
    plan = plan_sentences(SynthConfig(vocabulary=VOCABULARY, count=120, seed=5,
                                      exclude=[_held_out_manifest(tmp_path, excluded)]))
    assert len(plan.sentences) == 120 and plan.excluded >= 1
    assert not {normalize_text(s.text) for s in plan.sentences} & {normalize_text(t) for t in excluded}
    uses = {t: sum(t in s.terms for s in plan.sentences) for t in load_vocabulary(VOCABULARY).written_forms()}
    assert min(uses.values()) >= 3  # coverage is as asked, with the replacements


def test_a_reject_that_refuses_nothing_changes_nothing():
    vocabulary = load_vocabulary(VOCABULARY)
    assert generate_sentences(vocabulary, 60, seed=3) == generate_sentences(vocabulary, 60, seed=3,
                                                                            reject=lambda text: False)


def test_listed_sentences_that_are_excluded_are_dropped_and_counted(tmp_path):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("Run kubectl apply.\nRestart nginx now.\nCheck the logs.\n")
    plan = plan_sentences(SynthConfig(sentences=str(sentences), count=3,
                                      exclude=[_held_out_manifest(tmp_path, ["restart nginx now"])]))
    assert [s.text for s in plan.sentences] == ["Run kubectl apply.", "Check the logs."] and plan.excluded == 1


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_held_out_terms_are_in_no_sentence(seed):
    plan = plan_sentences(SynthConfig(vocabulary=VOCABULARY, count=120, seed=seed, holdout_terms=5))
    chosen = choose_holdout(load_vocabulary(VOCABULARY), 5, seed)
    assert set(chosen) <= set(plan.holdout_terms)
    held = tuple(plan.holdout_terms)
    for s in plan.sentences:
        assert not terms_in(s.text, held), s.text
        assert not set(s.terms) & set(held)
    assert len(plan.sentences) == 120


def test_a_term_containing_a_held_out_one_is_held_out_with_it(tmp_path):
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("@ | at\ndev@example.com | dev at example dot com\nkubectl | cube control\nnginx\n")
    exclude_terms = tmp_path / "terms.txt"
    exclude_terms.write_text("@\n\n")
    plan = plan_sentences(SynthConfig(vocabulary=str(vocabulary), count=12, exclude_terms=str(exclude_terms)))
    assert plan.holdout_terms == ["@", "dev@example.com"]
    assert not any("@" in s.text for s in plan.sentences)


@pytest.mark.parametrize("lines, message", [
    ("kubectl\nKubectl\nnope\n", r"terms.txt:2: 2 line\(s\) name no term, expected written forms of .*"
                                 r"got .*terms.txt:2 'Kubectl', .*terms.txt:3 'nope'"),
    ("kubectl\nnginx\n@\ndev@example.com\n", "holdout_terms: holding out .* leaves no term"),
])
def test_exclude_terms_problems(tmp_path, lines, message):
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("@ | at\ndev@example.com | dev at example dot com\nkubectl | cube control\nnginx\n")
    (tmp_path / "terms.txt").write_text(lines)
    with pytest.raises(ConfigError, match=message):
        plan_sentences(SynthConfig(vocabulary=str(vocabulary), count=12, exclude_terms=str(tmp_path / "terms.txt")))


@pytest.mark.parametrize("kwargs, message", [
    ({"vocabulary": VOCABULARY, "holdout_terms": -1}, "holdout_terms: expected 0 or more"),
    ({"sentences": "s.txt", "holdout_terms": 2}, "holdout_terms: holding terms out needs --vocabulary"),
])
def test_holdout_config_problems(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SynthConfig(**kwargs)


def test_too_many_held_out_terms_is_refused():
    count = len(load_vocabulary(VOCABULARY).terms)
    with pytest.raises(ConfigError, match=f"holdout_terms: expected 0 to {count - 1} .* got {count}"):
        plan_sentences(SynthConfig(vocabulary=VOCABULARY, count=120, holdout_terms=count))


def test_cli_synth_records_held_out_terms_and_exclusions(tmp_path):
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("kubectl | cube control\nnginx | engine x\nGrafana\nPagerDuty | pager duty\n")
    held_out = _held_out_manifest(tmp_path, ["nothing we would generate"])
    output = tmp_path / "data" / "synthetic.jsonl"
    done = subprocess.run(
        [sys.executable, "main.py", "synth", "--vocabulary", str(vocabulary), "--count", "4", "--min-per-term", "1",
         "--holdout-terms", "1", "--exclude", held_out, "--output", str(output), "--no-gate", "--seed", "3",
         "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["holdout_terms"] == choose_holdout(load_vocabulary(vocabulary), 1, 3)
    assert summary["exclude"] == [held_out] and summary["excluded_sentences"] == 0 and summary["clips"] == 4
    (term,) = summary["holdout_terms"]
    assert all(term not in row.text and term not in (row.terms or []) for row in load_manifest(output))

"""Splitting: exact proportions, sentence groups kept whole, determinism, refusals."""

import json

import pytest

from lora_training.data.manifest import load_manifest
from lora_training.data.split import sentence_key, split_dataset, SplitOptions
from lora_training.errors import ConfigError
from lora_training.testing.factories import make_manifest


def _split(tmp_path, manifest, **kwargs):
    """Split into tmp_path/{train,eval}.jsonl, replacing an earlier split there (tests re-split)."""
    summary = split_dataset(SplitOptions(manifest, tmp_path / "train.jsonl", tmp_path / "eval.jsonl", overwrite=True,
                                         **kwargs))
    return summary, load_manifest(tmp_path / "train.jsonl"), load_manifest(tmp_path / "eval.jsonl")


@pytest.mark.parametrize(
    "a, b",
    [
        ("Hello,  world!", "hello world"),
        ("  \"Deploy\" the API.", "deploy the api"),
        ("STRASSE", "straße"),
    ],
)
def test_sentence_key_equates_trivial_variants(a, b):
    assert sentence_key(a) == sentence_key(b)


def test_sentence_key_keeps_inner_punctuation():
    assert sentence_key("mail dev@example.com") != sentence_key("mail devexample com")


def test_hundred_unique_sentences_split_exactly_80_20(tmp_path):
    manifest = make_manifest(tmp_path / "data", 100, seconds=0.5)
    summary, train, evals = _split(tmp_path, manifest)
    assert (len(train), len(evals)) == (80, 20)
    assert (summary.train.utterances, summary.eval.utterances) == (80, 20)
    assert summary.train.hours == pytest.approx(80 * 0.5 / 3600)
    assert not {sentence_key(u.text) for u in train} & {sentence_key(u.text) for u in evals}
    assert {u.id for u in train} | {u.id for u in evals} == {u.id for u in load_manifest(manifest)}


def test_repeated_sentences_land_on_one_side(tmp_path):
    texts = [f"sentence {i}" for i in range(12)]
    texts += ["Turn on the lights.", "turn on the LIGHTS", "turn  on the lights!", "Sentence 3", "sentence 3."]
    manifest = make_manifest(tmp_path / "data", len(texts), texts=texts, seconds=0.4)
    for seed in range(6):
        _, train, evals = _split(tmp_path, manifest, seed=seed, eval_fraction=0.3)
        assert not {sentence_key(u.text) for u in train} & {sentence_key(u.text) for u in evals}
        assert len(train) + len(evals) == len(texts)


def test_same_seed_same_split_other_seed_different(tmp_path):
    manifest = make_manifest(tmp_path / "data", 30, seconds=0.4)
    out = tmp_path / "out"
    out.mkdir()
    split_dataset(SplitOptions(manifest, out / "t1.jsonl", out / "e1.jsonl", seed=7))
    split_dataset(SplitOptions(manifest, out / "t2.jsonl", out / "e2.jsonl", seed=7))
    split_dataset(SplitOptions(manifest, out / "t3.jsonl", out / "e3.jsonl", seed=8))
    assert (out / "e1.jsonl").read_bytes() == (out / "e2.jsonl").read_bytes()
    assert (out / "e1.jsonl").read_bytes() != (out / "e3.jsonl").read_bytes()


def test_terms_summary_counts_unseen_eval_terms(tmp_path):
    terms = [["kubectl"], ["kubectl", "Grafana"], None, ["PagerDuty"], ["Grafana"], None]
    texts = [f"sentence {i} about {' and '.join(t or ['nothing'])}" for i, t in enumerate(terms)]
    manifest = make_manifest(tmp_path / "data", 6, texts=texts, terms=terms, seconds=0.4)
    summary, train, evals = _split(tmp_path, manifest, eval_fraction=0.5)
    train_terms = {t for u in train for t in u.terms or ()}
    eval_terms = {t for u in evals for t in u.terms or ()}
    assert summary.train.terms == len(train_terms)
    assert summary.eval.terms == len(eval_terms)
    assert summary.unseen_eval_terms == len(eval_terms - train_terms)
    d = summary.to_dict()
    assert json.loads(json.dumps(d))["eval"]["utterances"] == 3
    rendered = summary.render()
    assert "train" in rendered and "eval terms unseen in training" in rendered


def test_hours_fall_back_to_the_audio_header(tmp_path):
    manifest = make_manifest(tmp_path / "data", 5, seconds=0.5)
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps({k: v for k, v in d.items() if k != "duration"}) + "\n" for d in lines))
    summary, _, _ = _split(tmp_path, manifest)
    assert summary.train.hours + summary.eval.hours == pytest.approx(5 * 0.5 / 3600)


def test_fewer_than_five_utterances_are_refused(tmp_path):
    manifest = make_manifest(tmp_path / "data", 4)
    with pytest.raises(ConfigError, match=r"manifest.jsonl: too few utterances to split, expected at least 5, got 4"):
        _split(tmp_path, manifest)
    assert not (tmp_path / "train.jsonl").exists()


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_eval_fraction_out_of_range_is_refused(tmp_path, fraction):
    with pytest.raises(ConfigError, match="eval_fraction: out of range"):
        split_dataset(SplitOptions(tmp_path / "unused.jsonl", tmp_path / "t.jsonl", tmp_path / "e.jsonl", eval_fraction=fraction))


def test_a_split_with_an_empty_side_is_refused(tmp_path):
    manifest = make_manifest(tmp_path / "data", 6, texts=["the same sentence"] * 6)
    with pytest.raises(ConfigError, match="the eval side would be empty"):
        _split(tmp_path, manifest)


def test_summary_lists_unseen_eval_terms_found_by_the_vocabulary(tmp_path):
    # Only row 0 lists its term; the vocabulary finds the rest in the text ("Grafanas" is no "Grafana").
    texts = ["deploy with kubectl", "kubectl and Grafana", "open Grafanas", "page PagerDuty", "check Grafana",
             "nothing here", "PagerDuty again", "just text"]
    terms = [["kubectl"], None, None, None, None, None, None, None]
    manifest = make_manifest(tmp_path / "data", 8, texts=texts, terms=terms, seconds=0.4)
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("kubectl | cube control\nGrafana\nPagerDuty | pager duty\n")
    summary, train, evals = _split(tmp_path, manifest, eval_fraction=0.5, vocabulary=str(vocabulary))
    names = ("kubectl", "Grafana", "PagerDuty")
    in_text = lambda rows: {n for u in rows for n in names if n in u.text.replace("Grafanas", "")}
    expected = sorted(in_text(evals) - in_text(train))
    assert summary.unseen_terms == expected and summary.unseen_eval_terms == len(expected)
    assert summary.train.terms == len(in_text(train))
    assert expected == ["PagerDuty"]  # seed 42: both PagerDuty rows land in eval
    assert "eval terms unseen in training: 1 (PagerDuty)" in summary.render()
    without = split_dataset(SplitOptions(manifest, tmp_path / "t2.jsonl", tmp_path / "e2.jsonl", eval_fraction=0.5))
    assert set(without.unseen_terms) <= {"kubectl"}  # the `terms` fields alone


def test_split_without_shared_terms_lists_every_eval_term(tmp_path):
    texts = [f"sentence {i} with term{i}" for i in range(6)]
    manifest = make_manifest(tmp_path / "data", 6, texts=texts, seconds=0.4)
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("".join(f"term{i}\n" for i in range(6)))
    summary, _, evals = _split(tmp_path, manifest, eval_fraction=0.5, vocabulary=str(vocabulary))
    assert summary.unseen_terms == sorted(u.text.split()[-1] for u in evals)


def test_sentence_key_is_the_metrics_normalisation():
    # Number words as digits, as the WER scores them: one sentence, so one side of the split.
    assert sentence_key("I have two cats.") == sentence_key("i have 2 cats")


def test_an_existing_split_is_replaced_only_with_overwrite(tmp_path):
    from lora_training.errors import ManifestError

    manifest = make_manifest(tmp_path / "data", 10, seconds=0.4)
    train, evals = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    split_dataset(SplitOptions(manifest, train, evals, seed=1))
    before = (train.read_bytes(), evals.read_bytes())
    split_dataset(SplitOptions(manifest, train, evals, seed=1))  # the same rows: a re-run is fine
    with pytest.raises(ManifestError, match="exists with other rows.*--overwrite"):
        split_dataset(SplitOptions(manifest, train, evals, seed=2))
    assert (train.read_bytes(), evals.read_bytes()) == before
    summary = split_dataset(SplitOptions(manifest, train, evals, seed=2, overwrite=True))
    assert summary.replaced and "replaced (--overwrite)" in summary.render()

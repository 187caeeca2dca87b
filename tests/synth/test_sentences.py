import random
import re
from collections import Counter, defaultdict

import pytest

from lora_training.data.vocabulary import example_vocabulary_path, load_vocabulary, parse_vocabulary
from lora_training.errors import ConfigError
from lora_training.synth import sentences
from lora_training.synth.sentences import Template, generate_sentences, sentences_from_file, speak


@pytest.fixture(scope="module")
def vocab():
    return load_vocabulary(example_vocabulary_path())


@pytest.fixture(scope="module")
def generated(vocab):
    return generate_sentences(vocab, 200, seed=7)


# One spoken form per term, so substitution is deterministic whatever the rng.
SMALL = parse_vocabulary(
    """\
dev@example.com | dev at example dot com
@ | at
WER | W E R
API | A P I
C# | C sharp
C++ | C plus plus
git rebase | git re base
git | get
etc. | et cetera
"""
)


@pytest.mark.parametrize(
    "text, spoken, terms",
    [
        ("Email dev@example.com about the WER numbers.", "Email dev at example dot com about the W E R numbers.",
         ["dev@example.com", "WER"]),
        ("ping @alice", "ping at alice", ["@"]),
        ("user@host", "user at host", ["@"]),
        ("APIs and the API", "APIs and the A P I", ["API"]),
        ("api is not API", "api is not A P I", ["API"]),
        ("myAPI and API_KEY", "myAPI and API_KEY", []),
        ("Use C# or C++.", "Use C sharp or C plus plus.", ["C#", "C++"]),
        ("git rebase, then git push", "git re base, then get push", ["git rebase", "git"]),
        ("WER, WER and WER", "W E R, W E R and W E R", ["WER"]),
        ("digits etc. here", "digits et cetera here", ["etc."]),
        ("nothing to see", "nothing to see", []),
    ],
)
def test_speak(text, spoken, terms):
    assert speak(text, SMALL, random.Random(0)) == (spoken, terms)


def test_speak_picks_every_alternative():
    vocab = parse_vocabulary("WER | W E R | word error rate\n")
    rng = random.Random(0)
    assert {speak("WER", vocab, rng)[0] for _ in range(50)} == {"W E R", "word error rate"}


def test_templates_are_many_and_well_formed():
    assert len(sentences.TEMPLATES) >= 40
    assert len({t.id for t in sentences.TEMPLATES}) == len(sentences.TEMPLATES)
    assert {t.slots for t in sentences.TEMPLATES} == {1, 2, 3}
    for t in sentences.TEMPLATES:
        names = re.findall(r"\{(\w+)\}", t.text)
        term_slots = sorted(n for n in names if n in "abc")
        assert term_slots == list("abc"[: t.slots]), t.text
        assert set(names) - set("abc") <= {"name", "num", "day"}, t.text


def test_every_term_covered_at_least_k_times(vocab, generated):
    counts = Counter(term for s in generated for term in s.terms)
    assert len(generated) == 200
    assert {t.written: counts[t.written] for t in vocab.terms if counts[t.written] < 3} == {}


def test_terms_spread_over_templates_and_combined(vocab, generated):
    templates = defaultdict(set)
    partners = defaultdict(set)
    for s in generated:
        for term in s.terms:
            templates[term].add(s.template)
            partners[term].update(set(s.terms) - {term})
    assert {w: len(templates[w]) for w in vocab.written_forms() if len(templates[w]) < 3} == {}
    # ~9 uses per term over the stream's 25 templates (not all fit every term): a term repeats a
    # template at most once, and only a few terms do.
    repeats = Counter(term for s in generated for term in s.terms) - Counter({w: len(templates[w]) for w in templates})
    assert max(repeats.values(), default=0) <= 1 and sum(repeats.values()) <= len(vocab.written_forms()) // 8
    assert {w: len(partners[w]) for w in vocab.written_forms() if len(partners[w]) < 3} == {}
    assert len({s.template for s in generated}) == len(sentences.STREAMS["synth"])


def test_minimum_count_still_covers(vocab):
    out = generate_sentences(vocab, 42, seed=3, min_per_term=3)
    counts = Counter(term for s in out for term in s.terms)
    assert min(counts[w] for w in vocab.written_forms()) >= 3


def test_coverage_for_small_vocabularies_at_their_minimum_count():
    words = ["WER", "API", "SSH", "JSON", "YAML"]
    for n in range(1, len(words) + 1):
        vocab = parse_vocabulary("\n".join(words[:n]))
        for k in range(1, 5):
            minimum = max(k, -(-n * k // min(3, n)))
            with pytest.raises(ConfigError, match=f"expected at least {minimum}, got {minimum - 1}"):
                generate_sentences(vocab, minimum - 1, min_per_term=k)
            for seed in range(3):
                out = generate_sentences(vocab, minimum, seed=seed, min_per_term=k)
                counts = Counter(term for s in out for term in s.terms)
                assert min(counts[w] for w in words[:n]) >= k, (n, k, seed)


@pytest.mark.parametrize(
    "uses, k, left, needed",
    [
        ({"A": 0, "B": 0, "C": 0}, 3, 3, 3),  # 9 missing uses, 3 sentences: all full
        ({"A": 0, "B": 0, "C": 0}, 3, 5, 1),
        ({"A": 3, "B": 1, "C": 1}, 3, 2, 2),  # B and C need both sentences left: both now
        ({"A": 3, "B": 3, "C": 3}, 3, 4, 1),
    ],
)
def test_slots_needed(uses, k, left, needed):
    assert sentences._slots_needed(uses, k, left, 3) == needed


def test_terms_move_between_slot_positions(vocab):
    positions = defaultdict(set)
    for s in generate_sentences(vocab, 500, seed=1):
        for index, term in enumerate(s.terms):
            positions[term].add(index)
    assert {t: p for t, p in positions.items() if len(p) < 2} == {}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiny_vocabulary_coverage(seed):
    vocab = parse_vocabulary("WER | W E R\nAPI | A P I\n")
    out = generate_sentences(vocab, 4, seed=seed, min_per_term=4)
    assert [sorted(s.terms) for s in out] == [["API", "WER"]] * 4


def test_term_ending_in_full_stop_closes_the_sentence_once():
    vocab = parse_vocabulary("etc. | et cetera\nWER | W E R\n")
    out = generate_sentences(vocab, 100, min_per_term=1)
    assert any(s.text.endswith("etc.") for s in out)
    assert [s.text for s in out if ".." in s.text] == []


def test_deterministic_by_seed(vocab, generated):
    assert generate_sentences(vocab, 200, seed=7) == generated
    other = generate_sentences(vocab, 200, seed=8)
    assert [s.text for s in other] != [s.text for s in generated]


def test_spoken_has_no_written_jargon(vocab, generated):
    renamed = [t.written for t in vocab.terms if t.written not in t.spoken]
    assert "@" in renamed and "dev@example.com" in renamed
    for s in generated:
        assert "@" not in s.spoken, s
        assert [w for w in renamed if w in s.spoken] == [], s


def test_terms_field_matches_text(vocab, generated):
    for s in generated:
        assert s.terms, s
        assert len(set(s.terms)) == len(s.terms)
        positions = [s.text.index(term) for term in s.terms]
        assert positions == sorted(positions), s
        assert all(vocab.lookup(term) for term in s.terms)
        assert speak(s.text, vocab, random.Random(0))[1] == s.terms


def test_endings_vary(generated):
    endings = Counter(s.text[-1] if s.text[-1] in ".?!" else "none" for s in generated)
    assert {".", "?", "!", "none"} <= set(endings)
    assert endings["."] > endings["none"] > 0


def test_too_small_count_names_minimum(vocab):
    with pytest.raises(ConfigError, match=r"count: .*42 terms 3 times.*expected at least 42, got 41"):
        generate_sentences(vocab, 41)
    with pytest.raises(ConfigError, match=r"expected at least 5, got 4"):
        generate_sentences(parse_vocabulary("WER\n"), 4, min_per_term=5)
    with pytest.raises(ConfigError, match=r"expected at least 1, got 0"):
        generate_sentences(vocab, 0, min_per_term=0)
    with pytest.raises(ConfigError, match=r"min_per_term: .*got -1"):
        generate_sentences(vocab, 10, min_per_term=-1)
    assert len(generate_sentences(vocab, 5, min_per_term=0)) == 5


def test_swallowed_term_is_reported(monkeypatch):
    vocab = parse_vocabulary("git rebase\ngit | get\n", source="v.txt")
    monkeypatch.setitem(sentences.STREAMS, "synth", [Template("t", "Try {a} rebase.")])
    with pytest.raises(ConfigError, match=r"v.txt:2: term 'git' merges"):
        generate_sentences(vocab, 2, min_per_term=1)


def test_sentences_from_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("Email dev@example.com about the WER numbers.\n\n  plain words only  \nUse C# here\n")
    out = sentences_from_file(path, SMALL)
    assert [(s.text, s.spoken, s.terms, s.template) for s in out] == [
        ("Email dev@example.com about the WER numbers.", "Email dev at example dot com about the W E R numbers.",
         ["dev@example.com", "WER"], "mine.txt:1"),
        ("plain words only", "plain words only", [], "mine.txt:3"),
        ("Use C# here", "Use C sharp here", ["C#"], "mine.txt:4"),
    ]


def test_sentences_from_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="sentences file not found"):
        sentences_from_file(tmp_path / "missing.txt", SMALL)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Ask about the café API\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"{latin1}: unreadable sentences, expected UTF-8"):
        sentences_from_file(latin1, SMALL)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ConfigError, match=rf"{empty}: no sentences"):
        sentences_from_file(empty, SMALL)


def test_recording_prompts_and_synthetic_sentences_never_share_a_sentence():
    """`record --count 100` then `synth --count 500`, both with their defaults: no eval leak."""
    from lora_training.capture.record import RecordOptions, load_prompts
    from lora_training.data.normalize import normalize_text
    from lora_training.synth.synthesize import SynthConfig

    vocab_path = example_vocabulary_path()
    record, synth = RecordOptions(), SynthConfig(vocabulary=str(vocab_path))
    prompts = load_prompts(vocab_path, record.count, seed=record.seed)
    synthetic = generate_sentences(load_vocabulary(vocab_path), synth.count, seed=synth.seed,
                                   min_per_term=synth.min_per_term)
    assert len(prompts) == 100 and len(synthetic) == 500
    assert {normalize_text(p.text) for p in prompts} & {normalize_text(s.text) for s in synthetic} == set()

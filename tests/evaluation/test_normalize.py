import pytest

from lora_training.errors import ConfigError
from lora_training.evaluation.normalize import NORMALIZERS, get_normalizer, normalize_for_safety, normalize_text

JARGON_CASES = [
    ("Send it to dev@example.com.", "send it to dev@example.com"),
    ("Open __init__.py now.", "open __init__.py now"),
    ("Bump to v1.2.", "bump to v1.2"),
    ("We use Next.js, C++ and C#!", "we use next.js c++ and c#"),
    ("Run git push --force.", "run git push --force"),
    ("see foo/bar and snake_case", "see foo/bar and snake_case"),
    ("email me @ work", "email me @ work"),
    ("open .env", "open .env"),
    ("std::vector on localhost:8080", "std::vector on localhost:8080"),
    ("“Hello,” she said — ‘twice’.", "hello she said twice"),
    ("Don't stop; it's fine: (really) ?", "don't stop it's fine really"),
    ("The users' files...", "the users files"),
    ("Wait - what?", "wait what"),
    ("  lots   of\tspace\n", "lots of space"),
    ("ＦＵＬＬ width", "full width"),
    ("1,000 items", "1000 items"),
    ("one and 1", "one and 1"),
    ("twenty-five", "twenty-five"),
    ("", ""),
    ("...", ""),
]


@pytest.mark.parametrize(("text", "expected"), JARGON_CASES)
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected


@pytest.mark.parametrize("text", [text for text, _ in JARGON_CASES])
def test_normalize_text_is_idempotent(text):
    once = normalize_text(text)
    assert normalize_text(once) == once


SAFETY_CASES = [
    ("one", "1"),
    ("zero", "0"),
    ("twenty five", "25"),
    ("Twenty-five", "25"),
    ("one hundred and five", "105"),
    ("one hundred and counting", "100 and counting"),
    ("two thousand and twenty", "2020"),
    ("twenty five thousand three hundred", "25300"),
    ("nine hundred ninety nine thousand nine hundred ninety nine", "999999"),
    ("one two three", "1 2 3"),
    ("twenty zero", "20 0"),
    ("nineteen hundred", "19 hundred"),
    ("25,000 people", "25000 people"),
    ("I'm well-known.", "im well known"),
    ("someone else", "someone else"),
]


@pytest.mark.parametrize(("text", "expected"), SAFETY_CASES)
def test_normalize_for_safety(text, expected):
    assert normalize_for_safety(text) == expected


# (a, b, same under jargon, same under safety)
EQUIVALENCE_CASES = [
    ("Hello, World!", "hello world", True, True),
    ("It's DONE.", "it's done", True, True),
    ("one", "1", False, True),
    ("twenty five", "25", False, True),
    ("One hundred and five.", "105", False, True),
    ("don’t", "dont", False, True),
    ("well-known", "well known", False, True),
    ("@", "at", False, False),
    ("WER", "where", False, False),
]


@pytest.mark.parametrize(("a", "b", "same_jargon", "same_safety"), EQUIVALENCE_CASES)
def test_what_each_strategy_forgives(a, b, same_jargon, same_safety):
    assert (normalize_text(a) == normalize_text(b)) is same_jargon
    assert (normalize_for_safety(a) == normalize_for_safety(b)) is same_safety


@pytest.mark.parametrize("name", sorted(NORMALIZERS))
def test_get_normalizer_known(name):
    assert get_normalizer(name) is NORMALIZERS[name]


def test_get_normalizer_unknown_names_the_choices():
    with pytest.raises(ConfigError, match=r"normalizer: unknown name 'whisper', expected one of jargon, safety"):
        get_normalizer("whisper")

import pytest

from lora_training.errors import ConfigError
from lora_training.data.normalize import (
    NORMALIZERS,
    get_normalizer,
    normalize_exact,
    normalize_for_safety,
    normalize_text,
)

# (dictated or written text, what every metric compares): the jargon-true normalisation.
JARGON_CASES = [
    # file paths and @-mentions
    ("Read @docs/plan.md and fix the linting errors.", "read @docs/plan.md and fix the linting errors"),
    ("Open __init__.py now.", "open __init__.py now"),
    ("open init.lua in neotree", "open init.lua in neotree"),
    ("Edit ~/.config/nvim/", "edit ~/.config/nvim/"),
    ("see foo/bar and snake_case", "see foo/bar and snake_case"),
    ("open .env", "open .env"),
    ("run ./build.sh", "run ./build.sh"),
    ("email me @ work", "email me @ work"),
    # code fragments
    ("call print() twice", "call print() twice"),
    ("if a != b:", "if a != b"),
    ("x += 1;", "x += 1"),
    ("std::vector on localhost:8080", "std::vector on localhost:8080"),
    ("We use Next.js, C++ and C#!", "we use next.js c++ and c#"),
    ("f(x)) and (g(y))", "f(x) and g(y)"),
    ("the list[0] item", "the list[0] item"),
    ("git push origin main", "git push origin main"),
    ("Run git push --force.", "run git push --force"),
    ("kubectl get pods -n prod", "kubectl get pods -n prod"),
    # emails, URLs, versions
    ("Send it to dev@example.com.", "send it to dev@example.com"),
    ("Go to https://example.com/a?b=c.", "go to https://example.com/a?b=c"),
    ("Bump to v1.2.", "bump to v1.2"),
    ("python 3.11 and node 20", "python 3.11 and node 20"),
    # lone dictated symbols stay; sentence punctuation goes
    ("what about this ?", "what about this ?"),
    ("type / then enter", "type / then enter"),
    ("Wait - what?", "wait what"),
    ("...", ""),
    ("“Hello,” she said — ‘twice’.", "hello she said twice"),
    ("Don't stop; it's fine: (really) ?", "don't stop it's fine really ?"),
    ("The users' files...", "the users files"),
    # case and ALL CAPS
    ("the WER dropped", "the wer dropped"),
    ("USE THE API KEY", "use the api key"),
    ("ＦＵＬＬ width", "full width"),
    # contractions stay as written
    ("I'm sure it's fine", "i'm sure it's fine"),
    ("they won't", "they won't"),
    # numbers: digits and number words agree
    ("one to zero", "1 to 0"),
    ("1 to 0", "1 to 0"),
    ("twenty-five", "25"),
    ("twenty five items", "25 items"),
    ("one hundred and five", "105"),
    ("1,000 items", "1000 items"),
    ("the first step", "the 1st step"),
    # whitespace and empties
    ("  lots   of\tspace\n", "lots of space"),
    ("", ""),
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
    ("two thousand and twenty", "2020"),
    ("twenty five thousand three hundred", "25300"),
    ("one two three", "1 2 3"),
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
    ("one", "1", True, True),
    ("twenty five", "25", True, True),
    ("One hundred and five.", "105", True, True),
    ("print()", "print", False, False),
    ("!=", "=", False, False),
    ("?", "", False, False),
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
    with pytest.raises(ConfigError, match=r"normalizer: unknown name 'whisper', expected one of exact, jargon, safety"):
        get_normalizer("whisper")


def test_exact_keeps_case_and_punctuation():
    assert normalize_exact("  Hello,  World!\n") == "Hello, World!"
    assert normalize_exact("WER") != normalize_exact("wer")

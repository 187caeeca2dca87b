"""The spoken-form rewrite: which vocabulary lines become rules, and what they do to a transcript."""

from __future__ import annotations

import numpy as np
import pytest

from lora_training.data.vocabulary import example_vocabulary_path, load_vocabulary, parse_vocabulary
from lora_training.evaluation.rewrite import rewrite_rules, spoken_rewriter, vocabulary_rewriter
from lora_training.evaluation.transcribe import transcribe_with_runtime

VOCABULARY = """\
WER | W E R | word error rate
stderr | standard error | std err
regex | rej ex | regular expression
TODO | to do
@ | at
sudo | pseudo
GitHub | git hub
IT | I T
CI/CD | C I C D | C I slash C D
C# | C sharp
"""


@pytest.fixture()
def rewrite():
    return spoken_rewriter(parse_vocabulary(VOCABULARY).terms)


@pytest.mark.parametrize("text, expected", [
    ("Word error rate is down", "WER is down"),  # any case
    ("fix the word-error rate crash", "fix the WER crash"),  # a hyphen between the words
    ("print it to standard error, then exit.", "print it to stderr, then exit."),
    ("a regular expression's groups", "a regex's groups"),
    ("swords error rates", "swords error rates"),  # at word edges only
    ("remember to do it at noon", "remember to do it at noon"),  # function words alone: left to the model
    ("a pseudo random seed", "a pseudo random seed"),  # one-word spoken forms never
    ("push to github or gitHub", "push to GitHub or GitHub"),  # a camel-case form gets its case back
    ("Github", "Github"),  # unless in title case, as names are written (Dora for DoRA)
    ("did it work", "did it work"),  # an all-caps form does not: "it" is a word
    ("the C I slash C D pipeline", "the CI/CD pipeline"),  # longest form first
    ("C sharp and C I C D", "C# and CI/CD"),
])
def test_spoken_forms_become_written_forms(rewrite, text, expected):
    assert rewrite(text) == expected


def test_a_rewritten_span_is_never_rewritten_again():
    rewrite = spoken_rewriter(parse_vocabulary("GitHub | git hub\nGitHub Actions | git hub actions\n").terms)
    assert rewrite("git hub actions on git hub") == "GitHub Actions on GitHub"


def test_which_lines_make_rules():
    rules = {(r.spoken, r.written) for r in rewrite_rules(parse_vocabulary(VOCABULARY).terms)}
    assert ("word error rate", "WER") in rules and ("git hub", "GitHub") in rules and ("GitHub", "GitHub") in rules
    assert not {w for _, w in rules} & {"TODO", "@", "sudo"}
    assert ("I T", "IT") in rules and not [s for s, _ in rules if s.casefold() == "it"]  # spelled out, not the word
    assert spoken_rewriter(parse_vocabulary("@ | at\nsudo | pseudo\n").terms) is None


def test_the_example_vocabulary_leaves_ordinary_english_alone():
    """Sentences of ordinary English around the example vocabulary's riskiest spoken forms."""
    example = load_vocabulary(example_vocabulary_path())
    rewrite = vocabulary_rewriter(example)
    for sentence in ("I have a lot to do at home.", "Dora said the docker was at the dock.",
                     "Jason ate a pseudo sandwich at the moonshine bar.", "We will graph the results next."):
        assert rewrite(sentence) == sentence
    assert rewrite("Pipe it through a regular expression") == "Pipe it through a regex"
    assert vocabulary_rewriter(example, enabled=False) is None
    assert vocabulary_rewriter(None) is None
    assert rewrite_rules([]) == []


def test_an_on_device_runtime_gets_the_rewrite_too(rewrite):
    class Runtime:
        def transcribe(self, audio):
            return "word error rate on"

    audio = np.zeros(16000, dtype=np.float32)
    results = transcribe_with_runtime(Runtime(), [audio], rewrite=rewrite)
    assert results[0].text == "WER on"
    assert transcribe_with_runtime(Runtime(), [audio])[0].text == "word error rate on"

import pytest

from lora_training.data.vocabulary import (
    Term,
    VocabularyError,
    example_vocabulary_path,
    load_vocabulary,
    parse_vocabulary,
)
from lora_training.errors import ConfigError

GOOD = """\
# Tools
kubectl | cube control | kube c t l
   # an indented comment
dev@example.com | dev at example dot com   # trailing comment
@ | at

C# | C sharp # comment right after the term
F#
\\#include | hash include
WER | W E R | word error rate
git rebase |git re base
ls \\| grep | ls pipe grep
C:\\Users\\\\me | c users me
"""


def test_parse_terms_alternatives_and_comments():
    vocab = parse_vocabulary(GOOD)
    assert vocab.terms == [
        Term("kubectl", ["cube control", "kube c t l"], 2),
        Term("dev@example.com", ["dev at example dot com"], 4),
        Term("@", ["at"], 5),
        Term("C#", ["C sharp"], 7),
        Term("F#", ["F#"], 8),
        Term("#include", ["hash include"], 9),
        Term("WER", ["W E R", "word error rate"], 10),
        Term("git rebase", ["git re base"], 11),
        Term("ls | grep", ["ls pipe grep"], 12),
        Term("C:\\Users\\me", ["c users me"], 13),
    ]


def test_written_forms_and_lookup():
    vocab = parse_vocabulary(GOOD)
    assert vocab.written_forms()[:3] == ["kubectl", "dev@example.com", "@"]
    assert vocab.lookup("C#").spoken == ["C sharp"]
    assert vocab.lookup("c#") is None
    assert vocab.lookup("nope") is None


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("| cube control", "empty written form"),
        ("kubectl | | cube control", "empty spoken form #1"),
        ("kubectl | cube control |", "empty spoken form #2"),
        ("|", "'|' with nothing around it"),
        (" | | ", "'|' with nothing around it"),
        ("a|b", "ambiguous '|' between 'a' and 'b'"),
        ("ls|grep | ls pipe grep", "ambiguous '|' between 's' and 'g', expected ' | '"),
    ],
)
def test_each_error_names_file_and_line(line, fragment):
    with pytest.raises(VocabularyError) as info:
        parse_vocabulary(f"# header\nok | fine\n{line}\n", source="vocab.txt")
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("vocab.txt:3: ")
    assert fragment in str(info.value)
    assert "expected" in str(info.value) and "got" in str(info.value)


def test_duplicate_names_first_line():
    with pytest.raises(VocabularyError, match=r"vocab.txt:4: duplicate written form 'API'.*first on line 2"):
        parse_vocabulary("\nAPI | A P I\nSSH\nAPI | app eye\n", source="vocab.txt")
    with pytest.raises(VocabularyError) as info:
        parse_vocabulary("API\nAPI\nAPI\n", source="v.txt")
    assert [p[p.index("(") :] for p in info.value.problems] == ["(first on line 1)", "(first on line 1)"]


def test_all_problems_reported_together():
    text = "| nothing\nok | fine\nkubectl | |\nok | again\n|\nkubectl | cube control\n"
    with pytest.raises(VocabularyError) as info:
        parse_vocabulary(text, source="v.txt")
    assert [p.split(": ")[0] for p in info.value.problems] == [
        "v.txt:1", "v.txt:3", "v.txt:3", "v.txt:4", "v.txt:5", "v.txt:6"
    ]
    assert "first on line 3" in info.value.problems[-1]
    assert "6 vocabulary problem(s)" in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_no_terms_is_an_error():
    with pytest.raises(VocabularyError, match=r"v.txt: no terms"):
        parse_vocabulary("# only comments\n\n", source="v.txt")


def test_load_reports_path_and_line(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("API | A P I\nAPI\n", encoding="utf-8")
    with pytest.raises(VocabularyError, match=rf"{path}:2: duplicate"):
        load_vocabulary(path)
    path.write_text("\ufeffAPI | A P I\n", encoding="utf-8")
    vocab = load_vocabulary(path)
    assert vocab.written_forms() == ["API"] and vocab.path == path


def test_load_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="vocabulary file not found"):
        load_vocabulary(tmp_path / "missing.txt")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café | ka fay\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"{latin1}: unreadable vocabulary, expected UTF-8"):
        load_vocabulary(latin1)


def test_example_vocabulary_is_realistic():
    vocab = load_vocabulary(example_vocabulary_path())
    assert len(vocab.terms) >= 40
    for written in ["kubectl", "WER", "@", "dev@example.com", "__init__", "C#", "C++", "localhost:8080", "CI/CD"]:
        assert vocab.lookup(written) is not None, written
    assert vocab.lookup("@").spoken == ["at"]

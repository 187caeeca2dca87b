"""The data layer's fault matrix: split, mix, manifests, vocabulary, synth and file modes.

Each table row is one way a user's data can be lost or mislabelled; the test asserts the exit
code, one `error:` line naming the culprit (field, file or file:line), no traceback or temp
file, and the tree unchanged (or complete, for the cases that succeed).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from lora_training.data.manifest import Utterance, load_manifest, save_manifest
from lora_training.testing.factories import make_manifest, write_tone
from tests.reliability.conftest import assert_clean_error, assert_unchanged, snapshot


def one_line_error(outcome, *needles, code=1):
    assert_clean_error(outcome, *needles, code=code)
    assert len(outcome.err.strip().splitlines()) == 1, outcome.err


@pytest.fixture
def data(tmp_path):
    """tmp_path/d/m.jsonl: six distinct short tone clips, the input of split and mix."""
    return make_manifest(tmp_path / "d", 6, name="m.jsonl", seconds=0.4)


# --- split: outputs never alias the input or each other, and are checked before any write ---------

SPLIT_PATHS = [
    # id, (train_out, eval_out) from the input manifest, needles of the error
    ("train-is-input", lambda m: (m, m.with_name("e.jsonl")), ["train_out", "same file as input"]),
    ("eval-is-input", lambda m: (m.with_name("t.jsonl"), m), ["eval_out", "same file as input"]),
    ("train-other-spelling", lambda m: (m.parent / "." / ".." / "d" / m.name, m.with_name("e.jsonl")),
     ["train_out", "same file as input"]),
    ("train-symlink-to-input", lambda m: (_symlink(m, "t.jsonl"), m.with_name("e.jsonl")),
     ["train_out", "t.jsonl", "same file as input"]),
    ("eval-hardlink-to-input", lambda m: (m.with_name("t.jsonl"), _hardlink(m, "e.jsonl")),
     ["eval_out", "e.jsonl", "same file as input"]),
    ("train-is-eval", lambda m: (m.with_name("o.jsonl"), m.parent / "." / "o.jsonl"),
     ["eval_out", "same file as train_out"]),
    ("eval-under-a-file", lambda m: (m.with_name("t.jsonl"), _file(m, "notes.txt") / "e.jsonl"),
     ["eval_out", "notes.txt/e.jsonl", "expected a folder at", "got a file"]),
    ("eval-deep-under-a-file", lambda m: (m.with_name("t.jsonl"), _file(m, "notes.txt") / "x" / "e.jsonl"),
     ["eval_out", "expected a folder at", "notes.txt, got a file"]),
    ("train-is-a-folder", lambda m: (_folder(m, "t.jsonl"), m.with_name("e.jsonl")),
     ["train_out", "t.jsonl", "got a folder"]),
]


def _symlink(m: Path, name: str) -> Path:
    (m.parent / name).symlink_to(m)
    return m.parent / name


def _hardlink(m: Path, name: str) -> Path:
    os.link(m, m.parent / name)
    return m.parent / name


def _file(m: Path, name: str) -> Path:
    (m.parent / name).write_text("not a folder\n")
    return m.parent / name


def _folder(m: Path, name: str) -> Path:
    (m.parent / name).mkdir()
    return m.parent / name


@pytest.mark.parametrize("paths, needles", [c[1:] for c in SPLIT_PATHS], ids=[c[0] for c in SPLIT_PATHS])
def test_split_refuses_bad_outputs_before_writing(cli, data, paths, needles):
    train_out, eval_out = paths(data)
    before = snapshot(data.parent)
    outcome = cli("split-dataset", "--input", data, "--train-out", train_out, "--eval-out", eval_out)
    one_line_error(outcome, *needles)
    assert_unchanged(data.parent, before)


def _fail_rename(real):
    """os.replace onto eval.jsonl fails, naming the temp file as the OS does."""
    def replace(src, dst, *a, **kw):
        if Path(dst).name == "eval.jsonl":
            raise PermissionError(errno.EACCES, "Permission denied", str(src), str(dst))
        return real(src, dst, *a, **kw)
    return replace


def _fail_create(real):
    """Creating eval.jsonl's temp file fails."""
    def open_(path, flags, *a, **kw):
        if "eval.jsonl" in Path(path).name and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, flags, *a, **kw)
    return open_


def _fail_second_fsync(real):
    """The disk fills up while the second file (eval) is written."""
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)
    return fsync


WRITE_FAULTS = [
    # id, os function, fault wrapping it, whether train/eval exist from an earlier split
    ("rename-eval-fresh", "replace", _fail_rename, False),
    ("rename-eval-existing", "replace", _fail_rename, True),
    ("create-eval-temp-fresh", "open", _fail_create, False),
    ("create-eval-temp-existing", "open", _fail_create, True),
    ("disk-full-on-eval-fresh", "fsync", _fail_second_fsync, False),
    ("disk-full-on-eval-existing", "fsync", _fail_second_fsync, True),
]


@pytest.mark.parametrize("name, fault, existing", [c[1:] for c in WRITE_FAULTS], ids=[c[0] for c in WRITE_FAULTS])
def test_split_write_failure_on_the_second_output_leaves_both_untouched(cli, data, monkeypatch, name, fault,
                                                                         existing):
    out = data.parent / "out"
    train_out, eval_out = out / "train.jsonl", out / "eval.jsonl"
    if existing:  # an earlier split with another seed: the pair must survive as a pair
        assert cli("split-dataset", "--input", data, "--train-out", train_out, "--eval-out", eval_out,
                   "--seed", "1").code == 0
    before = snapshot(data.parent)
    monkeypatch.setattr(os, name, fault(getattr(os, name)))
    outcome = cli("split-dataset", "--input", data, "--train-out", train_out, "--eval-out", eval_out, "--overwrite")
    monkeypatch.undo()
    one_line_error(outcome, eval_out)
    assert_unchanged(data.parent, before)


# --- mix: the output is never one of its inputs -------------------------------------------------

MIX_PATHS = [
    ("output-is-input", lambda m: ([m], m), ["output", "same file as inputs[0]"]),
    ("output-is-named-input", lambda m: ([f"real={m}"], m.parent / ".." / "d" / m.name),
     ["output", "same file as inputs[0]"]),
    ("output-symlink-to-input", lambda m: ([m], _symlink(m, "mixed.jsonl")), ["output", "mixed.jsonl"]),
    ("output-hardlink-to-second-input", lambda m: ([_copy(m, "a.jsonl"), m], _hardlink(m, "mixed.jsonl")),
     ["output", "same file as inputs[1]"]),
    ("output-under-a-file", lambda m: ([m], _file(m, "notes.txt") / "mixed.jsonl"),
     ["output", "expected a folder at", "got a file"]),
]


def _copy(m: Path, name: str) -> Path:
    return Path(shutil.copy(m, m.parent / name))


@pytest.mark.parametrize("paths, needles", [c[1:] for c in MIX_PATHS], ids=[c[0] for c in MIX_PATHS])
def test_mix_refuses_an_output_that_is_an_input(cli, data, paths, needles):
    inputs, output = paths(data)
    before = snapshot(data.parent)
    one_line_error(cli("mix", *inputs, "--output", output), *needles)
    assert_unchanged(data.parent, before)


# --- manifests: any Unicode text round-trips, through save, load and split ----------------------

NASTY = [
    ("line-separator", "one\u2028two"),
    ("paragraph-separator", "one\u2029two"),
    ("next-line", "one\u0085two"),
    ("carriage-return", "one\rtwo"),
    ("crlf", "one\r\ntwo"),
    ("vt-ff-and-file-separators", "a\x0bb\x0cc\x1cd\x1de\x1ef"),
    ("rtl-marks", "\u200fשלום \u202ekubectl\u202c"),
    ("emoji-zwj", "deploy 👩\u200d💻 🚀"),
    ("combining-marks", "cafe\u0301 na\u0308ive"),
    ("bom-and-nbsp", "\ufeffzero\u00a0width"),
]


@pytest.mark.parametrize("nasty", [c[1] for c in NASTY], ids=[c[0] for c in NASTY])
def test_any_text_round_trips(cli, data, nasty):
    rows = load_manifest(data)
    texts = [f"sentence {i}: {nasty}" for i in range(len(rows))]
    written = save_manifest(data, [Utterance(audio=u.audio, text=t, id=u.id) for u, t in zip(rows, texts)])
    assert len(written.read_text(encoding="utf-8").splitlines()) == len(rows)  # one row per line in any editor
    assert [u.text for u in load_manifest(written)] == texts
    # A file another tool wrote with the characters raw inside JSON strings reads the same.
    raw = data.with_name("raw.jsonl")
    raw.write_text("".join(json.dumps({"audio": f"audio/utt_{i:04d}.wav", "text": t}, ensure_ascii=False) + "\n"
                           for i, t in enumerate(texts)), encoding="utf-8")
    assert [u.text for u in load_manifest(raw)] == texts
    out = data.parent / "out"
    outcome = cli("split-dataset", "--input", raw, "--train-out", out / "t.jsonl", "--eval-out", out / "e.jsonl")
    assert outcome.code == 0, outcome.err
    split_texts = [u.text for side in ("t", "e") for u in load_manifest(out / f"{side}.jsonl")]
    assert sorted(split_texts) == sorted(texts)


# --- validate-manifest: every problem named by file:line -----------------------------------------

def _bad_rows(d: Path, case: str) -> list[str]:
    """Line 2 of a manifest whose line 1 is a good clip (ok.wav, "fine")."""
    write_tone(d / "b.wav", seconds=0.5)
    row = {"audio": "b.wav", "text": "another sentence"}
    if case == "bad-json":
        return ['{"audio": "b.wav", "text": ']
    if case == "missing-text":
        return [json.dumps({"audio": "b.wav"})]
    if case == "huge-text":
        return [json.dumps({**row, "text": "word " * 2_000_000})]
    if case == "zero-width-text":
        return [json.dumps({**row, "text": "\u200b\u200b\u200d\ufeff"})]
    if case == "term-not-in-text":
        return [json.dumps({**row, "terms": ["nginx"]})]
    if case == "same-audio-other-text":
        return [json.dumps({"audio": "ok.wav", "text": "something else", "id": "again"})]
    if case == "audio-is-a-folder":
        (d / "clips").mkdir()
        return [json.dumps({**row, "audio": "clips"})]
    if case == "audio-symlink-loop":
        (d / "loop.wav").symlink_to("loop.wav")
        return [json.dumps({**row, "audio": "loop.wav"})]
    if case == "audio-broken-symlink":
        (d / "gone.wav").symlink_to("nowhere.wav")
        return [json.dumps({**row, "audio": "gone.wav"})]
    if case == "audio-missing":
        return [json.dumps({**row, "audio": "missing.wav"})]
    if case == "audio-zero-bytes":
        (d / "b.wav").write_bytes(b"")
    elif case == "audio-corrupt":
        (d / "b.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    elif case == "audio-45-seconds":
        write_tone(d / "b.wav", seconds=45.0, sample_rate=8000)
    return [json.dumps(row)]


MANIFEST_PROBLEMS = [
    ("bad-json", "invalid JSON"),
    ("missing-text", "missing 'text'"),
    ("huge-text", "'text' too long, expected at most 2000 characters"),
    ("zero-width-text", "invisible 'text', expected visible characters"),
    ("term-not-in-text", "term 'nginx' not in 'text'"),
    ("same-audio-other-text", "audio 'ok.wav' already listed on line 1 with another text"),
    ("audio-is-a-folder", "audio path is a folder"),
    ("audio-symlink-loop", "audio path is a symlink loop"),
    ("audio-broken-symlink", "audio path is a broken symlink to nowhere.wav"),
    ("audio-missing", "audio file not found"),
    ("audio-zero-bytes", "empty audio file"),
    ("audio-corrupt", "unreadable audio"),
    ("audio-45-seconds", "clip length out of range, expected 0.3-30 s, got 45.00 s"),
]


@pytest.mark.parametrize("case, what", MANIFEST_PROBLEMS, ids=[c[0] for c in MANIFEST_PROBLEMS])
def test_validate_names_file_and_line(cli, tmp_path, case, what):
    d = tmp_path / "d"
    write_tone(d / "ok.wav", seconds=0.5)
    manifest = d / "m.jsonl"
    manifest.write_text("\n".join([json.dumps({"audio": "ok.wav", "text": "fine"}), *_bad_rows(d, case)]) + "\n")
    before = snapshot(d)
    outcome = cli("validate-manifest", manifest)
    assert outcome.code == 1 and "Traceback" not in outcome.err and ".tmp" not in outcome.out
    assert f"{manifest}: 1 problem(s)" in outcome.out, outcome.out[-2000:]
    assert f"  {manifest}:2: " in outcome.out and what in outcome.out, outcome.out[-2000:]
    assert max(len(line) for line in outcome.out.splitlines()) < 600  # a 10 MB text is not echoed
    assert_unchanged(d, before)


# --- vocabulary: malformed lines named by file:line ---------------------------------------------

VOCABULARY_LINES = [
    ("glued-bar", "a|b", "ambiguous '|' between 'a' and 'b'"),
    ("glued-bar-beside-a-separator", "ls|grep | ls pipe grep", "ambiguous '|'"),
    ("empty-written", "| cube control", "empty written form"),
    ("empty-spoken-middle", "kubectl | | cube control", "empty spoken form #1"),
    ("empty-spoken-last", "kubectl | cube control |", "empty spoken form #2"),
    ("only-bars", " | | ", "'|' with nothing around it"),
    ("duplicate", "ok | again", "duplicate written form 'ok'"),
]


@pytest.mark.parametrize("line, what", [c[1:] for c in VOCABULARY_LINES], ids=[c[0] for c in VOCABULARY_LINES])
def test_vocabulary_problems_name_file_and_line(cli, tmp_path, line, what):
    vocabulary = tmp_path / "v.txt"
    vocabulary.write_text(f"ok | fine\n{line}\nnginx | engine x\n")
    before = snapshot(tmp_path)
    outcome = cli("synth", "--vocabulary", vocabulary, "--output", tmp_path / "s" / "s.jsonl", "--no-gate")
    one_line_error(outcome, f"{vocabulary}:2: {what}")
    assert_unchanged(tmp_path, before)


# --- synth: never shrink an existing synthetic manifest silently --------------------------------

@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    """Three espeak clips, made once; each case works on its own copy."""
    from lora_training.cli import main

    root = tmp_path_factory.mktemp("synth")
    (root / "v.txt").write_text("kubectl | cube control\nnginx | engine x\n")
    args = ["--vocabulary", root / "v.txt", "--min-per-term", "1", "--output", root / "s.jsonl", "--no-gate",
            "--backend", "espeak", "--workers", "1"]
    assert main(["synth", "--count", "3", *map(str, args)]) == 0
    return root


SYNTH_RERUNS = [
    # id, extra args, exit code, needles (error or summary)
    ("smaller-count-refused", ["--count", "2"], 1, ["s.jsonl: holds 3 clips, 1 of which", "--overwrite"]),
    ("other-seed-refused", ["--count", "3", "--seed", "1"], 1, ["s.jsonl: holds 3 clips", "--overwrite"]),
    ("output-is-the-reference", ["--count", "3", "--reference-manifest", "{out}"], 1,
     ["output", "same file as reference_manifest"]),
    ("same-count-is-a-no-op", ["--count", "3"], 0, ["0 synthesized, 3 resumed"]),
    ("smaller-count-with-overwrite", ["--count", "2", "--overwrite"], 0, ["removed (--overwrite): 1 clips"]),
]


@pytest.mark.parametrize("extra, code, needles", [c[1:] for c in SYNTH_RERUNS], ids=[c[0] for c in SYNTH_RERUNS])
def test_synth_rerun_never_shrinks_silently(cli, synthesized, tmp_path, extra, code, needles):
    root = Path(shutil.copytree(synthesized, tmp_path / "copy"))
    out = root / "s.jsonl"
    before = snapshot(root)
    outcome = cli("synth", "--vocabulary", root / "v.txt", "--min-per-term", "1", "--output", out, "--no-gate",
                  "--backend", "espeak", "--workers", "1", *[a.format(out=out) for a in extra])
    if code:
        one_line_error(outcome, *needles)
        assert_unchanged(root, before)
        return
    assert outcome.code == 0 and all(n in outcome.out for n in needles), outcome.out + outcome.err
    rows = load_manifest(out)
    assert sorted(p.name for p in (root / "s_audio").iterdir()) == sorted(Path(u.audio).name for u in rows)
    assert len(rows) == (2 if "--overwrite" in extra else 3)
    if "--overwrite" not in extra:
        assert_unchanged(root, before)


# --- file modes: the umask decides, and a replaced file keeps its mode ---------------------------

@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def _split_into(data, cli, train_out: Path) -> Path:
    outcome = cli("split-dataset", "--input", data, "--train-out", train_out,
                  "--eval-out", train_out.with_name("e.jsonl"))
    assert outcome.code == 0, outcome.err
    assert len(load_manifest(train_out)) + len(load_manifest(train_out.with_name("e.jsonl"))) == 6
    return train_out


def _existing(data, cli, mode: int) -> Path:
    target = data.parent / "t.jsonl"
    target.write_text("")
    target.chmod(mode)
    return _split_into(data, cli, target)


def _staging(data, cli) -> Path:
    from lora_training.atomic import staging_dir

    return staging_dir(data.parent / "adapter")


def _wav(data, cli) -> Path:
    import numpy as np

    from lora_training.data.audio import write_wav

    return write_wav(data.parent / "clips" / "c.wav", np.zeros(8000, np.float32))


MODES = [
    # id, umask, what to write (returns the path to check), expected mode
    ("new-manifest-022", 0o022, lambda d, cli: _split_into(d, cli, d.parent / "t.jsonl"), 0o644),
    ("new-manifest-077", 0o077, lambda d, cli: _split_into(d, cli, d.parent / "t.jsonl"), 0o600),
    ("new-folder-022", 0o022, lambda d, cli: _split_into(d, cli, d.parent / "n" / "t.jsonl").parent, 0o755),
    ("new-folder-077", 0o077, lambda d, cli: _split_into(d, cli, d.parent / "n" / "t.jsonl").parent, 0o700),
    ("existing-0640-kept-022", 0o022, lambda d, cli: _existing(d, cli, 0o640), 0o640),
    ("existing-0644-kept-077", 0o077, lambda d, cli: _existing(d, cli, 0o644), 0o644),
    ("staging-folder-022", 0o022, _staging, 0o755),
    ("staging-folder-077", 0o077, _staging, 0o700),
    ("wav-clip-002", 0o002, _wav, 0o664),
]


@pytest.mark.parametrize("mask, write, mode", [c[1:] for c in MODES], ids=[c[0] for c in MODES])
def test_written_files_follow_the_umask(cli, data, umask, mask, write, mode):
    umask(mask)
    path = write(data, cli)
    assert stat.S_IMODE(path.stat().st_mode) == mode, oct(path.stat().st_mode)
    assert [p for p in path.parent.glob(".*.tmp") if p != path] == []  # no temp file left behind

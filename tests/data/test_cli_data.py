"""Data commands through the real CLI: return codes, output, and a clean one-line error."""

import json
import subprocess
import sys
from pathlib import Path

from lora_training.cli import main
from lora_training.testing.factories import make_manifest

REPO = Path(__file__).resolve().parents[2]


def test_split_dataset_command_writes_both_sides(tmp_path, capsys):
    manifest = make_manifest(tmp_path / "data", 10, seconds=0.4)
    train, evals = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    code = main(["split-dataset", "--input", str(manifest), "--train-out", str(train), "--eval-out", str(evals), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["train"]["utterances"], summary["eval"]["utterances"]) == (8, 2)
    assert len(train.read_text().splitlines()) == 8 and len(evals.read_text().splitlines()) == 2


def test_split_dataset_command_refuses_a_tiny_manifest(tmp_path, capsys):
    manifest = make_manifest(tmp_path / "data", 3)
    outs = ["--train-out", str(tmp_path / "t.jsonl"), "--eval-out", str(tmp_path / "e.jsonl")]
    code = main(["split-dataset", "--input", str(manifest), *outs])
    assert code == 1
    assert "too few utterances to split" in capsys.readouterr().err


def test_validate_manifest_command_ok_and_problems(tmp_path, capsys):
    good = make_manifest(tmp_path / "good", 3)
    assert main(["validate-manifest", str(good)]) == 0
    assert capsys.readouterr().out.strip() == f"{good}: 3 utterances, 0.00 hours, OK"

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"audio": "gone.wav", "text": "hi"}) + "\n" + json.dumps({"audio": "x.wav"}) + "\n")
    assert main(["validate-manifest", str(good), str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("OK")
    assert out[1] == f"{bad}: 2 problem(s)"
    assert out[2].startswith(f"  {bad}:1: audio file not found")
    assert out[3].startswith(f"  {bad}:2: missing 'text'")


def test_bad_manifest_fails_with_one_clean_line_from_main_py(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "a.wav", "text": "unterminated}\n')
    proc = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "split-dataset", "--input", str(bad),
         "--train-out", str(tmp_path / "t.jsonl"), "--eval-out", str(tmp_path / "e.jsonl")],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert proc.returncode != 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {bad}:1: invalid JSON")
    assert "Traceback" not in proc.stderr

"""The layout's rules, checked: layers point down, one home for the run folder and for Moonshine's
internals, and a CLI whose --help imports neither torch nor numpy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "lora_training"


def _sources() -> dict[str, str]:
    return {str(p.relative_to(PACKAGE)): p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py")}


def test_import_contracts_hold():
    """pyproject.toml's import-linter contracts: an arrow that runs back up fails here."""
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "broken" in proc.stdout and " 0 broken" in proc.stdout


@pytest.mark.parametrize("literal", ['"config.json"', '"state.json"', '"metrics.jsonl"', '"best_adapter"',
                                     '"train.log"', '"eval_results.json"', '"report.md"', '"checkpoints"'])
def test_run_folder_names_have_one_home(literal):
    homes = sorted(name for name, text in _sources().items() if literal in text)
    # models/ reads config.json of Hugging Face model folders, which are not run folders.
    homes = [h for h in homes if not (literal == '"config.json"' and h.startswith("models/"))]
    assert homes == ["runs/__init__.py"], f"{literal} spelled in {homes}"


def test_moonshine_internals_have_one_home():
    private = re.compile(r"groupnorm|rotary_emb|head_dim_padding|is_updated|proj_out|shift_tokens_right|"
                         r"modeling_moonshine|cross_attention_cache")
    homes = sorted(name for name, text in _sources().items() if private.search(text))
    assert set(homes) <= {"models/moonshine_ops.py", "models/moonshine_graphs.py", "models/ort_graphs.py",
                          "models/embedded.py"}, homes


def test_help_is_instant_and_light():
    code = ("import sys, runpy; sys.argv = ['main.py', '--help']\n"
            "try:\n    runpy.run_path('main.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('torch', 'numpy', 'transformers') if m in sys.modules)\n"
            "print('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in proc.stdout, proc.stdout[-500:] + proc.stderr[-500:]


def test_every_command_help_builds():
    """Each command's options come from its dataclass; a broken field metadata fails here, not for a user."""
    from lora_training.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no public listing
    for name, sub in commands.items():
        assert sub.format_help(), name

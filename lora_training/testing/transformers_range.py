"""The lowest transformers release pyproject.toml allows, and the copy of it the range test runs on.

pyproject.toml promises `transformers>=LOWER` while the venv holds the newest release, so nothing
would notice the product breaking on the oldest release it claims. scripts/transformers-range.sh
installs LOWER, pure Python and without dependencies, into LOWER_FOLDER (next to, not inside, the
venv's site-packages); tests/models/test_transformers_range.py puts it first on PYTHONPATH in a
subprocess and runs tests/models/test_moonshine_ops.py there. Only meaningful in a checkout.

    python -m lora_training.testing.transformers_range   # prints: LOWER present|absent
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOWER_FOLDER = ROOT / ".venv" / "transformers-lower"


def lower_bound(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The X of the `transformers>=X` dependency in pyproject.toml."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib

    with open(pyproject, "rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    for dependency in dependencies:
        match = re.fullmatch(r"transformers\s*>=\s*([0-9][0-9.]*)\s*(?:,.*)?", dependency.strip())
        if match:
            return match.group(1)
    raise ValueError(f"{pyproject}: no `transformers>=X` in [project] dependencies, expected one")


def installed_version(folder: Path = LOWER_FOLDER) -> str | None:
    """The transformers version installed in `folder` (by `pip install --target`), None if none."""
    if not (folder / "transformers").is_dir():
        return None
    versions = [d.version for d in importlib.metadata.distributions(path=[str(folder)])
                if (d.metadata["Name"] or "").lower() == "transformers"]
    return versions[0] if len(versions) == 1 else None


def holds_lower_bound(folder: Path = LOWER_FOLDER) -> bool:
    """Whether `folder` holds exactly the release pyproject.toml names as the lower bound (5.18 == 5.18.0)."""
    from packaging.version import Version

    have = installed_version(folder)
    return have is not None and Version(have) == Version(lower_bound())


if __name__ == "__main__":
    print(lower_bound(), "present" if holds_lower_bound() else "absent")

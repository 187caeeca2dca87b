"""Command options as dataclass fields: the one place a default and its help text live.

Every command's options are a dataclass of `option(...)` fields in the module that does the work
(`SplitOptions` beside `split_dataset`, `EvalOptions` beside `run_evaluation`, ...). The CLI
builds its flags from these fields and never restates a default; pipelines build the same
dataclasses from TOML with `from_dict`, so an unknown key is an error there too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, field
from typing import Any

from lora_training.errors import ConfigError


def option(default: Any = MISSING, help: str = "", *, choices: tuple | None = None, flag: str | None = None,
           positional: bool = False, metavar: str | None = None, nargs: str | None = None,
           required: bool = False, cli: bool = True) -> Any:
    """A dataclass field with CLI metadata.

    `flag` overrides the derived `--field-name` (e.g. `--no-gate` for a True boolean);
    `positional` makes it an argument; `cli=False` keeps it out of the command line (set by code).
    A list default gets a fresh copy per instance.
    """
    metadata = {"help": help, "choices": choices, "flag": flag, "positional": positional,
                "metavar": metavar, "nargs": nargs, "required": required, "cli": cli}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def from_dict(cls, data: dict[str, Any], source: str):
    """`cls(**data)`, but an unknown or missing key is a ConfigError naming `source` and the valid keys."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}, expected only: {', '.join(fields)}")
    missing = [n for n, f in fields.items() if n not in data and default_of(f) is MISSING]
    if missing:
        raise ConfigError(f"{source}: missing key(s) {', '.join(missing)}, expected a value for each")
    return cls(**data)

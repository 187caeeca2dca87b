"""The one adapter from options dataclasses to argparse, and the display flags every command shares.

A field's flag, help, choices and default come from its `option(...)` metadata; the default
is shown in `--help` but not set on the namespace (argparse.SUPPRESS), so `given` returns only
what the user typed and the dataclass fills in the rest: no default is ever restated here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from lora_training.options import default_of


class Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _kind(f: dataclasses.Field) -> str:
    text = str(f.type)
    for kind in ("list", "tuple", "bool", "float", "int"):
        if kind in text:
            return kind
    return "str"


def _shown(default: Any) -> bool:
    return not (default is None or default is dataclasses.MISSING or isinstance(default, bool)
                or (isinstance(default, (list, tuple)) and not default))


def add_options(parser, cls, *, skip: tuple[str, ...] = ()) -> None:
    """One argparse argument per field of `cls` (minus `skip` and fields marked cli=False)."""
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if f.name in skip or not meta.get("cli", True):
            continue
        default, kind = default_of(f), _kind(f)
        help_text = meta["help"] + (f" (default: {default})" if _shown(default) else "")
        if kind == "bool" and default:
            help_text += " (on by default; this flag turns it off)"
        kw: dict[str, Any] = {"help": help_text}
        if meta.get("choices"):
            kw["choices"] = meta["choices"]
        if meta.get("metavar"):
            kw["metavar"] = meta["metavar"]
        if meta.get("positional"):
            kw["nargs"] = meta.get("nargs")
            if kw["nargs"] == "?":
                kw["default"] = default
            parser.add_argument(f.name, **kw)
            continue
        flags = (meta.get("flag") or "--" + f.name.replace("_", "-")).split()
        kw.update(dest=f.name, default=argparse.SUPPRESS)
        if kind == "bool":
            kw["action"] = "store_false" if default else "store_true"
        else:
            kw["type"] = {"int": int, "float": float}.get(kind, str)
            if kind in ("list", "tuple"):
                kw["nargs"] = meta.get("nargs") or "+"
            if meta.get("required"):
                kw["required"] = True
        parser.add_argument(*flags, **kw)


def given(args: argparse.Namespace, cls) -> dict[str, Any]:
    """The fields of `cls` the user gave on the command line (positionals always)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}


def build(args: argparse.Namespace, cls):
    return cls(**given(args, cls))


def add_json(parser, what: str = "the result") -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))

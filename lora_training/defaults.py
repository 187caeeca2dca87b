"""Defaults that more than one command shares, each with this one home.

Command-specific defaults live in that command's options dataclass; what is here is read by
several of them: which model a command uses when `--model-id` is omitted, the decoding batch,
the devices, the thread rule. Nothing here imports more than the standard library.
"""

from __future__ import annotations

import os

TRAINING_MODEL = "UsefulSensors/moonshine-tiny"
EMBEDDED_MODEL = "embedded:moonshine-base"
MODEL_REFERENCE_HELP = "hub id, local save_pretrained folder, or embedded:moonshine-base"
# The model each command uses when --model-id is omitted. Training targets the model the user
# will dictate with (tiny, from the hub); the commands that only listen to check data or score
# (transcribe, verify, the synthesis gate, models check, the demo) use the embedded model, which
# works offline, where its extra is installed (Linux x86-64), else tiny from the hub (cached after
# the first download). `transcribe` prefers an adapter's own base model over this.
MODEL_POLICY = {
    "train": TRAINING_MODEL,
    "transcribe": EMBEDDED_MODEL,
    "verify": EMBEDDED_MODEL,
    "gate": EMBEDDED_MODEL,
    "check": EMBEDDED_MODEL,
    "demo": EMBEDDED_MODEL,
}

# Names the built-in general-English set (evaluation/safety.py) where a manifest path goes:
# its measurement half for safety scores, its replay half for --replay-manifest.
BUILTIN = "builtin"

DEVICES = ("auto", "cpu", "cuda", "mps")
# Rows decoded together: a decoder step costs mostly reading the weights, which rows share.
DECODE_BATCH_SIZE = 32
# Above ~20 s Moonshine's text no longer fits its decoder positions reliably.
MAX_CHUNK_SECONDS = 20.0
# More threads than this stop paying on the small Moonshine matrices.
MAX_THREADS = 8
# Keyterm biasing's logit bonus (evaluation/biasing.py) for `evaluate`, `transcribe` and the
# trainer's evals: the largest of {1, 2, 4, 8} whose cost stays within noise (benchmarks/biasing.py,
# docs/personalized/keyterm_biasing.md; demo adapter, 28 eval clips, 61 builtin safety clips): at 1
# unseen-term recall rises 1/15 -> 4/15 (+20 points, paired 95% interval [+5.9, +35.6]) at no safety
# cost and 2 more false alarms; at 2 safety WER rises +1.3 points [+0.5, +3.4], at 4 +3.5 and 15
# false alarms, and 8 writes terms everywhere (WER 258%).
BIAS_BOOST = 1.0


# LORA_TRAINING_HIDE=embedded,debian makes the toolkit act as on a machine without the embedded
# extra and without the Debian speech packages (a Mac, online): how CI exercises that path.
HIDE_ENV = "LORA_TRAINING_HIDE"
EMBEDDED_MODULES = ("moonshine_cpp", "moonshine_onnx")


def hidden(what: str) -> bool:
    """Whether $LORA_TRAINING_HIDE names `what` (embedded, debian)."""
    return what in {w.strip() for w in os.environ.get(HIDE_ENV, "").split(",")}


def embedded_available() -> bool:
    """The embedded extra is installed (and not hidden); found without importing it."""
    import importlib.util

    return not hidden("embedded") and all(importlib.util.find_spec(m) is not None for m in EMBEDDED_MODULES)


def default_model(task: str) -> str:
    """The model `task` uses when none is given (see MODEL_POLICY)."""
    model = MODEL_POLICY[task]
    return TRAINING_MODEL if model == EMBEDDED_MODEL and not embedded_available() else model


def model_help(task: str, what: str = "base model") -> str:
    return f"{what}: {MODEL_REFERENCE_HELP}"


def torch_threads(requested: int = 0) -> int:
    """`requested` threads, or (0) every core up to MAX_THREADS."""
    return requested or min(os.cpu_count() or 1, MAX_THREADS)

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
# works offline. `transcribe` prefers an adapter's own base model over this.
MODEL_POLICY = {
    "train": TRAINING_MODEL,
    "transcribe": EMBEDDED_MODEL,
    "verify": EMBEDDED_MODEL,
    "gate": EMBEDDED_MODEL,
    "check": EMBEDDED_MODEL,
    "demo": EMBEDDED_MODEL,
}

DEVICES = ("auto", "cpu", "cuda", "mps")
# Rows decoded together: a decoder step costs mostly reading the weights, which rows share.
DECODE_BATCH_SIZE = 32
# Above ~20 s Moonshine's text no longer fits its decoder positions reliably.
MAX_CHUNK_SECONDS = 20.0
# More threads than this stop paying on the small Moonshine matrices.
MAX_THREADS = 8


def default_model(task: str) -> str:
    """The model `task` uses when none is given (see MODEL_POLICY)."""
    return MODEL_POLICY[task]


def model_help(task: str, what: str = "base model") -> str:
    return f"{what}: {MODEL_REFERENCE_HELP}"


def torch_threads(requested: int = 0) -> int:
    """`requested` threads, or (0) every core up to MAX_THREADS."""
    return requested or min(os.cpu_count() or 1, MAX_THREADS)

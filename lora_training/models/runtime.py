"""How torch runs in every command: the thread rule, the device choice, and quiet libraries.

One rule for training, transcription and export, so a change of policy (a new device kind, a
different thread cap) happens here only.
"""

from __future__ import annotations

from collections.abc import Callable

from lora_training.defaults import torch_threads
from lora_training.errors import ModelError


def set_threads(requested: int = 0) -> int:
    """torch's intra-op threads: `requested`, or every core up to the cap; returns the count."""
    import torch

    n = torch_threads(requested)
    torch.set_num_threads(n)
    return n


def available_devices() -> list[str]:
    """The torch devices this machine can run on, fastest first (cpu always last)."""
    import torch

    found = ["cuda"] if torch.cuda.is_available() else []
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return [*found, "cpu"]


def pick_device(name: str = "auto") -> str:
    """`auto` is CUDA, else Apple's MPS, else CPU; a named device must exist here (one-line error)."""
    available = available_devices()
    if name == "auto":
        return available[0]
    if name not in available:
        raise ModelError(f"device {name}: not available on this machine, expected one of {', '.join(['auto', *available])}")
    return name


# What each device can autocast to; a precision it lacks falls back to the next that works.
_PRECISIONS = {"cuda": ("bf16", "fp16", "fp32"), "mps": ("fp16", "fp32"), "cpu": ("bf16", "fp32")}


def pick_precision(device: str, precision: str, say: Callable[[str], None] | None = None) -> str:
    """`precision` where `device` supports it, else fp32, said once through `say` (the run's log)."""
    import torch

    supported = list(_PRECISIONS.get(device, ("fp32",)))
    if device == "cuda" and not torch.cuda.is_bf16_supported():
        supported.remove("bf16")
    if precision in supported:
        return precision
    if say is not None:
        say(f"precision {precision}: not supported on {device}, using fp32")
    return "fp32"


def quiet_libraries() -> None:
    """No weight-loading progress bars or third-party deprecation chatter in logs and outputs.

    peft asks transformers about gradient checkpointing through a deprecated name (a FutureWarning
    on every adapter load); that is not ours to fix, and a user cannot act on it.
    """
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

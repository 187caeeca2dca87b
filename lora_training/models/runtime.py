"""How torch runs in every command: the thread rule, the device choice, and quiet libraries.

One rule for training, transcription and export, so a change of policy (a new device kind, a
different thread cap) happens here only.
"""

from __future__ import annotations

from lora_training.defaults import torch_threads


def set_threads(requested: int = 0) -> int:
    """torch's intra-op threads: `requested`, or every core up to the cap; returns the count."""
    import torch

    n = torch_threads(requested)
    torch.set_num_threads(n)
    return n


def pick_device(name: str = "auto") -> str:
    """`auto` is CUDA when available, else CPU; any other name is taken as given."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def quiet_libraries() -> None:
    """No weight-loading progress bars or third-party deprecation chatter in logs and outputs.

    peft asks transformers about gradient checkpointing through a deprecated name (a FutureWarning
    on every adapter load); that is not ours to fix, and a user cannot act on it.
    """
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

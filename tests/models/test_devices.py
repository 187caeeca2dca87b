"""Device choice: auto prefers CUDA, then Apple's MPS, then CPU; a named device must exist; a precision
a device lacks falls back to fp32 and says so."""

from __future__ import annotations

import pytest

from lora_training.errors import ModelError
from lora_training.models import runtime


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert runtime.pick_device("auto") == expected
    assert runtime.available_devices()[-1] == "cpu"


def test_a_named_device_that_is_missing_is_a_one_line_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ModelError, match=r"^device mps: not available on this machine, expected one of auto, cpu$"):
        runtime.pick_device("mps")
    assert runtime.pick_device("cpu") == "cpu"


def test_precision_falls_back_where_the_device_lacks_it():
    said = []
    assert runtime.pick_precision("cpu", "fp16", say=said.append) == "fp32"
    assert said == ["precision fp16: not supported on cpu, using fp32"]
    assert runtime.pick_precision("cpu", "bf16", say=said.append) == "bf16"
    assert runtime.pick_precision("mps", "bf16", say=said.append) == "fp32"
    assert len(said) == 2

"""Exports of the real Moonshine base, loaded by the real runtimes (moonshine-cpp, sherpa-onnx) on real speech.

The unadapted export must transcribe the built-in clips as the graphs shipped in the moonshine-cpp wheel
do; an adapted export must transcribe as the merged PyTorch model (float: the same text on >= 95% of
clips), and its int8 version within +0.5 WER points of the float one.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def speech():
    """(references, audios) of the built-in measurement half: 61 clips of real English speech, ~500 words."""
    pytest.importorskip("moonshine_cpp")
    pytest.importorskip("sherpa_onnx")
    from lora_training.data.audio import load_audio
    from lora_training.data.manifest import load_manifest
    from lora_training.evaluation.safety import builtin_safety_manifest

    try:
        rows = load_manifest(builtin_safety_manifest("measure"))
    except Exception as e:  # the Debian speech packages are missing
        pytest.skip(f"built-in safety set unavailable: {e}")
    return [r.text for r in rows], [load_audio(r.audio) for r in rows]


@pytest.fixture(scope="module")
def base():
    from lora_training.models.registry import resolve_model
    from lora_training.models.runtime import set_threads

    set_threads(2)
    return resolve_model("embedded:moonshine-base")


def _texts(folder, runtime, audios):
    from lora_training.export.runtimes import open_export

    model = open_export(folder, runtime, threads=2)
    return [model.transcribe(a) for a in audios]


def test_unadapted_export_transcribes_as_the_shipped_graphs(base, speech, tmp_path):
    import shutil

    from lora_training.export.export import export_model
    from lora_training.models.embedded import source_graphs

    _, audios = speech
    export_model(*base, tmp_path / "float", quantize="none")
    shipped = tmp_path / "shipped"  # the wheel's graphs, in a folder of the same layout
    shipped.mkdir()
    for f in (*source_graphs(), source_graphs()[0].parent / "tokenizer.bin", tmp_path / "float" / "tokens.txt"):
        shutil.copy(f, shipped / f.name)
    want = _texts(shipped, "moonshine-cpp", audios)
    for runtime in ("moonshine-cpp", "sherpa-onnx"):
        got = _texts(tmp_path / "float", runtime, audios)
        same = sum(a == b for a, b in zip(got, want))
        assert same >= 0.95 * len(audios), (runtime, [(a, b) for a, b in zip(got, want) if a != b])


def test_adapted_export_matches_pytorch_and_int8_stays_within_half_a_point(base, speech, tmp_path):
    import jiwer
    import torch

    from lora_training.data.normalize import normalize_text
    from lora_training.evaluation.transcribe import transcribe_clips
    from lora_training.export.export import export_model
    from lora_training.models.adapters import apply_adapter

    references, audios = speech
    model, processor = base
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        peft_model = apply_adapter(model, r=8, alpha=16, dropout=0.0, use_dora=False, sites="both",
                                   target_modules=["q_proj", "v_proj", "fc1", "fc2"])
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.01)
    merged = peft_model.merge_and_unload().eval()
    want = [r.text for r in transcribe_clips(merged, processor, audios)]
    export_model(merged, processor, tmp_path / "float", quantize="none")
    export_model(merged, processor, tmp_path / "int8", quantize="int8")

    def wer(texts):
        return 100 * jiwer.wer([normalize_text(r) for r in references], [normalize_text(t) for t in texts])

    floats = {}
    for runtime in ("moonshine-cpp", "sherpa-onnx"):
        floats[runtime] = _texts(tmp_path / "float", runtime, audios)
        same = sum(a == b for a, b in zip(floats[runtime], want))
        assert same >= 0.95 * len(audios), (runtime, [(a, b) for a, b in zip(floats[runtime], want) if a != b])
    # int8 in the runtime the user dictates with (both runtimes load the same graphs)
    assert wer(_texts(tmp_path / "int8", "moonshine-cpp", audios)) <= wer(floats["moonshine-cpp"]) + 0.5

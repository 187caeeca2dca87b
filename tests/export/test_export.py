"""`export` on the tiny random Moonshine: the traced graphs decode the same tokens as PyTorch (LoRA and
DoRA), the tokenizer files match the runtime's own, int8 is per channel, and the CLI's contract holds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lora_training.cli import main
from lora_training.config import ExperimentConfig
from lora_training.data.audio import SAMPLE_RATE


def _adapted(model_dir, *, use_dora: bool, sites: str = "both", seed: int = 0):
    """A PEFT model on the tiny base whose adapter is far from zero, so merging it changes the tokens."""
    import torch

    from lora_training.models.adapters import apply_adapter
    from lora_training.models.registry import resolve_model

    model, processor = resolve_model(str(model_dir))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = apply_adapter(model, r=4, alpha=8, dropout=0.0, use_dora=use_dora, sites=sites,
                                   target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"])
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.3)
    return peft_model.eval(), processor


def _clips(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    t = np.arange(int(1.2 * SAMPLE_RATE)) / SAMPLE_RATE
    return [(0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
            for i in range(n)]


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_exported_graphs_decode_the_tokens_of_the_unmerged_adapter(tiny_model_dir, tmp_path, use_dora):
    import onnxruntime

    from lora_training.export.export import export_model
    from lora_training.models.ort_reference import session_greedy_decode
    from lora_training.models.registry import greedy_decode

    peft_model, processor = _adapted(tiny_model_dir, use_dora=use_dora)
    clips = _clips()
    want = [greedy_decode(peft_model, processor, clip, max_new_tokens=12) for clip in clips]
    with peft_model.disable_adapter():
        base_tokens = [greedy_decode(peft_model, processor, clip, max_new_tokens=12) for clip in clips]
    out = tmp_path / "export"
    result = export_model(peft_model.merge_and_unload(), processor, out, quantize="none", info={"base_model": "tiny"})
    sessions = [onnxruntime.InferenceSession(str(out / f)) for f in ("encoder_model.ort", "decoder_model_merged.ort")]
    got = [session_greedy_decode(*sessions, clip, 12) for clip in clips]
    assert got == want
    assert base_tokens != want  # the adapter matters, so equality above is evidence
    assert result["runtime_model_type"] == "tiny" and result["quantization"] == {"weights": "float32"}
    files = result["files"]
    assert set(files) == {"encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin", "tokens.txt"}
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in files.values())
    assert (out / "transformers" / "config.json").is_file() and not list(out.glob("*.onnx"))


def test_merged_decoder_has_the_runtime_interface_in_order(tiny_model_dir, tmp_path):
    """sherpa-onnx feeds the decoder's inputs by position: ids, encoder states, 4 pasts per layer, the switch."""
    import onnxruntime

    from lora_training.export.export import export_model
    from lora_training.models.registry import resolve_model

    model, processor = resolve_model(str(tiny_model_dir))
    export_model(model, processor, tmp_path / "e", quantize="none")
    decoder = onnxruntime.InferenceSession(str(tmp_path / "e" / "decoder_model_merged.ort"))
    layers = model.config.decoder_num_hidden_layers
    pasts = [f"past_key_values.{i}.{p}.{kv}" for i in range(layers) for p in ("decoder", "encoder") for kv in ("key", "value")]
    assert [i.name for i in decoder.get_inputs()] == ["input_ids", "encoder_hidden_states", *pasts, "use_cache_branch"]
    assert [o.name for o in decoder.get_outputs()] == ["logits", *(p.replace("past_key_values", "present") for p in pasts)]
    encoder = onnxruntime.InferenceSession(str(tmp_path / "e" / "encoder_model.ort"))
    assert [i.name for i in encoder.get_inputs()] == ["input_values"]
    assert [o.name for o in encoder.get_outputs()] == ["last_hidden_state"]


def test_int8_export_is_smaller_and_decodes_close_to_float(tiny_model_dir, tmp_path):
    from lora_training.export.export import export_model
    from lora_training.export.runtimes import open_export
    from lora_training.models.registry import resolve_model

    model, processor = resolve_model(str(tiny_model_dir))
    small = export_model(model, processor, tmp_path / "int8", quantize="int8")
    big = export_model(model, processor, tmp_path / "float", quantize="none")
    size = {name: sum(f["bytes"] for k, f in r["files"].items() if k.endswith(".ort")) for name, r in (("q", small), ("f", big))}
    assert size["q"] < 0.5 * size["f"]
    assert small["quantization"]["tensors"]["decoder_model_merged.ort"]["quantized"] > 0
    texts = [open_export(tmp_path / name, "onnxruntime").transcribe(_clips(1)[0]) for name in ("int8", "float")]
    assert all(isinstance(t, str) for t in texts)


def test_per_channel_scales_keep_small_channels_precise():
    from lora_training.export.quantize import per_channel_int8

    rng = np.random.default_rng(0)
    weight = rng.normal(0, 0.01, size=(64, 32)).astype(np.float32)
    weight[:, 3] *= 100  # one outlier output channel (MatMul weights are in × out: axis 1)
    q, scale = per_channel_int8(weight, axis=1)
    assert q.dtype == np.int8 and scale.shape == (1, 32)
    error = np.abs(q * scale - weight)
    assert error[:, 3].max() <= scale[0, 3] / 2 + 1e-7
    others = np.delete(error, 3, axis=1)
    assert others.max() < 0.01 * 0.05  # a per-tensor scale would set the step at the outlier's 1/127
    q_tensor_step = np.abs(weight).max() / 127
    assert others.max() < q_tensor_step / 10


def test_tokenizer_files_match_the_runtime_wheel(tmp_path):
    import base64

    from lora_training.export.runtimes import read_tokenizer_bin
    from lora_training.export.tokenizer_files import write_tokenizer_files
    from lora_training.models.embedded import build_processor, source_graphs, tokenizer_json

    pytest.importorskip("moonshine_onnx")
    shipped = source_graphs()[0].parent / "tokenizer.bin"
    if not shipped.is_file():
        pytest.skip("moonshine-cpp wheel not installed")
    write_tokenizer_files(build_processor(tokenizer_json()).tokenizer, tmp_path)
    assert (tmp_path / "tokenizer.bin").read_bytes() == shipped.read_bytes()
    tokens = read_tokenizer_bin(tmp_path / "tokenizer.bin")
    lines = (tmp_path / "tokens.txt").read_text().splitlines()
    assert len(lines) == len(tokens) == 32000
    assert [base64.b64decode(line.split()[0]) for line in lines[:300]] == tokens[:300]
    assert tokens[3] == b"\x00" and tokens[260].decode() == "\u2581t"  # byte token; a word-start piece


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir, tiny_manifests):
    """OUTPUTS/tiny with config.json and a best_adapter/ (an adapter far from zero, not trained)."""
    from lora_training.models.adapters import base_fingerprint, save_adapter

    train, evals = tiny_manifests
    outputs = tmp_path_factory.mktemp("outputs")
    run = outputs / "tiny"
    run.mkdir()
    ExperimentConfig(model_id=str(tiny_model_dir), train_manifest=str(train), eval_manifest=str(evals),
                     num_threads=1, device="cpu").save(run / "config.json")
    peft_model, _ = _adapted(tiny_model_dir, use_dora=False, sites="decoder")
    save_adapter(peft_model, run / "best_adapter", base_model=str(tiny_model_dir),
                 fingerprint=base_fingerprint(peft_model.get_base_model()), info={"step": 7})
    return outputs


def test_export_cli_writes_the_folder_and_refuses_to_overwrite(tiny_run, capsys):
    argv = ["export", "tiny", "--outputs", str(tiny_run), "--verify", "3", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["adapter"]["step"] == 7 and result["base_model"].endswith("model")
    assert result["verification"]["clips"] == 3
    provenance = json.loads((tiny_run / "tiny" / "export" / "provenance.json").read_text())
    assert provenance["files"] == result["files"] and provenance["quantization"]["weights"] == "int8"
    before = (tiny_run / "tiny" / "export" / "decoder_model_merged.ort").stat().st_mtime_ns
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "export exists" in err and "--overwrite" in err and "\n" not in err
    assert (tiny_run / "tiny" / "export" / "decoder_model_merged.ort").stat().st_mtime_ns == before
    assert main([*argv, "--overwrite", "--quantize", "none"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["quantization"]["weights"] == "float32"
    assert result["verification"]["identical"] == 3  # float graphs: the same text as PyTorch


def test_evaluate_scores_the_export_in_a_runtime_like_an_adapter(tiny_run, capsys):
    """`evaluate NAME --runtime onnxruntime` and `--export-dir ... --runtime torch` agree on the float export."""
    if not (tiny_run / "tiny" / "export").is_dir():
        assert main(["export", "tiny", "--outputs", str(tiny_run), "--quantize", "none", "--verify", "0"]) == 0
    capsys.readouterr()
    code = main(["evaluate", "tiny", "--outputs", str(tiny_run), "--runtime", "onnxruntime", "--safety", "none",
                 "--no-progress", "--json"])
    runtime = json.loads(capsys.readouterr().out)
    assert code == 0, runtime["status"]
    assert runtime["model"]["export"]["runtime"] == "onnxruntime"
    assert (tiny_run / "tiny" / "export" / "eval_results_onnxruntime.json").is_file()
    config = json.loads((tiny_run / "tiny" / "config.json").read_text())
    main(["transcribe", "--export-dir", str(tiny_run / "tiny" / "export"), "--runtime", "torch",
          "--manifest", config["eval_manifest"], "--no-progress", "--json"])
    torch_result = json.loads(capsys.readouterr().out)
    assert [u["adapter"]["hyp"] for u in runtime["utterances"]] == [u["adapter"]["hyp"] for u in torch_result["utterances"]]


def test_export_of_a_run_without_adapter_is_one_line_error(tmp_path, tiny_model_dir, tiny_manifests, capsys):
    train, evals = tiny_manifests
    (tmp_path / "empty").mkdir()
    ExperimentConfig(model_id=str(tiny_model_dir), train_manifest=str(train),
                     eval_manifest=str(evals)).save(tmp_path / "empty" / "config.json")
    assert main(["export", "empty", "--outputs", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no adapter" in err and "\n" not in err


def test_export_refuses_a_missing_device_before_any_work(tiny_run, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert main(["export", "tiny", "--outputs", str(tiny_run), "--out", str(tiny_run / "mps"), "--device", "mps"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: device mps: not available") and "\n" not in err
    assert not (tiny_run / "mps").exists()

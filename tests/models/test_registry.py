"""Model references on a tiny random Moonshine: folders round-trip, hub failures and bad names are one line."""

import json

import pytest

from lora_training.errors import ModelError
from lora_training.models.registry import (
    MIN_NEW_TOKENS,
    check_model,
    describe_reference,
    max_new_tokens_for,
    resolve_model,
)
from lora_training.testing.factories import write_tone


def test_tiny_folder_resolves_to_the_saved_weights(tiny_model_dir):
    import torch

    from lora_training.testing.tiny import tiny_moonshine

    model, processor = resolve_model(str(tiny_model_dir))
    reference, _ = tiny_moonshine(seed=0)
    assert model.config.hidden_size == 32 and not model.training
    saved = model.state_dict()
    assert all(torch.equal(saved[k], v) for k, v in reference.state_dict().items())
    assert processor.tokenizer.decode([1, 18274, 1898, 2], skip_special_tokens=True) == "Ever tried"
    assert processor.feature_extractor.sampling_rate == 16000
    assert describe_reference(str(tiny_model_dir)) == str(tiny_model_dir.resolve())


def test_check_model_on_a_folder_reports_every_field(tiny_model_dir, tmp_path):
    clip = write_tone(tmp_path / "tone.wav", seconds=0.6)
    result = check_model(str(tiny_model_dir), audio=clip)
    assert set(result) == {
        "model", "resolved", "load_seconds", "audio", "audio_seconds", "transcript", "decode_seconds"
    }
    assert result["resolved"] == str(tiny_model_dir.resolve())
    assert result["audio_seconds"] == pytest.approx(0.6)
    assert isinstance(result["transcript"], str)
    json.dumps(result)


def test_hub_id_offline_is_one_line_pointing_to_the_embedded_model(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import
    with pytest.raises(ModelError) as e:
        resolve_model("lora-training-tests/no-such-model")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("model lora-training-tests/no-such-model: cannot load from the Hugging Face hub")
    assert "--model-id embedded:moonshine-base" in message
    assert describe_reference("lora-training-tests/no-such-model") == "hub:lora-training-tests/no-such-model"


@pytest.mark.parametrize("call", [resolve_model, describe_reference])
def test_unknown_embedded_name_lists_the_known_ones(call):
    with pytest.raises(ModelError, match=r"unknown embedded model, expected one of embedded:moonshine-base, got 'tiny'"):
        call("embedded:tiny")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: str(tmp / "missing"), "folder not found"),
        (lambda tmp: str(tmp), "not a save_pretrained folder"),
        (lambda tmp: _write_config(tmp, {"model_type": "whisper"}), "expected model_type 'moonshine', got 'whisper'"),
    ],
)
def test_bad_local_references_fail_before_loading(tmp_path, make, message):
    with pytest.raises(ModelError, match=message):
        resolve_model(make(tmp_path))


def _write_config(folder, config):
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


@pytest.mark.parametrize(
    "seconds, expected",
    [
        (0.3, MIN_NEW_TOKENS),  # short clips keep a floor
        (1.0, MIN_NEW_TOKENS),
        (1.25, 13),  # 10 tokens per second, rounded up
        (10.0, 100),
        (19.0, 190),
        (20.0, 193),  # 200 would exceed the 194 positions minus the start token
        (600.0, 193),
    ],
)
def test_max_new_tokens_follows_duration_within_the_positions(seconds, expected):
    assert max_new_tokens_for(seconds) == expected


def test_max_new_tokens_respects_a_smaller_model():
    assert max_new_tokens_for(30.0, max_positions=64) == 63


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan")])
def test_max_new_tokens_rejects_non_positive_durations(seconds):
    with pytest.raises(ModelError, match="expected > 0 s"):
        max_new_tokens_for(seconds)

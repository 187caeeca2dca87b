"""ExperimentConfig round trip and validation; batching and padding."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from lora_training.config import ExperimentConfig, sites_text
from lora_training.errors import ConfigError
from lora_training.training.collate import IGNORE_INDEX, bucketed_batches, pad_audio, pad_labels


def test_config_round_trip(tmp_path):
    cfg = ExperimentConfig(max_steps=7, lr=1e-4, use_dora=True, adapter_sites="both", target_modules=["q_proj"])
    cfg.save(tmp_path / "config.json")
    assert ExperimentConfig.load(tmp_path / "config.json") == cfg


def test_a_config_saved_before_encoder_layers_resumes_with_every_encoder_layer(tmp_path):
    cfg = ExperimentConfig(adapter_sites="both", encoder_layers=2)
    saved = cfg.to_dict()
    del saved["encoder_layers"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = ExperimentConfig.load(tmp_path / "config.json")
    assert loaded.encoder_layers == 0 and sites_text(loaded.to_dict()) == "both"
    assert sites_text(cfg.to_dict()) == "both (top 2 encoder layers)"
    assert sites_text({**cfg.to_dict(), "adapter_sites": "decoder"}) == "decoder"


def test_a_config_saved_before_the_rewrite_resumes_decoding_its_evals_as_it_did(tmp_path):
    """A resumed run must choose as the uninterrupted one would: evals keep the decoder's text."""
    saved = ExperimentConfig(bias_vocabulary="v.txt").to_dict()
    assert saved["rewrite_spoken"] is True
    del saved["rewrite_spoken"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert ExperimentConfig.load(tmp_path / "config.json").rewrite_spoken is False


def test_unknown_key_in_saved_config_is_an_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"max_steps": 5, "learning_rate": 0.1}')
    with pytest.raises(ConfigError, match="unknown key.*learning_rate"):
        ExperimentConfig.load(path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_steps": 0}, "max_steps: expected a positive integer, got 0"),
        ({"lr": 3.0}, "lr: expected a number in (0, 1)"),
        ({"adapter_sites": "middle"}, "adapter_sites: expected one of decoder, encoder, both, got 'middle'"),
        ({"lora_dropout": 1.0}, "lora_dropout: expected a number in [0, 1)"),
        ({"target_modules": []}, "target_modules: expected a non-empty list"),
        ({"dev_fraction": 0.0}, "dev_fraction: expected a number in (0, 0.5], e.g. 0.1, got 0.0"),
        ({"safety_in_loop": -1}, "safety_in_loop: expected an integer >= 0 (0: off), got -1"),
        ({"encoder_layers": -2}, "encoder_layers: expected an integer >= 0 (0: every encoder layer), got -2"),
    ],
)
def test_config_errors_name_field_value_and_fix(kwargs, message):
    with pytest.raises(ConfigError) as info:
        ExperimentConfig(**kwargs)
    assert message in str(info.value)


def test_config_types_follow_the_annotations(tmp_path):
    """An int is a number, None suits an optional field; a bool is not an int, text is not a number."""
    ExperimentConfig(weight_decay=0, lr=1e-3, replay_manifest=None, vocabulary=None)
    path = tmp_path / "config.json"
    path.write_text('{"max_steps": true, "lora_dropout": "0.1", "vocabulary": 3}')
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.load(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    for part in ("max_steps: expected an integer, got True", "lora_dropout: expected a finite number, got '0.1'",
                 "vocabulary: expected a string or null, got 3"):
        assert part in text


def test_all_config_errors_reported_together():
    with pytest.raises(ConfigError) as info:
        ExperimentConfig(max_steps=-1, batch_size=0, device="tpu")
    text = str(info.value)
    assert "max_steps" in text and "batch_size" in text and "device" in text


def test_bucketed_batches_cover_every_index_once_and_group_lengths():
    lengths = [random.Random(1).randint(1000, 80000) for _ in range(200)]
    batches = bucketed_batches(lengths, 8, random.Random(0), bucket_batches=4)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(200))
    assert bucketed_batches(lengths, 8, random.Random(0)) == bucketed_batches(lengths, 8, random.Random(0))
    assert bucketed_batches(lengths, 8, random.Random(0)) != bucketed_batches(lengths, 8, random.Random(1))


def test_bucketing_cuts_padding_against_random_batches():
    rng = random.Random(3)
    lengths = [rng.randint(5000, 300000) for _ in range(256)]
    bucketed = bucketed_batches(lengths, 8, random.Random(0))
    order = list(range(256))
    random.Random(0).shuffle(order)
    plain = [order[i : i + 8] for i in range(0, 256, 8)]

    def waste(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    assert waste(bucketed) < 0.2 * waste(plain)


def test_pad_labels_and_audio():
    labels = pad_labels([[5, 6, 2], [7, 2]])
    assert labels.tolist() == [[5, 6, 2], [7, 2, IGNORE_INDEX]]
    a = np.ones(3, dtype=np.float32)
    a.flags.writeable = False
    values, mask = pad_audio([a, np.full(5, 0.5, dtype=np.float32)])
    assert values.shape == (2, 5) and mask.tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    assert values[0, 3:].abs().sum() == 0


def test_none_in_an_optional_path_field_means_off():
    """`--replay-manifest none` (the help text's word for off) is None, not a file called none."""
    from lora_training.config import ExperimentConfig

    cfg = ExperimentConfig(replay_manifest="none", dev_manifest="None", safety_manifest=" none ").with_absolute_paths()
    assert (cfg.replay_manifest, cfg.dev_manifest, cfg.safety_manifest) == (None, None, None)

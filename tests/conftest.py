"""Shared fixtures: a tiny random Moonshine saved as a local model folder, and small manifests."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from lora_training.testing.tiny import save_tiny_moonshine

    return save_tiny_moonshine(tmp_path_factory.mktemp("tiny_model") / "model")


@pytest.fixture(scope="session")
def tiny_manifests(tmp_path_factory):
    """Train/eval manifests of short tones with jargon-bearing texts (tiny models need no real speech)."""
    from lora_training.testing.factories import make_manifest

    root = tmp_path_factory.mktemp("tiny_data")
    texts = ["run kubectl apply", "the WER dropped", "email dev@example.com", "open __init__.py",
             "push to main", "merge the branch", "restart nginx now", "check the logs"]
    terms = [["kubectl"], ["WER"], ["dev@example.com"], ["__init__.py"], None, None, ["nginx"], None]
    train = make_manifest(root / "train", 8, texts=texts, terms=terms, name="train.jsonl", seconds=0.6)
    # The same terms in other sentences and other clips: run-experiment refuses an eval row that trains.
    eval_texts = ["apply it with kubectl", "our WER went up", "write to dev@example.com"]
    evals = make_manifest(root / "eval", 3, texts=eval_texts, terms=terms[:3], name="eval.jsonl", seconds=0.6,
                          base_freq=700.0)
    return train, evals

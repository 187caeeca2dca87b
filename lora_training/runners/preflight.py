"""Cheap checks before a run is spawned: a run that says "started" and then fails after the model
has loaded, one problem at a time, costs minutes per typo. Everything a user can get wrong in the
inputs is read here (manifests with every clip's audio header, the vocabulary, a local model
folder, the batch size against the data) and reported in one error. No torch is imported.
"""

from __future__ import annotations

from lora_training.config import ExperimentConfig
from lora_training.errors import LoraTrainingError, ModelError

MANIFEST_FIELDS = ("train_manifest", "eval_manifest", "replay_manifest")


def preflight_problems(cfg: ExperimentConfig) -> list[str]:
    """Every problem found, each as `<where>: <what>, expected X, got Y`."""
    from lora_training.data.manifest import validate_manifests
    from lora_training.data.vocabulary import VocabularyError, load_vocabulary
    from lora_training.models.registry import describe_reference

    problems: list[str] = []
    fields = [name for name in MANIFEST_FIELDS if getattr(cfg, name)]
    results = dict(zip(fields, validate_manifests([getattr(cfg, name) for name in fields])))
    for result in results.values():
        problems += result["problems"]
    if cfg.vocabulary:
        try:
            load_vocabulary(cfg.vocabulary)
        except VocabularyError as e:
            problems += e.problems
        except LoraTrainingError as e:
            problems.append(str(e))
    try:
        describe_reference(cfg.model_id)  # a folder's config.json; a hub id needs the network, so it waits
    except ModelError as e:
        problems.append(str(e))
    train = results.get("train_manifest")
    if train and train["ok"] and cfg.batch_size > train["utterances"]:
        problems.append(f"batch_size: expected at most the {train['utterances']} utterances of {cfg.train_manifest}, "
                        f"got {cfg.batch_size}; lower --batch-size or add recordings")
    return problems


def preflight(cfg: ExperimentConfig, name: str) -> None:
    """Raise one LoraTrainingError listing every problem, or return when there is none."""
    problems = preflight_problems(cfg)
    if len(problems) == 1:
        raise LoraTrainingError(problems[0])
    if problems:
        raise LoraTrainingError("\n  ".join([f"{name}: {len(problems)} problems, expected none before starting:",
                                             *problems]))

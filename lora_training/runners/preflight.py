"""Cheap checks before a run is spawned: a run that says "started" and then fails after the model
has loaded, one problem at a time, costs minutes per typo. Everything a user can get wrong in the
inputs is read here (manifests with every clip's audio header, the vocabulary, a local model
folder, the batch size against the data) and reported in one error. No torch is imported.
"""

from __future__ import annotations

import dataclasses
import os

from lora_training.config import ExperimentConfig
from lora_training.errors import AudioError, LoraTrainingError, ManifestError, ModelError

MANIFEST_FIELDS = ("train_manifest", "eval_manifest", "replay_manifest", "dev_manifest", "safety_manifest",
                   "corrections_manifest")
# A set that decides or judges must not be one that plays another part (`field`, `must not be`, `why`).
SEPARATE = (("dev_manifest", "eval_manifest", "choices read the dev set, the verdict reads the eval set"),
            ("safety_manifest", "replay_manifest", "a safety score on clips the adapter trains on hides the damage"))
# Training rows are checked against each held-out set: one sentence or clip on both sides turns
# its score into a memory test (data/overlap.py says what "the same" means).
TRAINING_FIELDS = ("train_manifest", "replay_manifest", "corrections_manifest")
HELD_OUT_FIELDS = {"eval": "eval_manifest", "dev": "dev_manifest"}


def with_replay_resolved(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config with the replay manifest the run will read: `builtin` as its path, None when off."""
    from lora_training.evaluation.safety import replay_source

    replay = replay_source(cfg.replay_manifest)[0] if cfg.replay_ratio > 0 else None
    return dataclasses.replace(cfg, replay_manifest=replay)


def preflight_problems(cfg: ExperimentConfig) -> list[str]:
    """Every problem found, each as `<where>: <what>, expected X, got Y`."""
    cfg = with_replay_resolved(cfg)
    from lora_training.data.manifest import validate_manifests
    from lora_training.data.vocabulary import VocabularyError, load_vocabulary
    from lora_training.models.registry import describe_reference

    problems: list[str] = []
    fields = [name for name in MANIFEST_FIELDS if getattr(cfg, name)]
    results = dict(zip(fields, validate_manifests([getattr(cfg, name) for name in fields])))
    for result in results.values():
        problems += result["problems"]
    for vocabulary in {v for v in (cfg.vocabulary, cfg.bias_vocabulary) if v}:
        try:
            load_vocabulary(vocabulary)
        except VocabularyError as e:
            problems += e.problems
        except LoraTrainingError as e:
            problems.append(str(e))
    try:
        describe_reference(cfg.model_id)  # a folder's config.json; a hub id needs the network, so it waits
    except ModelError as e:
        problems.append(str(e))
    train = results.get("train_manifest")
    if train and train["ok"]:
        problems += _batch_problems(cfg, train["utterances"])
    for field, other, why in SEPARATE:
        if getattr(cfg, field) and getattr(cfg, other) and _same_file(getattr(cfg, field), getattr(cfg, other)):
            problems.append(f"{field}: expected a manifest other than the {other.split('_')[0]} manifest ({why}), "
                            f"got the same file {getattr(cfg, field)}")
    return problems


def _batch_problems(cfg: ExperimentConfig, utterances: int) -> list[str]:
    """A batch must fit the rows left to train on: without --dev-manifest the trainer carves its
    dev set out of the training manifest, so carve it here the same way (seeded, no audio read)."""
    from lora_training.data.manifest import load_manifest
    from lora_training.training.dev_split import carve_dev

    left, what = utterances, f"the {utterances} utterances of {cfg.train_manifest}"
    if not cfg.dev_manifest:
        try:
            carve = carve_dev(load_manifest(cfg.train_manifest, check_audio=False), fraction=cfg.dev_fraction,
                              seed=cfg.seed, where=cfg.train_manifest)
        except LoraTrainingError as e:
            return [str(e)]
        left = len(carve.train)
        what = f"{what} less the {utterances - len(carve.train)} held out for the dev set ({left} left)"
    if cfg.batch_size > left:
        return [f"batch_size: expected at most {what}, got {cfg.batch_size}; lower --batch-size or add recordings"]
    return []


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one is missing: the manifest check names it
        return os.path.abspath(a) == os.path.abspath(b)


def preflight(cfg: ExperimentConfig, name: str) -> dict[str, int]:
    """Raise one LoraTrainingError listing every problem; else return the train/held-out overlap
    counts (`{"eval": 0}`), which the run records in state.json so its report can state them."""
    problems = preflight_problems(cfg)
    overlap, leaks = held_out_overlap(cfg)
    problems += leaks
    if len(problems) == 1:
        raise LoraTrainingError(problems[0])
    if problems:
        raise LoraTrainingError("\n  ".join([f"{name}: {len(problems)} problems, expected none before starting:",
                                             *problems]))
    return overlap


def held_out_overlap(cfg: ExperimentConfig) -> tuple[dict[str, int], list[str]]:
    """Train, replay and correction rows sharing normalised text or audio with each held-out manifest (eval, and
    dev when the config has one), counted per set, and the refusals unless `allow_overlap`.

    Manifests or clips that do not load are skipped here: the manifest check above names them, and
    the run is refused for them anyway.
    """
    from lora_training.data.overlap import find_overlaps, overlap_problem, overlapping_rows, read_rows

    cfg = with_replay_resolved(cfg)
    counts: dict[str, int] = {}
    problems: list[str] = []
    try:
        training = read_rows([path for field in TRAINING_FIELDS if (path := getattr(cfg, field))])
    except ManifestError:
        return counts, problems
    for kind, field in HELD_OUT_FIELDS.items():
        if not (path := getattr(cfg, field, None)):
            continue
        try:
            overlaps = find_overlaps(training, read_rows([path]))
        except (ManifestError, AudioError):
            continue
        counts[kind] = overlapping_rows(overlaps)
        if overlaps and not cfg.allow_overlap:
            problems.append(overlap_problem(
                f"train/{kind} overlap", overlaps, path,
                "keep them out of training (split-dataset, mix --exclude), or pass --allow-overlap to train anyway"))
    return counts, problems

"""The quality benchmark's data, built once per workdir: a simulated user, their recordings and
test set, and the synthetic speech the `ours`/`seed002` variants add.

The user is a TTS voice the synthetic stage never uses (festival's `cmu_us_slt_arctic_hts` when
the festival backend is registered, else espeak-ng `en-us+m3` as in the demo). Their clips get
seeded "recording conditions" (`USER_CONDITIONS`: tempo, a room, microphone noise), drawn per clip,
with one generator for the training recordings and a fresh one for the test set. Rows are marked
`source="real"` with a speaker name, as `runners/demo.py` does.

Held out, and checked by the library on the way (synth `exclude`, mix `exclude`, run-experiment's
overlap refusal):
- a seeded share of the vocabulary (`synth.plan.choose_holdout`, expanded by the plan to terms that
  contain one) is in none of the user's *training* recordings; the test set and the synthetic
  speech may hold every term, since teaching words the user never recorded is what synthetic
  data is for. "Seen"/"unseen" in the table are relative to the user's recordings;
- no test sentence is a training sentence (the test synthesis excludes the training manifest),
  and neither synthesis nor mix may use a test sentence.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lora_training.errors import ConfigError

ESPEAK_USER = ("espeak", "en-us+m3")
FESTIVAL_USER = ("festival", "cmu_us_slt_arctic_hts")
# Files of data/ that the variants read.
FILES = ("vocabulary.txt", "holdout_terms.txt", "user_train.jsonl", "user_test.jsonl", "synthetic_train.jsonl",
         "mixed_train.jsonl")
ABOUT = "about.json"


def default_user() -> tuple[str, str]:
    """(backend, voice) of the simulated user: festival's HTS voice when that backend exists."""
    from lora_training.synth.tts import BACKENDS

    return FESTIVAL_USER if FESTIVAL_USER[0] in BACKENDS else ESPEAK_USER


def user_conditions():
    """The user's microphone and rooms. No speed perturbation: it shifts pitch, i.e. the voice,
    and the user keeps theirs. Every clip has a room (Freeverb 0.1-0.5: a small office to a living
    room) and noise at 15-30 dB SNR (a laptop fan to a quiet room); half are read 10% faster or slower."""
    from lora_training.data.augment import AugmentConfig

    return AugmentConfig(speed_probability=0.0, tempo_probability=0.5, tempo_range=(0.9, 1.1),
                         reverb_probability=1.0, room_size_range=(0.1, 0.5), wet_level_range=(0.05, 0.25),
                         noise_probability=1.0, snr_db_range=(15.0, 30.0))


@dataclass(frozen=True)
class DataSpec:
    """Everything that shapes the data; a workdir's data is reused only for the same spec."""

    user_backend: str
    user_voice: str
    train_sentences: int  # the user's training recordings
    test_sentences: int  # the user's test set (fresh conditions)
    train_min_per_term: int  # each term the user may say appears in at least this many recordings
    test_min_per_term: int
    holdout_fraction: float  # share of the vocabulary in none of the user's training recordings
    seed: int

    def check(self) -> None:
        problems = []
        if not 0 <= self.holdout_fraction < 1:
            problems.append(f"--holdout-fraction: expected a share in [0, 1), got {self.holdout_fraction}")
        for name in ("train_sentences", "test_sentences"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: expected at least 1 sentence, got {getattr(self, name)}")
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass
class Data:
    folder: Path
    spec: DataSpec
    about: dict  # what about.json holds: the spec, counts, the held-out and unseen terms, seconds

    def path(self, name: str) -> str:
        return str(self.folder / name)


def _say(text: str) -> None:
    print(f"quality: {text}", file=sys.stderr, flush=True)


def build_user_data(folder: Path, spec: DataSpec, *, say: Callable[[str], None] = _say) -> Data:
    """The user's vocabulary, held-out terms, training recordings and test set (reused when built)."""
    spec.check()
    about_path = folder / ABOUT
    if about_path.is_file():
        about = json.loads(about_path.read_text(encoding="utf-8"))
        saved = about.get("spec")
        if saved != dataclasses.asdict(spec):
            changed = sorted(k for k in dataclasses.asdict(spec) if (saved or {}).get(k) != getattr(spec, k))
            raise ConfigError(f"{about_path}: data built with other settings ({', '.join(changed)}), expected the "
                              f"same as this run's; pass another --workdir (data is built once per workdir)")
        say(f"data: reusing {folder} ({about['train']['rows']} training recordings, {about['test']['rows']} test "
            f"recordings, {len(about['unseen_terms'])} unseen terms)")
        return Data(folder, spec, about)
    return _build(folder, spec, say)


def _build(folder: Path, spec: DataSpec, say: Callable[[str], None]) -> Data:
    from lora_training.data.manifest import load_manifest
    from lora_training.data.vocabulary import example_vocabulary_path, load_vocabulary
    from lora_training.synth.plan import choose_holdout
    from lora_training.training.evals import seen_terms

    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    vocabulary = folder / "vocabulary.txt"
    shutil.copyfile(example_vocabulary_path(), vocabulary)
    terms = load_vocabulary(vocabulary)
    written = terms.written_forms()
    chosen = choose_holdout(terms, round(spec.holdout_fraction * len(written)), spec.seed)
    (folder / "holdout_terms.txt").write_text("".join(f"{t}\n" for t in chosen), encoding="utf-8")
    speaker = f"simulated user ({spec.user_backend} {spec.user_voice})"
    say(f"data: the user ({speaker}) records {spec.train_sentences} training sentences without "
        f"{len(chosen)} held-out terms: {', '.join(chosen)}")
    train = folder / "user_train.jsonl"
    _record(folder / "clean_train.jsonl", train, spec, speaker, conditions_seed=1000 + spec.seed,
            vocabulary=str(vocabulary), count=spec.train_sentences, min_per_term=spec.train_min_per_term,
            seed=2024 + spec.seed, exclude_terms=str(folder / "holdout_terms.txt"))
    say(f"data: the user records {spec.test_sentences} test sentences (every term, fresh conditions)")
    test = folder / "user_test.jsonl"
    _record(folder / "clean_test.jsonl", test, spec, speaker, conditions_seed=2000 + spec.seed,
            vocabulary=str(vocabulary), count=spec.test_sentences, min_per_term=spec.test_min_per_term,
            seed=4048 + spec.seed, exclude=[str(train)])
    train_rows, test_rows = load_manifest(train), load_manifest(test)
    test_terms = sorted({t for u in test_rows for t in (u.terms or [])})
    # The trainer's own rule for "heard in training" (training/evals.py), on the user's recordings alone.
    recorded = seen_terms(train_rows, written + test_terms)
    about = {
        "spec": dataclasses.asdict(spec),
        "speaker": speaker,
        "conditions": dataclasses.asdict(user_conditions()),
        "held_out_terms": chosen,
        "recorded_terms": recorded,
        "unseen_terms": [t for t in written if t not in recorded],
        "train": _describe(train_rows),
        "test": {**_describe(test_rows), "terms": _term_counts(test_rows, recorded)},
        "seconds": {"user": round(time.perf_counter() - started, 1)},
    }
    (folder / ABOUT).write_text(json.dumps(about, indent=2) + "\n", encoding="utf-8")
    say(f"data: {about['train']['rows']} training recordings ({about['train']['words']} words), "
        f"{about['test']['rows']} test recordings ({about['test']['words']} words; term occurrences "
        f"{about['test']['terms']['seen']} seen, {about['test']['terms']['unseen']} unseen) "
        f"in {about['seconds']['user']:.0f}s")
    return Data(folder, spec, about)


def _record(clean: Path, output: Path, spec: DataSpec, speaker: str, *, conditions_seed: int, **synth) -> None:
    """The user "records" sentences: their voice (synthesis, no gate: people are not gated), then
    their rooms and microphone, with rows marked as real recordings."""
    import numpy as np

    from lora_training.data.audio import SAMPLE_RATE, load_audio, write_wav
    from lora_training.data.augment import augment
    from lora_training.data.manifest import load_manifest, save_manifest
    from lora_training.synth.synthesize import SynthConfig, synthesize_dataset

    synthesize_dataset(SynthConfig(output=str(clean), backend=spec.user_backend, voices=(spec.user_voice,),
                                   gate=False, **synth), progress=True)
    rng = np.random.default_rng(conditions_seed)
    conditions = user_conditions()
    audio_dir = output.with_name(f"{output.stem}_audio")
    rows = []
    for row in load_manifest(clean):
        samples = augment(load_audio(row.audio), rng, config=conditions)
        wav = write_wav(audio_dir / f"{row.id}.wav", samples)
        rows.append(dataclasses.replace(row, audio=str(wav), source="real", speaker=speaker,
                                        duration=round(len(samples) / SAMPLE_RATE, 3)))
    save_manifest(output, rows)


def _describe(rows) -> dict:
    from lora_training.data.normalize import normalize_text

    return {"rows": len(rows), "words": sum(len(normalize_text(u.text).split()) for u in rows),
            "seconds": round(sum(u.duration or 0.0 for u in rows), 1)}


def _term_counts(rows, recorded: list[str]) -> dict:
    occurrences = [t for u in rows for t in (u.terms or [])]
    return {"seen": sum(t in recorded for t in occurrences), "unseen": sum(t not in recorded for t in occurrences)}


# One recorded speaker behind voices of several engines (CMU ARCTIC's slt; the Kal diphones), so a
# user with one of them is kept out of synthetic data under every name.
SAME_SPEAKER = (("festival:cmu_us_slt_arctic_hts", "flite:slt"), ("festival:kal_diphone", "flite:kal", "flite:kal16"))


def excluded_voices(synth_backend: str, user_backend: str, user_voice: str) -> list[str]:
    """The user's voice as synthesis names it, so synthetic data never speaks in it (the demo's rule):
    `engine:voice` for the pooled `offline` backend, bare for a single engine; none when synthesis
    cannot reach it (another engine)."""
    bare = user_voice.partition(":")[2] if user_voice.startswith(f"{user_backend}:") else user_voice
    qualified = f"{user_backend}:{bare}"
    same = next((group for group in SAME_SPEAKER if qualified in group), (qualified,))
    if synth_backend == "offline":
        return list(same)
    return [name.partition(":")[2] for name in same if name.partition(":")[0] == synth_backend]


def build_synthetic(data: Data, count: int, min_per_term: int, *, say: Callable[[str], None] = _say) -> float:
    """synthetic_train.jsonl and mixed_train.jsonl through the toolkit's own synth and mix stages, with
    their defaults (backend, voices, gate) except what keeps the user's voice and the test set out.
    Skipped when both exist; returns the seconds spent (0 when skipped)."""
    from lora_training.runners.pipeline import Pipeline, Stage, run_pipeline
    from lora_training.synth.synthesize import SynthConfig

    synthetic, mixed = data.path("synthetic_train.jsonl"), data.path("mixed_train.jsonl")
    test = data.path("user_test.jsonl")
    about = data.about.get("synthetic")
    if about and (about["count"], about["min_per_term"]) != (count, min_per_term):
        raise ConfigError(f"{data.folder / ABOUT}: synthetic data built with count {about['count']}, min_per_term "
                          f"{about['min_per_term']}, expected {count}, {min_per_term}; pass another --workdir")
    if about and Path(synthetic).is_file() and Path(mixed).is_file():
        say(f"data: reusing {synthetic} and {mixed}")
        return 0.0
    synth = {"vocabulary": data.path("vocabulary.txt"), "count": count, "min_per_term": min_per_term,
             "output": synthetic, "exclude": [test]}
    excluded = excluded_voices(SynthConfig.backend, data.spec.user_backend, data.spec.user_voice)
    if excluded:
        synth["exclude_voices"] = excluded
    stages = [Stage("synth", "synth", synth),
              Stage("mix", "mix", {"inputs": [data.path("user_train.jsonl"), synthetic], "output": mixed,
                                   "exclude": [test]})]
    started = time.perf_counter()
    run_pipeline(Pipeline(name="quality_data", path=__file__, outputs=str(data.folder.parent), stages=stages),
                 write=say)
    seconds = round(time.perf_counter() - started, 1)
    data.about["synthetic"] = {"count": count, "min_per_term": min_per_term, "backend": SynthConfig.backend,
                               "seconds": seconds}
    (data.folder / ABOUT).write_text(json.dumps(data.about, indent=2) + "\n", encoding="utf-8")
    return seconds

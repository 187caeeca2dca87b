"""Synthetic jargon speech: sentences → TTS in worker processes → quality gate → manifest.

The run is resumable: a clip's id is a hash of everything that shapes its audio (text, spoken
form, backend, augmentation, seed), the output manifest is checkpointed every few seconds and
on exit (Ctrl-C included), and a re-run keeps every listed clip whose file is still a valid
16 kHz clip. Sentences the gate dropped are tried again on a re-run. A run that would drop
clips the manifest lists (a smaller `--count`, another seed) is refused unless `--overwrite`,
and then the summary counts what was removed. Which sentences are spoken, and what is kept out of
them (held-out manifests' sentences, held-out terms), is `plan.py`'s.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import signal
import statistics
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lora_training.atomic import check_outputs
from lora_training.data.audio import MAX_SECONDS, MIN_SECONDS, SAMPLE_RATE, write_wav
from lora_training.data.manifest import Utterance, load_manifest, save_manifest, total_seconds
from lora_training.defaults import default_model, model_help
from lora_training.errors import ConfigError, LoraTrainingError
from lora_training.options import option
from lora_training.synth import gate as gates
from lora_training.data.augment import augment
from lora_training.synth.plan import plan_sentences
from lora_training.synth.sentences import GeneratedSentence
from lora_training.synth.summary import SynthSummary
from lora_training.synth.tts import BACKENDS, BackendOptions, Clip, TtsBackend

SILENCE_SECONDS = (0.25, 0.5)
# A checkpoint rewrites the whole manifest; every few seconds bounds both the work lost to a
# kill and the rewriting (500 clips saved one by one would write ~25 MB).
CHECKPOINT_SECONDS = 5.0
# Dropped sentences shown in the summary, so a user sees what the gate refused and why.
MAX_DROPPED_EXAMPLES = 10


@dataclass
class SynthConfig:
    vocabulary: str | None = option(None, "lexicon file (written | spoken); required unless --sentences")
    sentences: str | None = option(None, "speak these sentences (one per line) instead of generating them")
    count: int = option(500, "sentences to generate (ignored with --sentences)")
    min_per_term: int = option(3, "every term appears in at least this many sentences")
    output: str = option("data/synthetic_train.jsonl", "manifest to write; clips go to <stem>_audio/ beside it")
    backend: str = option("offline", "TTS backend; offline: the voices of every installed espeak-ng, flite and "
                                     "festival", choices=tuple(BACKENDS))
    reference_manifest: str | None = option(None, "recordings of the user whose voice a cloning backend "
                                                  "(f5-tts, f5-tts-mlx, pocket-tts) clones")
    exclude_voices: tuple[str, ...] = option((), "voices never used: an espeak voice or language (en-us+m3, en-gb), "
                                                 "flite:NAME, festival:NAME, or an engine (flite) with offline",
                                           nargs="+", metavar="VOICE")
    voices: tuple[str, ...] = option((), "voices to use exclusively, named as for --exclude-voices (default: all)",
                                   nargs="+", metavar="VOICE")
    workers: int = option(2, "TTS worker processes (each voice-cloning worker loads its own model)")
    seed: int = option(0, "random seed: same seed, same sentences, voices and clips")
    augment: bool = option(False, "vary speed, tempo, room reverb and noise per clip")
    gate: bool = option(True, "transcribe every clip with a baseline model and regenerate bad ones",
                        flag="--no-gate")
    gate_model: str = option(default_model("gate"), model_help("gate", "model the gate listens with"))
    gate_max_cer: float = option(gates.DEFAULT_MAX_CER, "highest character error rate (letters only) against the "
                             "spoken text that a kept clip may have")
    gate_retries: int = option(gates.DEFAULT_RETRIES, "regenerations (new seed and voice) before a sentence is dropped")
    overwrite: bool = option(False, "drop the clips an existing --output lists that this run would not make again "
                                    "(a smaller --count, another --seed); without it such a run is refused")
    exclude: list[str] = option([], "held-out manifests (eval, dev, safety): no sentence whose normalised text is "
                                    "one of theirs is spoken (generated ones are replaced)", metavar="MANIFEST")
    holdout_terms: int = option(0, "keep N vocabulary terms (a choice fixed by --seed) out of every sentence, so "
                                   "evaluation can measure terms the adapter never heard", metavar="N")
    exclude_terms: str | None = option(None, "file of written forms, one per line, kept out of every sentence",
                                       metavar="FILE")

    def __post_init__(self) -> None:
        self.exclude_voices = tuple(self.exclude_voices)
        self.voices = tuple(self.voices)
        problems = []
        if self.vocabulary is None and self.sentences is None:
            problems.append("vocabulary: missing, expected --vocabulary FILE (or --sentences FILE), got neither")
        if self.count < 1:
            problems.append(f"count: expected at least 1 sentence, got {self.count}")
        if self.workers < 1:
            problems.append(f"workers: expected at least 1 process, got {self.workers}")
        if self.backend not in BACKENDS:
            problems.append(f"backend: unknown {self.backend!r}, expected one of {', '.join(BACKENDS)}")
        if not self.gate_max_cer > 0:
            problems.append(f"gate_max_cer: expected a CER above 0, got {self.gate_max_cer}")
        if self.gate_retries < 0:
            problems.append(f"gate_retries: expected 0 or more, got {self.gate_retries}")
        if self.holdout_terms < 0:
            problems.append(f"holdout_terms: expected 0 or more terms, got {self.holdout_terms}")
        if self.vocabulary is None and (self.holdout_terms or self.exclude_terms):
            problems.append("holdout_terms: holding terms out needs --vocabulary (the terms come from it), "
                            "got --sentences alone")
        if not self.output.endswith(".jsonl"):
            problems.append(f"output: expected a .jsonl manifest path, got {self.output}")
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass(frozen=True)
class Job:
    """One sentence to speak; `attempt` counts regenerations after the gate refused a clip."""

    index: int
    id: str  # hashes the seed too, so it alone seeds the clip's choices
    sentence: GeneratedSentence
    augment: bool
    attempt: int = 0

    def rng(self) -> random.Random:
        return random.Random(f"{self.id}/{self.attempt}")


def audio_dir_for(output: str | Path) -> Path:
    """`data/synthetic_train.jsonl` → `data/synthetic_train_audio/`."""
    output = Path(output)
    return output.with_name(f"{output.stem}_audio")


def synthesize_dataset(cfg: SynthConfig, *, gate=None, progress: bool = True) -> SynthSummary:
    """Write `cfg.output` and its clips; `gate` (tests) replaces the one built from `cfg`."""
    return SynthRun(cfg, gate=gate, progress=progress).run()


class SynthRun:
    """The recipe: setup() does every cheap check, then loads the gate model; run() streams
    clips from the workers through the gate in batches and checkpoints the manifest."""

    def __init__(self, cfg: SynthConfig, *, gate=None, progress: bool = True):
        self.cfg = cfg
        self.gate = gate
        self.progress = progress
        self.output = Path(cfg.output)
        self.audio_dir = audio_dir_for(cfg.output)
        self.backend: TtsBackend = BACKENDS[cfg.backend](
            BackendOptions(exclude_voices=cfg.exclude_voices, voices=cfg.voices,
                           reference_manifest=cfg.reference_manifest)
        )
        self.rows: dict[str, Utterance] = {}
        self.stale: list[Utterance] = []  # an earlier run's rows this run will not make again
        self.counts = Counter()
        self.kept_cers: list[float] = []
        self.dropped: list[dict] = []
        self.holdout_terms: list[str] = []
        self._saved_at = time.monotonic()

    def setup(self) -> list[Job]:
        inputs = {"vocabulary": self.cfg.vocabulary, "sentences": self.cfg.sentences,
                  "reference_manifest": self.cfg.reference_manifest, "exclude_terms": self.cfg.exclude_terms,
                  **{f"exclude[{i}]": path for i, path in enumerate(self.cfg.exclude)}}
        check_outputs({"output": self.output}, {name: path for name, path in inputs.items() if path is not None})
        plan = plan_sentences(self.cfg)
        sentences, self.holdout_terms, self.counts["excluded"] = plan.sentences, plan.holdout_terms, plan.excluded
        self.backend.check()
        fingerprint = "\n".join([self.backend.fingerprint(), f"augment={self.cfg.augment}", f"seed={self.cfg.seed}"])
        self.jobs = [
            Job(index=i, id=_clip_id(i, s, fingerprint), sentence=s, augment=self.cfg.augment)
            for i, s in enumerate(sentences)
        ]
        self.rows = self._resumable_rows()
        todo = [job for job in self.jobs if job.id not in self.rows]
        if todo and self.gate is None:
            self.gate = (
                gates.QualityGate(gates.model_transcriber(self.cfg.gate_model), max_cer=self.cfg.gate_max_cer,
                                  retries=self.cfg.gate_retries, model=self.cfg.gate_model,
                                  speaker=gates.speaker_check(getattr(self.backend, "references", ())))
                if self.cfg.gate else gates.OpenGate()
            )
        return todo

    def run(self) -> SynthSummary:
        start = time.perf_counter()
        todo = self.setup()
        self.counts["resumed"] = len(self.rows)
        try:
            if todo:
                self._generate(todo)
        finally:
            self._save()
            self._remove_stale()
        if not self.rows:
            raise LoraTrainingError(
                f"{self.output}: no clip kept, expected at least one of {len(self.jobs)} sentences to pass the "
                f"quality gate, got {self.counts['drop']} dropped (see the gate options)"
            )
        return self._summary(time.perf_counter() - start)

    def _resumable_rows(self) -> dict[str, Utterance]:
        """Rows of an earlier run of the same jobs whose clip is still a valid 16 kHz clip."""
        if not self.output.exists():
            return {}
        earlier = load_manifest(self.output, check_audio=False)
        foreign = [utt.id for utt in earlier if utt.source != "synthetic"]
        if foreign:
            raise ConfigError(
                f"{self.output}: holds non-synthetic utterances (e.g. {foreign[0]}), expected a synthetic manifest "
                "to resume or a new path, got one that synthesis would overwrite"
            )
        wanted = {job.id for job in self.jobs}
        self.stale = [utt for utt in earlier if utt.id not in wanted]
        if self.stale and not self.cfg.overwrite:
            raise ConfigError(
                f"{self.output}: holds {len(earlier)} clips, {len(self.stale)} of which this run would not make "
                f"again (e.g. {self.stale[0].id}), expected a run that keeps every listed clip, got "
                f"{len(self.jobs)} sentences (repeat the earlier --count and --seed, choose another --output, "
                "or pass --overwrite to remove them)"
            )
        return {
            utt.id: utt for utt in earlier
            if utt.id in wanted and Path(utt.audio) == self._clip_path(utt.id) and _valid_clip(utt.audio)
        }

    def _remove_stale(self) -> None:
        """After the manifest stopped listing them (--overwrite): delete the stale rows' clips,
        only those this toolkit named in its own audio folder."""
        for utt in self.stale:
            if Path(utt.audio) == self._clip_path(utt.id):
                Path(utt.audio).unlink(missing_ok=True)
        self.counts["removed"] = len(self.stale)
        self.stale = []

    def _clip_path(self, clip_id: str) -> Path:
        return Path(os.path.abspath(self.audio_dir / f"{clip_id}.wav"))

    def _generate(self, todo: list[Job]) -> None:
        from tqdm import tqdm

        bar = tqdm(total=len(self.jobs), initial=len(self.rows), unit="clip", desc="synth", disable=not self.progress)
        # spawn, not fork: the parent may hold torch threads (the gate model), which fork would copy mid-flight.
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(self.cfg.workers, len(todo)), mp_context=context,
                                   initializer=_init_worker, initargs=(self.backend,))
        pending: dict[Future, Job] = {}
        ready: list[tuple[Job, Clip]] = []
        try:
            for job in todo:
                pending[pool.submit(_render, job)] = job
            while pending or ready:
                if pending and len(ready) < self.gate.batch_size:
                    # Keep collecting while clips are still in flight: the gate transcribes in batches.
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    ready.extend((pending.pop(f), f.result()) for f in done)
                    continue
                batch, ready = ready[: self.gate.batch_size], ready[self.gate.batch_size :]
                retry = self._judge(batch)
                for job in retry:
                    pending[pool.submit(_render, job)] = job
                if time.monotonic() - self._saved_at > CHECKPOINT_SECONDS:
                    self._save()
                bar.update(len(batch) - len(retry))
                bar.set_postfix(kept=self.counts["keep"], regenerated=self.counts["regenerate"],
                                dropped=self.counts["drop"], refresh=False)
        finally:
            bar.close()
            pool.shutdown(wait=True, cancel_futures=True)

    def _judge(self, batch: list[tuple[Job, Clip]]) -> list[Job]:
        """Gate one batch: write kept clips, count the rest; returns the jobs to synthesize again."""
        verdicts = self.gate.check([job.sentence.spoken for job, _ in batch], [clip.samples for _, clip in batch],
                                   [job.attempt for job, _ in batch])
        retry = []
        for (job, clip), verdict in zip(batch, verdicts, strict=True):
            self.counts["synthesized"] += 1
            self.counts[verdict.decision] += 1
            if verdict.decision == "keep":
                self._keep(job, clip)
                if verdict.cer is not None:
                    self.kept_cers.append(verdict.cer)
            elif verdict.decision == "regenerate":
                retry.append(replace(job, attempt=job.attempt + 1))
            else:
                self.dropped.append({"id": job.id, "spoken": job.sentence.spoken, "transcript": verdict.transcript,
                                     "cer": round(verdict.cer, 3), "similarity": verdict.similarity})
        return retry

    def _keep(self, job: Job, clip: Clip) -> None:
        path = write_wav(self._clip_path(job.id), clip.samples)
        s = job.sentence
        self.rows[job.id] = Utterance(
            audio=str(path), text=s.text, id=job.id, duration=round(len(clip.samples) / SAMPLE_RATE, 3),
            source="synthetic", speaker=clip.speaker, spoken=s.spoken if s.spoken != s.text else None,
            terms=list(s.terms) or None,
        )

    def _save(self) -> None:
        """Rewrite the manifest with the clips kept so far, in sentence order."""
        rows = [self.rows[job.id] for job in self.jobs if job.id in self.rows]
        if rows:
            save_manifest(self.output, rows)
        else:  # an earlier run's manifest must not outlive its clips
            self.output.unlink(missing_ok=True)
        self._saved_at = time.monotonic()

    def _gate_info(self) -> dict | None:
        if self.gate is not None:
            return self.gate.describe()
        cfg = self.cfg  # every clip was resumed, so no gate was built
        return {"model": cfg.gate_model, "max_cer": cfg.gate_max_cer, "retries": cfg.gate_retries} if cfg.gate else None

    def _summary(self, seconds: float) -> SynthSummary:
        rows = [self.rows[job.id] for job in self.jobs if job.id in self.rows]
        uses = Counter(term for job in self.jobs for term in job.sentence.terms)
        kept_uses = Counter(term for utt in rows for term in (utt.terms or []))
        below = sorted(t for t in uses if kept_uses[t] < self.cfg.min_per_term)
        return SynthSummary(
            output=str(self.output),
            audio_dir=str(self.audio_dir),
            backend=self.cfg.backend,
            sentences=len(self.jobs),
            clips=len(rows),
            resumed=self.counts["resumed"],
            removed=self.counts["removed"],
            synthesized=self.counts["synthesized"],
            kept=self.counts["keep"],
            regenerated=self.counts["regenerate"],
            dropped=self.counts["drop"],
            hours=total_seconds(rows, read_audio=False) / 3600,
            seconds=round(seconds, 2),
            clips_per_second=round(self.counts["keep"] / seconds, 3) if seconds > 0 else 0.0,
            gate=self._gate_info(),
            gate_cer=(
                {"mean": round(statistics.fmean(self.kept_cers), 3), "max": round(max(self.kept_cers), 3)}
                if self.kept_cers else None
            ),
            terms={
                "count": len(uses),
                "min_per_term": self.cfg.min_per_term,
                "min_uses": min((kept_uses[t] for t in uses), default=0),
                "below_min": below,
            },
            dropped_examples=self.dropped[:MAX_DROPPED_EXAMPLES],
            exclude=list(self.cfg.exclude),
            excluded_sentences=self.counts["excluded"],
            holdout_terms=self.holdout_terms,
        )


def pad_silence(samples: np.ndarray, rng: random.Random) -> np.ndarray:
    """Surround speech with 0.25-0.5 s of silence, as a recording has.

    Moonshine ends its transcript at once on a clip that starts with speech: measured on 48
    espeak clips, 10 transcripts came back empty without padding, 1 with 0.3 s of it.
    """
    lead, tail = (np.zeros(round(rng.uniform(*SILENCE_SECONDS) * SAMPLE_RATE), np.float32) for _ in range(2))
    return np.concatenate([lead, samples.astype(np.float32), tail])


def _clip_id(index: int, sentence: GeneratedSentence, fingerprint: str) -> str:
    """Position for order and readability, content hash so a changed input never reuses a clip."""
    digest = hashlib.sha256("\n".join([sentence.text, sentence.spoken, fingerprint]).encode("utf-8")).hexdigest()
    return f"{index:05d}-{digest[:10]}"


def _valid_clip(path: str) -> bool:
    import soundfile as sf

    try:
        info = sf.info(path)
    except (OSError, RuntimeError, sf.SoundFileError):
        return False
    seconds = info.frames / info.samplerate
    return info.samplerate == SAMPLE_RATE and info.channels == 1 and MIN_SECONDS <= seconds <= MAX_SECONDS


_worker_backend: TtsBackend | None = None
_worker_loaded = False


def _init_worker(backend: TtsBackend) -> None:
    """Ctrl-C is the parent's to handle: it stops the pool and saves what was kept."""
    global _worker_backend
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_backend = backend


def _render(job: Job) -> Clip:
    """Worker side: load the backend on first use (so a load error reaches the parent with its
    message instead of breaking the pool), speak the sentence, augment it."""
    global _worker_loaded
    if not _worker_loaded:
        _worker_backend.load()
        _worker_loaded = True
    rng = job.rng()
    clip = _worker_backend.synthesize(job.sentence.spoken, rng)
    clip.samples = pad_silence(clip.samples, rng)
    if job.augment:
        clip.samples = augment(clip.samples, np.random.default_rng(rng.getrandbits(64)))
    return clip

"""Speaker-check threshold: how alike the voice encoder finds a clip and a voice profile when the
speaker is the same, another real person, or an offline TTS voice. Run by hand (not in CI);
~25 s on 2 cores.

    .venv/bin/python benchmarks/speaker_threshold.py [--espeak-voices 12] [--sentences 10]

Real speech is the built-in safety set (both halves): asterisk-allison (105 telephone prompts) and
librivox-austen (5 audiobook sentences). A profile is the mean embedding of 4 clips, as the gate's
profile is the mean of 4 references. "same speaker" scores each clip against a profile of 4
*other* clips of its speaker (the next 4 in manifest order); "other speaker" scores each clip
against the other speaker's profile of 4 clips; a TTS row scores synthetic clips of the real
clips' transcripts, in voices spread over the backend's table, against each real profile.
Prints one markdown table; the threshold must pass the first rows and refuse the others.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROFILE_CLIPS = 4


def real_clips() -> dict[str, list[tuple[str, np.ndarray]]]:
    """speaker -> [(transcript, 16 kHz audio)] in manifest order."""
    from lora_training.data.audio import load_audio
    from lora_training.data.manifest import load_manifest
    from lora_training.evaluation.safety import builtin_safety_manifest

    by_speaker = defaultdict(list)
    for utt in load_manifest(builtin_safety_manifest(None)):
        by_speaker[utt.speaker].append((utt.text, load_audio(utt.audio, max_seconds=None)))
    return dict(by_speaker)


def tts_clips(backend: str, voices: int, texts: list[str]) -> list[np.ndarray]:
    """`voices` voices spread over the backend's table, each reading every text at seeded speed and pitch."""
    from lora_training.synth.tts import BACKENDS
    from lora_training.synth.tts.base import BackendOptions

    engine = BACKENDS[backend](BackendOptions())
    table = engine.installed()
    chosen = [table[i * len(table) // voices] for i in range(min(voices, len(table)))]
    rng = random.Random(0)
    return [engine.speak(voice, text, rng).samples for voice in chosen for text in texts]


def stats(scores: list[float]) -> str:
    s = np.asarray(scores)
    p1, p5, p50, p95, p99 = np.percentile(s, [1, 5, 50, 95, 99])
    return f"| {len(s)} | {s.min():.3f} | {p1:.3f} | {p5:.3f} | {p50:.3f} | {p95:.3f} | {p99:.3f} | {s.max():.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--espeak-voices", type=int, default=12)
    parser.add_argument("--sentences", type=int, default=10, help="transcripts each TTS voice reads")
    args = parser.parse_args()

    from lora_training.synth.speaker import DEFAULT_MIN_SIMILARITY, SpeakerModel, similarity

    start = time.perf_counter()
    model = SpeakerModel()
    real = real_clips()
    embeddings = {spk: [model.embed(audio) for _, audio in clips] for spk, clips in real.items()}

    def profile(vectors: list[np.ndarray]) -> np.ndarray:
        mean = np.mean(vectors, axis=0)
        return mean / np.linalg.norm(mean)

    rows: dict[str, list[float]] = defaultdict(list)
    profiles = {spk: profile(vecs[:PROFILE_CLIPS]) for spk, vecs in embeddings.items()}
    for spk, vecs in embeddings.items():
        n = len(vecs)
        for i, vec in enumerate(vecs):
            others = [vecs[(i + k) % n] for k in range(1, PROFILE_CLIPS + 1)]
            rows[f"same speaker: {spk}"].append(similarity(vec, profile(others)))
            rows["other real speaker"].extend(similarity(vec, p) for s, p in profiles.items() if s != spk)

    texts = [text for clips in real.values() for text, _ in clips[: args.sentences // len(real) + 1]][: args.sentences]
    for backend, voices in (("espeak", args.espeak_voices), ("flite", 5), ("festival", 3)):
        for audio in tts_clips(backend, voices, texts):
            vec = model.embed(audio)
            rows[f"{backend} vs real"].extend(similarity(vec, p) for p in profiles.values())

    print("| clip vs profile | n | min | p1 | p5 | median | p95 | p99 | max |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, scores in rows.items():
        print(f"| {name} {stats(scores)}")
    same = [s for name, scores in rows.items() if name.startswith("same") for s in scores]
    other = [s for name, scores in rows.items() if not name.startswith("same") for s in scores]
    threshold = DEFAULT_MIN_SIMILARITY
    print(f"\nthreshold {threshold}: passes {np.mean(np.asarray(same) >= threshold):.1%} of {len(same)} same-speaker, "
          f"refuses {np.mean(np.asarray(other) < threshold):.1%} of {len(other)} other/TTS "
          f"(gap: same min {min(same):.3f}, other max {max(other):.3f}); {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

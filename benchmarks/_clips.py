"""Benchmark data: espeak-ng clips of jargon sentences, made once per folder."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path


def espeak_manifest(folder: Path, count: int, *, seed: int = 1, voice: str = "en-us") -> Path:
    """A manifest of `count` synthetic jargon sentences (reused when it already exists)."""
    from lora_training.data.audio import load_audio, write_wav
    from lora_training.data.manifest import Utterance, save_manifest
    from lora_training.synth.sentences import generate_sentences
    from lora_training.data.vocabulary import example_vocabulary_path, load_vocabulary

    manifest = folder / f"bench_{count}_{seed}.jsonl"
    if manifest.exists():
        return manifest
    vocabulary = load_vocabulary(example_vocabulary_path())
    utterances = []
    for i, sentence in enumerate(generate_sentences(vocabulary, count, seed=seed, min_per_term=1)):
        with tempfile.NamedTemporaryFile(suffix=".wav") as raw:
            subprocess.run(["espeak-ng", "-v", voice, "-w", raw.name, sentence.spoken], check=True)
            audio = load_audio(raw.name)
        wav = write_wav(folder / "audio" / f"{seed}_{i:04d}.wav", audio)
        utterances.append(Utterance(audio=str(wav), text=sentence.text, spoken=sentence.spoken,
                                    terms=sentence.terms, source="synthetic", duration=len(audio) / 16000))
    return save_manifest(manifest, utterances)

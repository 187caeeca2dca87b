"""The embedded default model: Moonshine base (English) rebuilt as a transformers model from the
int8 ONNX Runtime graphs inside the moonshine-cpp wheel, so the toolkit works with no network.

The conversion runs once (~4 s after the library imports) and leaves an ordinary
`save_pretrained` folder in the cache; every later load is a plain `from_pretrained` of it.

How the graphs' weights map to transformers' names: models/ort_graphs.py.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path


from lora_training.atomic import atomic_replace_dir, atomic_write_json, staging_dir
from lora_training.errors import ModelError
from lora_training.models.ort_graphs import read_ort_parameters

EMBEDDED_PREFIX = "embedded:"
# Bump when the conversion changes: the cache folder name includes it, so old builds are not reused.
CONVERTER_VERSION = 1
# Embedded name → folder under moonshine_cpp/models holding encoder_model.ort + decoder_model_merged.ort.
EMBEDDED_MODELS = {"moonshine-base": "base-en"}
INSTALL_HINT = "pip install 'lora-training[embedded]'"

# Published UsefulSensors/moonshine-base config; the strict load checks every size against the graphs.
MOONSHINE_BASE_CONFIG = dict(
    vocab_size=32768,
    hidden_size=416,
    intermediate_size=1664,
    encoder_num_hidden_layers=8,
    decoder_num_hidden_layers=8,
    encoder_num_attention_heads=8,
    decoder_num_attention_heads=8,
    encoder_hidden_act="gelu",
    decoder_hidden_act="silu",
    max_position_embeddings=194,
    partial_rotary_factor=0.62,
    rope_theta=10000.0,
    pad_head_dim_to_multiple_of=8,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=2,
    decoder_start_token_id=1,
    tie_word_embeddings=True,
)



# --- locating the packaged files ---------------------------------------------------------

def _missing(package: str) -> ModelError:
    return ModelError(
        f"{EMBEDDED_PREFIX}moonshine-base: package {package} is missing, expected it installed, "
        f"got none (run: {INSTALL_HINT})"
    )


def _package_dir(module: str, package: str) -> Path:
    """The installed package folder, found without importing it (moonshine_cpp dlopens at import)."""
    from lora_training.defaults import hidden

    spec = None if hidden("embedded") else importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(package)
    return Path(next(iter(spec.submodule_search_locations)))


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError as e:
        raise _missing(package) from e


def _check_name(name: str) -> None:
    if name not in EMBEDDED_MODELS:
        known = ", ".join(EMBEDDED_PREFIX + n for n in EMBEDDED_MODELS)
        raise ModelError(f"{EMBEDDED_PREFIX}{name}: unknown embedded model, expected one of {known}, got {name!r}")


def source_graphs(name: str = "moonshine-base") -> tuple[Path, Path]:
    """(encoder, decoder) .ort files the embedded model is built from."""
    _check_name(name)
    folder = _package_dir("moonshine_cpp", "moonshine-cpp") / "models" / EMBEDDED_MODELS[name]
    return folder / "encoder_model.ort", folder / "decoder_model_merged.ort"


def tokenizer_json() -> Path:
    """Moonshine's tokenizer.json, shipped in the useful-moonshine-onnx wheel."""
    return _package_dir("moonshine_onnx", "useful-moonshine-onnx") / "assets" / "tokenizer.json"


BECKETT_TRANSCRIPT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."


def beckett_wav() -> Path:
    """The short English test clip shipped in the moonshine-cpp wheel (Beckett's "fail better"):
    BECKETT_TRANSCRIPT, six phrases with ~0.7 s pauses."""
    return _package_dir("moonshine_cpp", "moonshine-cpp") / "test-data" / "beckett.wav"


# --- cache location ----------------------------------------------------------------------

def cache_root() -> Path:
    """$LORA_TRAINING_CACHE, else $XDG_CACHE_HOME/lora_training, else ~/.cache/lora_training."""
    if os.environ.get("LORA_TRAINING_CACHE"):
        return Path(os.environ["LORA_TRAINING_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "lora_training"
    return Path.home() / ".cache" / "lora_training"


def _package_versions() -> dict[str, str]:
    return {p: _version(p) for p in ("moonshine-cpp", "useful-moonshine-onnx")}


def embedded_cache_path(name: str = "moonshine-base") -> Path:
    """Where the build of `name` lives, built or not; keyed by the source packages' versions."""
    _check_name(name)
    source_graphs(name), tokenizer_json()  # a one-line error now if the packages are missing (or hidden)
    key = json.dumps({"name": name, "converter": CONVERTER_VERSION, **_package_versions()}, sort_keys=True)
    return cache_root() / "models" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def embedded_model_dir(name: str = "moonshine-base", rebuild: bool = False) -> Path:
    """The save_pretrained folder of the embedded model, converting it first if not cached.

    A file lock keeps two processes from converting at once; the second waits, then reuses.
    """
    final = embedded_cache_path(name)
    if _is_complete(final) and not rebuild:
        return final
    with _file_lock(final.with_name(f".{final.name}.lock")):
        if _is_complete(final) and not rebuild:
            return final
        for stale in final.parent.glob(f".{final.name}.*.tmp"):  # left by a killed build; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        staging = staging_dir(final)
        try:
            _build(name, staging)
            atomic_replace_dir(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final


def _is_complete(folder: Path) -> bool:
    # provenance.json is written last, and the folder only appears by an atomic rename.
    return (folder / "provenance.json").is_file()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- building ----------------------------------------------------------------------------

def build_processor(tokenizer_file: str | os.PathLike):
    """Moonshine's processor: raw 16 kHz samples in (no normalisation), BPE tokenizer out."""
    from transformers import PreTrainedTokenizerFast, Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    from lora_training.data.audio import SAMPLE_RATE

    feature_extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=False,
        return_attention_mask=True,
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_file),
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="</s>",  # the config's pad_token_id=2
    )
    return Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def moonshine_base_config():
    from transformers import MoonshineConfig

    return MoonshineConfig(**MOONSHINE_BASE_CONFIG)


def _build(name: str, folder: Path) -> None:
    """Convert the .ort graphs of `name` into a save_pretrained folder (model, processor, provenance)."""
    for package in ("onnxruntime", "flatbuffers"):
        if importlib.util.find_spec(package) is None:
            raise _missing(package)
    import torch
    from transformers import MoonshineForConditionalGeneration

    ref = EMBEDDED_PREFIX + name
    print(f"{ref}: converting the moonshine-cpp graphs once into {folder.parent} ...", file=sys.stderr)
    start = time.perf_counter()
    encoder, decoder = source_graphs(name)
    tokenizer_file = tokenizer_json()
    tensors = {**read_ort_parameters(encoder), **read_ort_parameters(decoder)}

    model = MoonshineForConditionalGeneration(moonshine_base_config())
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected.pop("proj_out.weight")  # tied to model.decoder.embed_tokens.weight
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if got != expected:
        missing = sorted(set(expected) - set(got))
        unexpected = sorted(set(got) - set(expected))
        wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
        raise ModelError(
            f"{ref}: converted weights do not fit the Moonshine base config, expected {len(expected)} "
            f"matching tensors, got missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}"
        )
    state = {k: torch.from_numpy(v) for k, v in tensors.items()}
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    model.load_state_dict(state, strict=True)
    model.save_pretrained(folder)
    build_processor(tokenizer_file).save_pretrained(folder)

    atomic_write_json(
        folder / "provenance.json",
        {
            "model": ref,
            "converter_version": CONVERTER_VERSION,
            "sources": [
                {"path": str(p), "sha256": file_sha256(p), "bytes": p.stat().st_size}
                for p in (encoder, decoder, tokenizer_file)
            ],
            "packages": {
                **_package_versions(),
                **{p: _version(p) for p in ("onnxruntime", "transformers", "torch")},
            },
            "tensors": len(tensors),
            "conversion_seconds": round(time.perf_counter() - start, 2),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (graphs and weights are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

"""The safety set where the Debian packages are not installed (a Mac, a slim container): 73 real
English utterances of LibriSpeech (dev-clean, read audiobooks, several speakers), fetched once from
the Hugging Face Hub and cached like any hub file, so later runs need no network.

Source: the `hf-internal-testing/librispeech_asr_dummy` dataset (the `clean` validation parquet,
~9 MB), a slice of LibriSpeech (Panayotov et al., 2015; audio from LibriVox, public domain), licensed
CC BY 4.0. It is split into measurement and replay halves exactly as the Debian set is.
"""

from __future__ import annotations

import io
from pathlib import Path

REPO = "hf-internal-testing/librispeech_asr_dummy"
FILE = "clean/validation-00000-of-00001.parquet"
DESCRIPTION = (
    "online safety set: 73 LibriSpeech dev-clean utterances (read English audiobooks, several speakers, 16 kHz; "
    f"CC BY 4.0) from the Hugging Face dataset {REPO}, fetched once and cached"
)


def online_sources(folder: Path) -> tuple[list, str | None]:
    """(SafetySource list, None), or ([], why not) when the set cannot be had (offline and not
    cached, or pyarrow missing). The clips are written as flac files under `folder` once."""
    from huggingface_hub import hf_hub_download

    from lora_training.evaluation.safety import SafetySource
    from lora_training.models.registry import _hub_resolvable

    try:
        import pyarrow.parquet as pq
    except ImportError:
        return [], "the online set needs pyarrow (pip install pyarrow)"
    try:
        parquet = hf_hub_download(REPO, FILE, repo_type="dataset", local_files_only=not _hub_resolvable())
    except Exception as e:  # offline and not cached, or the hub refused: the caller says what to do instead
        return [], f"the online set ({REPO}) is not cached and the hub is unreachable ({type(e).__name__})"
    sources = []
    for row in pq.read_table(parquet, columns=["id", "text", "speaker_id", "audio"]).to_pylist():
        path = folder / f"{row['id']}.flac"
        if not path.is_file():
            _write_once(path, row["audio"]["bytes"])
        sources.append(SafetySource(f"librispeech/{row['id']}", path, row["text"].capitalize(),
                                    f"librispeech-{row['speaker_id']}"))
    return sources, None


def _write_once(path: Path, data: bytes) -> None:
    import soundfile as sf

    from lora_training.atomic import atomic_write_bytes

    sf.info(io.BytesIO(data))  # a clip that does not decode fails here, naming nothing half-written
    atomic_write_bytes(path, data)

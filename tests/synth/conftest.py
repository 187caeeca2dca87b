"""Shared by the cloning-backend tests: the user's one recording as a reference manifest."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from lora_training.data.manifest import Utterance, save_manifest
from lora_training.models.embedded import BECKETT_TRANSCRIPT, beckett_wav


@pytest.fixture
def references(tmp_path):
    """The user's one recording: the Beckett clip with the pauses a take has around it (a clip that
    starts or ends mid-speech is not chosen as a reference)."""
    audio, rate = sf.read(str(beckett_wav()), dtype="float32")
    audio = audio[: int(9.35 * rate)]  # the six phrases end by 9.1 s; with the pauses it stays within 10 s
    pause = np.zeros(int(0.3 * rate), dtype=np.float32)
    sf.write(tmp_path / "me.wav", np.concatenate([pause, audio, pause]), rate)
    path = tmp_path / "me.jsonl"
    save_manifest(path, [Utterance(audio=str(tmp_path / "me.wav"), text=BECKETT_TRANSCRIPT, id="beckett",
                                   duration=round(len(audio) / rate + 0.6, 3))])
    return str(path)

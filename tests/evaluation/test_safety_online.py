"""Without the Debian packages the safety set comes from the online LibriSpeech slice, fetched once
(here: a local stand-in for the hub cache holding a parquet of real clips in the dataset's layout)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from lora_training.evaluation.safety_online import FILE, REPO


def _stand_in_hub(home, clips):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import soundfile as sf

    folder = home / "hub" / ("datasets--" + REPO.replace("/", "--"))
    snapshot = folder / "snapshots" / ("1" * 40)
    (snapshot / FILE).parent.mkdir(parents=True)
    rows = []
    for i, (audio, text) in enumerate(clips):
        buffer = io.BytesIO()
        sf.write(buffer, audio, 16000, format="FLAC")
        rows.append({"id": f"84-121123-{i:04d}", "text": text.upper(), "speaker_id": 84 + i % 2,
                     "audio": {"bytes": buffer.getvalue(), "path": f"{i}.flac"}})
    pq.write_table(pa.Table.from_pylist(rows), snapshot / FILE)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("1" * 40)


def test_without_debian_packages_the_online_set_is_the_safety_set(tmp_path):
    from lora_training.data.audio import load_audio
    from lora_training.data.manifest import load_manifest
    from lora_training.evaluation.safety import builtin_safety_manifest

    try:
        real = load_manifest(builtin_safety_manifest("measure"))[:12]
    except Exception as e:
        pytest.skip(f"no real speech to build the stand-in from: {e}")
    _stand_in_hub(tmp_path / "hf", [(load_audio(r.audio), r.text) for r in real])
    env = {**os.environ, "LORA_TRAINING_HIDE": "debian", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "LORA_TRAINING_CACHE": str(tmp_path / "cache")}
    code = ("import json; from lora_training.evaluation.safety import builtin_safety_manifest, about\n"
            "from lora_training.data.manifest import load_manifest\n"
            "halves = {h: [u.id for u in load_manifest(builtin_safety_manifest(h))] for h in ('measure', 'replay')}\n"
            "print(json.dumps({'halves': halves, 'about': about(builtin_safety_manifest('measure'))}))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-800:]
    result = json.loads(done.stdout)
    measure, replay = result["halves"]["measure"], result["halves"]["replay"]
    assert sorted(measure + replay) == [f"librispeech/84-121123-{i:04d}" for i in range(12)]
    assert measure and replay and not set(measure) & set(replay)
    assert "LibriSpeech" in result["about"] and "CC BY 4.0" in result["about"]

    env["HF_HOME"] = str(tmp_path / "no_hub")  # offline, nothing cached: one line naming the way out
    done = subprocess.run([sys.executable, "-c", code], env={**env, "LORA_TRAINING_CACHE": str(tmp_path / "c2")},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "--safety-manifest PATH" in done.stderr and "online set" in done.stderr

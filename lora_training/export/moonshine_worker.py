"""The moonshine-cpp child process of export/runtimes.py: float32 audio in on stdin, JSON lines out.

    python -m lora_training.export.moonshine_worker FOLDER tiny|base

Each request is an 8-byte little-endian sample count followed by that many float32 samples; each
reply is one line `{"text": ...}` or `{"error": ...}`. A count of 0 ends the process.
"""

from __future__ import annotations

import ctypes
import json
import sys

import numpy as np


def serve(folder: str, kind: str, stdin, stdout) -> None:
    import moonshine_cpp

    lib = moonshine_cpp.moonshine_lib
    model = moonshine_cpp.MoonshineModel(model_dir_path=folder, model_type=kind)
    while (header := stdin.read(8)) and (count := int.from_bytes(header, "little")):
        audio = np.frombuffer(stdin.read(4 * count), dtype=np.float32).copy()
        # The wheel's own `transcribe` builds its pointer with `ctypes.c_float_p`, which does not
        # exist; the C function is called directly with the array's buffer instead.
        text = ctypes.c_char_p(0)
        error = lib.moonshine_transcribe(model.model_handle, audio.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                         audio.size, ctypes.byref(text))
        if error != 0:
            reply = {"error": f"transcription failed, expected error code 0, got {error}"}
        else:
            reply = {"text": (text.value or b"").decode("utf-8", errors="replace").strip()}
            lib.moonshine_free_text(text)
        stdout.write((json.dumps(reply) + "\n").encode())
        stdout.flush()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], sys.stdin.buffer, sys.stdout.buffer)

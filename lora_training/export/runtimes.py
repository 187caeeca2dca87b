"""An exported folder, opened in one of the runtimes that load it: each gives `transcribe(audio) -> str`.

- `moonshine-cpp`: the Moonshine on-device runtime itself (C++ over onnxruntime; its wheel is
  Linux x86-64 and macOS).
- `sherpa-onnx`: k2-fsa's runtime (PyPI wheels for Linux, macOS, Windows; also Android/iOS).
- `onnxruntime`: our own greedy loop over the same two graphs in Python onnxruntime, the
  reference that separates "the graphs are wrong" from "a runtime decodes differently".

What they load is exactly the folder's files, so whatever scores well here is what the user's
device runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lora_training.errors import ConfigError, ModelError

RUNTIMES = ("moonshine-cpp", "sherpa-onnx", "onnxruntime")
ENCODER, DECODER = "encoder_model.ort", "decoder_model_merged.ort"
TOKENIZER_BIN, TOKENS_TXT, PROVENANCE = "tokenizer.bin", "tokens.txt", "provenance.json"
INSTALL = {"moonshine-cpp": "pip install moonshine-cpp", "sherpa-onnx": "pip install sherpa-onnx",
           "onnxruntime": "pip install onnxruntime"}


def check_export_dir(folder: str | Path) -> Path:
    """`folder` if it holds an export, else a one-line error naming what is missing."""
    folder = Path(folder)
    missing = [f for f in (ENCODER, DECODER, TOKENIZER_BIN, TOKENS_TXT) if not (folder / f).is_file()]
    if missing:
        raise ConfigError(f"{folder}: not an exported model folder, expected {', '.join(missing)} inside "
                          "(run: just export NAME)")
    return folder


def open_export(folder: str | Path, runtime: str = "moonshine-cpp", *, threads: int = 1):
    """The folder's model in `runtime`, as an object with `.transcribe(audio float32 16 kHz) -> str`."""
    folder = check_export_dir(folder)
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime: unknown, expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
    opener = {"moonshine-cpp": _MoonshineCpp, "sherpa-onnx": _Sherpa, "onnxruntime": _OnnxRuntime}[runtime]
    try:
        return opener(folder, threads)
    except ImportError as e:
        raise ModelError(f"{runtime}: not installed, expected its Python package (run: {INSTALL[runtime]})") from e


def model_type(folder: Path) -> str:
    """'tiny' or 'base' as moonshine-cpp names it, from the export's provenance."""
    try:
        return json.loads((folder / PROVENANCE).read_text(encoding="utf-8"))["runtime_model_type"]
    except (OSError, ValueError, KeyError):
        return "base"


class _MoonshineCpp:
    """moonshine-cpp in a child process (export/moonshine_worker.py), replaced every RECYCLE_AFTER utterances.

    moonshine-cpp 0.1.4 keeps ~150-300 MB per `moonshine_transcribe` call (measured on the wheel's own
    base-en graphs as on ours; the same clip ten times grows it by 3 GB) and does not give it back when
    the model is freed, so in-process it would exhaust memory within a few hundred utterances. A
    process that exits returns everything; recycling costs ~1 s per RECYCLE_AFTER utterances.
    """

    name = "moonshine-cpp"
    RECYCLE_AFTER = 16

    def __init__(self, folder: Path, threads: int):
        import moonshine_cpp  # noqa: F401  (an ImportError here names the missing package)

        self._folder, self._process, self._calls = folder, None, 0

    def transcribe(self, audio: np.ndarray) -> str:
        if self._process is None or self._calls >= self.RECYCLE_AFTER or self._process.poll() is not None:
            self._start()
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        try:
            self._process.stdin.write(samples.size.to_bytes(8, "little") + samples.tobytes())
            self._process.stdin.flush()
            reply = json.loads(self._process.stdout.readline() or "null")
        except (OSError, ValueError) as e:
            reply = {"error": f"worker failed ({e})"}
        self._calls += 1
        if not isinstance(reply, dict) or "text" not in reply:
            self.close()
            raise ModelError(f"moonshine-cpp: {(reply or {}).get('error', 'worker exited')}, expected a transcript")
        return reply["text"]

    def _start(self) -> None:
        import subprocess
        import sys

        self.close()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "lora_training.export.moonshine_worker", str(self._folder), model_type(self._folder)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._calls = 0

    def close(self) -> None:
        if self._process is not None:
            try:
                self._process.stdin.write((0).to_bytes(8, "little"))
                self._process.stdin.close()
                self._process.wait(timeout=5)
            except Exception:  # already gone, or stuck: either way it must not outlive us
                self._process.kill()
            self._process = None

    def __del__(self):
        self.close()


class _Sherpa:
    name = "sherpa-onnx"

    def __init__(self, folder: Path, threads: int):
        import sherpa_onnx

        self._recognizer = sherpa_onnx.OfflineRecognizer.from_moonshine_v2(
            encoder=str(folder / ENCODER), decoder=str(folder / DECODER), tokens=str(folder / TOKENS_TXT),
            num_threads=threads)

    def transcribe(self, audio: np.ndarray) -> str:
        from lora_training.data.audio import SAMPLE_RATE

        stream = self._recognizer.create_stream()
        stream.accept_waveform(SAMPLE_RATE, np.ascontiguousarray(audio, dtype=np.float32))
        self._recognizer.decode_stream(stream)
        return stream.result.text.strip()


class _OnnxRuntime:
    name = "onnxruntime"

    def __init__(self, folder: Path, threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._sessions = [onnxruntime.InferenceSession(str(folder / f), options, providers=["CPUExecutionProvider"])
                          for f in (ENCODER, DECODER)]
        self._tokens = read_tokenizer_bin(folder / TOKENIZER_BIN)

    def transcribe(self, audio: np.ndarray) -> str:
        from lora_training.models.ort_reference import session_greedy_decode

        ids = session_greedy_decode(*self._sessions, audio)
        text = b"".join(self._tokens[i] for i in ids if 2 < i < len(self._tokens))
        return text.decode("utf-8", errors="replace").replace("\u2581", " ").strip()


def read_tokenizer_bin(path: Path) -> list[bytes]:
    """The token byte strings of a runtime tokenizer.bin (format: export/tokenizer_files.py)."""
    data, tokens, i = path.read_bytes(), [], 0
    while i < len(data):
        n = data[i]
        i += 1
        if n >= 128:
            n = n - 128 + data[i] * 128
            i += 1
        tokens.append(data[i:i + n])
        i += n
    return tokens

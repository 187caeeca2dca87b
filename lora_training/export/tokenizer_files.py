"""The runtimes' tokenizer files, written from the model's own Hugging Face tokenizer.

`tokenizer.bin` (moonshine-cpp): each token of the BPE vocabulary in id order as its raw bytes,
preceded by its length (one byte below 128, else two: 128 + len % 128, then len // 128);
SentencePiece's byte tokens `<0xNN>` are the byte itself, `▁` stays as its UTF-8 bytes.
`tokens.txt` (sherpa-onnx's Moonshine v2 loader): `base64(token bytes) id` per line.
Written from tokenizer.json rather than copied from the moonshine-cpp wheel, so a Mac without
that wheel (and a tiny or base model from the Hub) exports the same files; the test checks the
result against the wheel's tokenizer.bin byte for byte.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from lora_training.atomic import atomic_write_bytes, atomic_write_text
from lora_training.errors import ModelError

_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def token_bytes(tokenizer) -> list[bytes]:
    """Each token of the tokenizer's BPE model (added tokens excluded, as the runtime has them) as bytes."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = spec.get("model", {}).get("vocab")
    if not isinstance(vocab, dict) or not vocab:
        raise ModelError(f"tokenizer: no BPE vocabulary, expected a tokenizer.json with model.vocab, got {spec.get('model', {}).get('type')}")
    tokens = [b""] * (max(vocab.values()) + 1)
    for text, index in vocab.items():
        byte = _BYTE_TOKEN.match(text)
        tokens[index] = bytes([int(byte.group(1), 16)]) if byte else text.encode("utf-8")
    return tokens


def encode_bin(tokens: list[bytes]) -> bytes:
    out = bytearray()
    for token in tokens:
        n = len(token)
        out += bytes([n]) if n < 128 else bytes([128 + n % 128, n // 128])
        out += token
    return bytes(out)


def write_tokenizer_files(tokenizer, folder: Path) -> list[Path]:
    """tokenizer.bin and tokens.txt in `folder`; returns their paths."""
    tokens = token_bytes(tokenizer)
    atomic_write_bytes(folder / "tokenizer.bin", encode_bin(tokens))
    atomic_write_text(folder / "tokens.txt", "".join(f"{base64.b64encode(t).decode('ascii')} {i}\n"
                                                      for i, t in enumerate(tokens)))
    return [folder / "tokenizer.bin", folder / "tokens.txt"]

"""LoRA/DoRA adapters in PEFT's own format, plus a sidecar that remembers the base model.

An adapter folder holds `adapter_config.json` + `adapter_model.safetensors` (written by PEFT)
and `lora_training.json`: the base model reference and fingerprint, the training manifests
with content hashes, the step, the terms it trained on (`train_terms`, which `evaluate` counts
as seen) and how it was chosen (`chosen_on`: `dev` for best_adapter, with `dev_set`,
`dev_utterances` and `metric`). Loading onto a different base model is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lora_training.atomic import atomic_replace_dir, atomic_write_json, staging_dir
from lora_training.errors import ModelError

SIDECAR = "lora_training.json"
# Which module paths each site covers; layer names inside come from the config's target_modules.
_SITE_PREFIX = {
    "decoder": r"model\.decoder\.layers\.\d+",
    "encoder": r"model\.encoder\.layers\.{encoder}",
    "both": r"model\.(?:encoder\.layers\.{encoder}|decoder\.layers\.\d+)",
}


def target_pattern(sites: str, modules: list[str] | tuple[str, ...], encoder_layers: list[int] | None = None) -> str:
    """A PEFT `target_modules` regex (full match) for the named Linear layers within the sites;
    `encoder_layers` (indices) narrows the encoder site to those layers."""
    names = "|".join(sorted({m.strip() for m in modules}))
    encoder = r"\d+" if encoder_layers is None else "(?:" + "|".join(map(str, encoder_layers)) + ")"
    return rf"{_SITE_PREFIX[sites].replace('{encoder}', encoder)}\.(?:self_attn|encoder_attn|mlp)\.(?:{names})"


def top_encoder_layers(model, count: int) -> list[int] | None:
    """Indices of the encoder's top `count` layers (None for 0: every layer)."""
    total = len(model.get_encoder().layers)
    if count > total:
        raise ModelError(f"encoder_layers: {count}, expected at most {total} (the layers this model's encoder has)")
    return list(range(total - count, total)) if count else None


def apply_adapter(model, *, r: int, alpha: int, dropout: float, use_dora: bool, sites: str,
                  target_modules: list[str] | tuple[str, ...], encoder_layers: int = 0):
    """Wrap `model` in a fresh PEFT LoRA/DoRA model; only adapter weights stay trainable.
    `encoder_layers` > 0 keeps the encoder's adapters to its top that many layers."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        use_dora=use_dora,
        target_modules=target_pattern(sites, target_modules,
                                      top_encoder_layers(model, encoder_layers if sites != "decoder" else 0)),
        bias="none",
    )
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as e:
        raise ModelError(
            f"target_modules: no layer matched {list(target_modules)} in the {sites} site(s), "
            f"expected Moonshine layer names such as q_proj, v_proj, fc1 ({e})"
        ) from e
    from lora_training.models.dropout import use_fast_dropout

    use_fast_dropout(peft_model)  # nn.Dropout's masks cost 6-9% of a CPU step more (models/dropout.py)
    if use_dora:  # one base pass per layer instead of peft's two (models/dora.py says what differs)
        from lora_training.models.dora import use_one_base_dora

        use_one_base_dora(peft_model)
    return peft_model


def base_fingerprint(model) -> str:
    """Identifies a base model by architecture and weights (a sample of the token embedding)."""
    import torch

    config = model.config.to_dict()
    for volatile in ("transformers_version", "_name_or_path", "torch_dtype", "dtype", "architectures"):
        config.pop(volatile, None)
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    emb = base.get_input_embeddings().weight.detach()
    h.update(emb.flatten()[:8192].to(torch.float32).cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def save_adapter(peft_model, out_dir: str | Path, *, base_model: str, fingerprint: str,
                 info: dict[str, Any]) -> Path:
    """Write the adapter folder atomically: staged, then renamed over any previous one."""
    from lora_training.models.runtime import quiet_libraries

    quiet_libraries()  # peft's save_pretrained asks transformers a deprecated question on every save
    out_dir = Path(out_dir)
    tmp = staging_dir(out_dir)
    peft_model.save_pretrained(str(tmp), safe_serialization=True)
    atomic_write_json(tmp / SIDECAR, {"base_model": base_model, "base_fingerprint": fingerprint, **info})
    return atomic_replace_dir(tmp, out_dir)


def read_sidecar(adapter_dir: str | Path) -> dict[str, Any]:
    adapter_dir = Path(adapter_dir)
    path = adapter_dir / SIDECAR
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelError(f"{adapter_dir}: not an adapter folder, expected adapter_config.json inside")
    if not path.is_file():
        raise ModelError(f"{path}: missing adapter sidecar, expected a folder written by lora-training")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}:{e.lineno}: invalid JSON in adapter sidecar ({e.msg})") from e


def load_adapter(model, adapter_dir: str | Path, *, base_model: str, is_trainable: bool = False):
    """Attach a saved adapter to `model`, refusing one trained on another base model."""
    from peft import PeftModel

    sidecar = read_sidecar(adapter_dir)
    fingerprint = base_fingerprint(model)
    if sidecar.get("base_fingerprint") != fingerprint:
        raise ModelError(
            f"{adapter_dir}: adapter was trained on base model {sidecar.get('base_model')!r}, "
            f"refusing to load it onto {base_model!r} (fingerprints {sidecar.get('base_fingerprint')} != {fingerprint}); "
            f"pass --model-id {sidecar.get('base_model')}"
        )
    from lora_training.models.dora import use_one_base_dora

    peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=is_trainable)
    use_one_base_dora(peft_model)  # a DoRA adapter runs the forward it was trained with; LoRA is left alone
    return peft_model


@contextlib.contextmanager
def frozen_dora(model) -> Iterator[None]:
    """While decoding, each DoRA layer's weight norm (and B·A) is computed once, not at every token:
    unmerged, peft recomputes them at every forward (every decoded token). The caches are cleared on entry and exit, so weights swapped in between calls
    (`adapter_weights`) are never served stale. A model without DoRA layers is untouched."""
    from peft.helpers import DoraCaching

    layers = [m for m in model.modules() if hasattr(m, "_cache_clear") and hasattr(m, "_dora_cache")]
    if not layers:
        yield
        return
    for layer in layers:
        layer._cache_clear()
    try:
        with DoraCaching():
            yield
    finally:
        for layer in layers:
            layer._cache_clear()

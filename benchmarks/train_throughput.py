"""Training throughput: our recipe against a plain PEFT loop, same data, same threads, same run.

    .venv/bin/python benchmarks/train_throughput.py [--model-id embedded:moonshine-base] [--steps 12]

Variants:
  plain      PEFT LoRA on q_proj/v_proj (encoder and decoder), audio decoded every step,
             random batches, the encoder run with autograd: what a first script does.
  decoder    our Trainer, decoder-only LoRA r16 (alpha 32, dropout 0.05, the default
             target_modules): audio decoded once, length-bucketed batches, encoder outputs
             computed once without gradients and cached.
  both       our Trainer, LoRA in encoder and decoder (no encoder cache possible).
  both-topN  `both` with encoder adapters in the top N layers only (`--encoder-layers N`): the stem
             and the layers below are cached per clip.
  dora       `decoder` as DoRA r32 (alpha 64, dropout 0.1), same targets: models/dora.py's forward.
  dora-peft  `dora` with peft's own DoRA forward (the base layer twice per call), for comparison.
Throughput is utterances/s over the timed steps after `--warmup` steps; the encoder cache
fills during warm-up, as it does in the first epoch of a real run. The machine is shared and
noisy, so the variants live in one process and take their timed steps in turns (round robin):
a slow minute slows all of them alike. Peak RSS comes from a separate short run per variant.
The summary gives each variant's speed against plain and each DoRA step's time against decoder's.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _peak_rss_mb() -> float:
    """VmHWM: unlike ru_maxrss, it is not inherited from the parent across fork + exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_plain(args):
    import torch
    from peft import LoraConfig, get_peft_model

    from lora_training.data.audio import load_audio
    from lora_training.data.manifest import load_manifest
    from lora_training.models.registry import resolve_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    utts = load_manifest(args.manifest)
    model, processor = resolve_model(args.model_id)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"]))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rng = random.Random(0)
    eos = model.config.eos_token_id

    def step():
        batch = rng.sample(utts, args.batch_size)
        audios = [load_audio(u.audio) for u in batch]
        inputs = processor(audios, sampling_rate=16000, padding=True, return_attention_mask=True, return_tensors="pt")
        ids = [processor.tokenizer(u.text, add_special_tokens=False).input_ids + [eos] for u in batch]
        width = max(map(len, ids))
        labels = torch.tensor([x + [-100] * (width - len(x)) for x in ids])
        loss = model(input_values=inputs.input_values, attention_mask=inputs.attention_mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()

    return step


DORA = {"adapter_sites": "decoder", "use_dora": True, "lora_r": 32, "lora_alpha": 64, "lora_dropout": 0.1}
# Our variants: ExperimentConfig fields over the defaults, and whether DoRA runs peft's own forward.
OURS = {
    "decoder": ({"adapter_sites": "decoder"}, False),
    "both": ({"adapter_sites": "both"}, False),
    "both-top2": ({"adapter_sites": "both", "encoder_layers": 2}, False),
    "both-top4": ({"adapter_sites": "both", "encoder_layers": 4}, False),
    "dora": (DORA, False),
    "dora-peft": (DORA, True),
}


def _peft_dora_forward(model) -> None:
    """Put peft's DoRA variant back where apply_adapter installed models/dora.py's."""
    from peft.tuners.lora.variants import DoraLinearVariant

    for module in model.modules():
        variants = getattr(module, "lora_variant", None) or {}
        for name in variants:
            variants[name] = DoraLinearVariant()


def build_ours(args, variant: str):
    from lora_training.config import ExperimentConfig
    from lora_training.training.trainer import Trainer

    fields, peft_dora = OURS[variant]
    # No replay: every variant, plain included, trains on the benchmark's clips alone.
    cfg = ExperimentConfig(model_id=args.model_id, train_manifest=args.manifest, eval_manifest=args.manifest,
                           batch_size=args.batch_size, replay_manifest=None, replay_ratio=0.0,
                           num_threads=args.threads, device="cpu", max_steps=args.warmup + args.steps,
                           warmup_steps=0, lr=1e-4, **fields)
    trainer = Trainer(cfg, tempfile.mkdtemp(prefix="bench_run_"))
    trainer.setup(resume=False)
    if peft_dora:
        _peft_dora_forward(trainer.model)
    trainer.model.train()

    def step():
        trainer.train_step()
        trainer.step += 1

    return step


def build(args, variant: str):
    return build_plain(args) if variant == "plain" else build_ours(args, variant)


def interleaved(args) -> dict:
    """Warm every variant up, then time their steps in turns."""
    import torch

    torch.set_num_threads(args.threads)
    steps = {v: build(args, v) for v in args.variants}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    seconds = dict.fromkeys(steps, 0.0)
    for _ in range(args.steps):
        for variant, step in steps.items():
            started = time.perf_counter()
            step()
            seconds[variant] += time.perf_counter() - started
    return {v: {"utt_per_s": args.steps * args.batch_size / t, "sec_per_step": t / args.steps} for v, t in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-id", default="embedded:moonshine-base")
    parser.add_argument("--manifest", default=None, help="training manifest (default: 64 espeak-ng jargon clips)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=8, help="untimed steps first (8 × batch 8 = one epoch of 64)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["plain", "decoder", "both", "dora", "dora-peft"],
                        choices=["plain", *OURS])
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:  # memory probe: a short run of one variant in its own process
        step = build(args, args.variant)
        for _ in range(args.warmup + 2):
            step()
        print(json.dumps({"peak_rss_mb": _peak_rss_mb()}))
        return
    if args.manifest is None:
        from _clips import espeak_manifest

        folder = Path(tempfile.gettempdir()) / "lora_training_bench"
        args.manifest = str(espeak_manifest(folder, 64))
    results = interleaved(args)
    for variant in args.variants:
        cmd = [sys.executable, __file__, "--variant", variant, "--model-id", args.model_id, "--manifest", args.manifest,
               "--batch-size", str(args.batch_size), "--warmup", str(args.warmup), "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[variant].update(json.loads(out.strip().splitlines()[-1]))
        r = results[variant]
        print(f"{variant:<9} {r['utt_per_s']:6.2f} utt/s  {r['sec_per_step']:6.2f} s/step  peak RSS {r['peak_rss_mb']:7.0f} MB",
              flush=True)
    for variant in results:
        if variant != "plain" and "plain" in results:
            print(f"{variant} / plain: {results[variant]['utt_per_s'] / results['plain']['utt_per_s']:.2f}x utt/s")
    for variant in ("dora", "dora-peft"):
        if variant in results and "decoder" in results:
            print(f"{variant} / decoder: {results[variant]['sec_per_step'] / results['decoder']['sec_per_step']:.2f}x s/step")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

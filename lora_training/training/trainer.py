"""The training recipe: PEFT LoRA/DoRA on Moonshine, readable top to bottom.

    Trainer(cfg, run_dir).run(resume=...)  =  setup() → train() → cleanup()

Choose on dev, report on test (`evals.py`). Step 0 evaluates the untouched model (the adapter
starts as a no-op) on the dev set and on the eval manifest, so both baselines are the first rows
of `metrics.jsonl`. Every `eval_interval` steps the model transcribes the dev set greedily (WER,
CER, jargon term recall, and the safety WER of a few general-English clips beside them);
`best_adapter/` follows the best dev WER within the safety budget, and too many safety scores over
it stop the run (`selection.py`); `adapter/` is the final one, and the eval manifest is read once
more, at the end, for best_adapter's verdict. Runs under Hugging Face Accelerate, so
`accelerate launch --num_processes N` gives DDP without code changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch

from lora_training.config import ExperimentConfig, adapter_kind
from lora_training.data.audio import AudioCache
from lora_training.data.manifest import load_manifests, manifest_hash
from lora_training.errors import LoraTrainingError, TrainingDiverged
from lora_training.models.moonshine_ops import decoder_loss
from lora_training.training.checkpoints import CheckpointManager, restore, seed_everything, state_digest
from lora_training.training.collate import Example, build_examples, check_label_lengths, pad_labels
from lora_training.training.data_order import DataOrder, lr_factor, with_corrections
from lora_training.training.dev_split import CARVED, dev_and_train, dev_digest
from lora_training.training.encoder_cache import EncoderCache
from lora_training.training.respell import respeller_for
from lora_training.training.evals import (EvalSet, InLoopEvals, adapter_weights, brief, describe, eval_decoding,
                                          safety_set, seen_terms, terms_by_source)
from lora_training.training.selection import Selection, settle
from lora_training.formatting import hms
from lora_training.runs import RunDir
from lora_training.runs.metrics_log import JsonlMetricsLogger, NullMetricsLogger, drop_rows_after
from lora_training.runs.state import NullRunState, RunState

log = logging.getLogger("lora_training.train")


class Trainer:
    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path):
        self.cfg = cfg
        self.folder = RunDir(Path(run_dir))
        # Under `accelerate launch` only rank 0 writes the run's files.
        self.is_main = int(os.environ.get("RANK", "0")) == 0
        self.state = RunState(self.folder.path) if self.is_main else NullRunState()
        self.checkpoints = CheckpointManager(self.folder.checkpoints, keep=2)
        self.step = 0
        self.selection = Selection(cfg.safety_budget, cfg.safety_patience, cfg.early_stop_patience)
        self.stop_requested = False
        self.metrics = NullMetricsLogger()

    # --- setup --------------------------------------------------------------------------

    def load_data(self) -> None:
        """Cheap checks before expensive work: every manifest is validated before the model loads."""
        from lora_training.evaluation.safety import replay_source

        cfg = self.cfg
        self.replay_path, note = replay_source(cfg.replay_manifest if cfg.replay_ratio > 0 else None)
        if note:
            log.warning("%s", note)
        loaded = load_manifests(dataclasses.replace(cfg, replay_manifest=self.replay_path))
        self.eval_utts = loaded["eval_manifest"]
        self.replay_utts = loaded.get("replay_manifest", [])
        self.train_utts, self.dev_utts = dev_and_train(cfg, loaded["train_manifest"])
        self.train_utts = with_corrections(cfg, self.train_utts, self.dev_utts, loaded.get("corrections_manifest", []))
        self.dev_id = dev_digest(self.dev_utts)
        self.vocabulary = None
        if cfg.vocabulary:
            from lora_training.data.vocabulary import load_vocabulary

            self.vocabulary = load_vocabulary(cfg.vocabulary).written_forms()
        listed = [t for u in self.dev_utts + self.eval_utts for t in (u.terms or [])]
        self.seen_terms = seen_terms(self.train_utts, (self.vocabulary or []) + listed)
        self.terms_by_source = terms_by_source(self.train_utts, self.seen_terms)

    def setup(self, resume: bool) -> None:
        from accelerate import Accelerator

        from lora_training.models.adapters import apply_adapter, base_fingerprint
        from lora_training.models.registry import resolve_model
        from lora_training.models.runtime import pick_device, pick_precision, set_threads

        cfg = self.cfg
        self.load_data()
        set_threads(cfg.num_threads)
        seed_everything(cfg.seed)
        device = pick_device(cfg.device)
        precision = pick_precision(device, cfg.precision, say=log.info)
        self.accelerator = Accelerator(cpu=device == "cpu", mixed_precision={"fp32": "no"}.get(precision, precision))

        log.info("loading base model %s", cfg.model_id)
        model, self.processor = resolve_model(cfg.model_id)
        self.fingerprint = base_fingerprint(model)
        self.eos_id = model.config.eos_token_id
        # What lies below the lowest adapter is frozen, computed once per clip and cached (below): the
        # whole encoder for decoder-only runs (None), else its stem and any layers under the adapted top.
        top = cfg.encoder_layers if cfg.adapter_sites != "decoder" else 0
        layers = len(model.get_encoder().layers)
        frozen = None if cfg.adapter_sites == "decoder" else layers - (top or layers)
        model = apply_adapter(
            model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, use_dora=cfg.use_dora,
            sites=cfg.adapter_sites, target_modules=cfg.target_modules, encoder_layers=top,
        )
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        log.info("adapter: %s r=%d alpha=%d on %s%s; %s trainable of %s parameters (%.2f%%)",
                 adapter_kind(cfg.to_dict()), cfg.lora_r, cfg.lora_alpha, cfg.adapter_sites,
                 f" (top {top} encoder layers)" if top else "", f"{trainable:,}", f"{total:,}", 100 * trainable / total)

        # Decode and tokenise every clip once; epochs after the first touch neither disk nor resampler.
        started = time.perf_counter()
        audio = AudioCache()
        tok = self.processor.tokenizer
        respeller = respeller_for(tok, cfg.respell_terms, self.vocabulary, self.train_utts)
        self.train_examples = build_examples(self.train_utts, audio, tok, self.eos_id, views=cfg.augment_views,
                                             seed=cfg.seed, respeller=respeller)
        self.replay_examples = build_examples(self.replay_utts, audio, tok, self.eos_id)
        self.evals = InLoopEvals(
            EvalSet.of("dev", cfg.dev_manifest or CARVED, self.dev_utts, audio),
            EvalSet.of("test", cfg.eval_manifest, self.eval_utts, audio),
            safety_set(cfg.safety_manifest, cfg.safety_in_loop, cfg.safety_every) if self.is_main else None,
            seen_terms=self.seen_terms, vocabulary=self.vocabulary, batch_size=cfg.eval_batch_size,
            **eval_decoding(self.processor, cfg.bias_vocabulary, cfg.bias_boost, cfg.rewrite_spoken))
        log.info("decoded %d train, %d replay, %d dev, %d eval clips in %.1fs", len(self.train_examples),
                 len(self.replay_examples), len(self.dev_utts), len(self.eval_utts), time.perf_counter() - started)
        check_label_lengths(self.train_utts, self.train_examples, model.config.max_position_embeddings)

        # With no adapter in the encoder its output for a clip never changes: compute it once,
        # without gradients, and train only the decoder on the cached states (and, in fp32 on one
        # process, on the cached cross-attention keys and values: training/encoder_cache.py). With
        # encoder adapters the same holds for the part below them; what runs each step is encoded
        # as transcription encodes each clip (the stem unpadded), so training matches decoding.
        normalize = bool(getattr(self.processor.feature_extractor, "do_normalize", False))
        self.encoder_cache = EncoderCache(normalize=normalize, frozen_layers=frozen,
                                          cross=cfg.precision == "fp32" and self.accelerator.num_processes == 1)

        params = [p for p in model.parameters() if p.requires_grad]
        # foreach: one fused update over all adapter tensors instead of a Python loop per tensor (CPU default is off).
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, functools.partial(lr_factor, warmup_steps=cfg.warmup_steps, max_steps=cfg.max_steps))
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.data_order = DataOrder(self.train_examples, self.replay_examples, batch_size=cfg.batch_size,
                                    replay_ratio=cfg.replay_ratio, seed=cfg.seed,
                                    max_synthetic_share=cfg.max_synthetic_share, respell_share=cfg.respell_terms,
                                    source=cfg.train_manifest, world=self.accelerator.num_processes,
                                    rank=self.accelerator.process_index)
        log.info("%s", self.data_order.describe())

        if resume:
            self._resume()
        # Opened only now: a resume first rewrites the file without the rows it will log again.
        self.metrics = JsonlMetricsLogger(self.folder.metrics) if self.is_main else NullMetricsLogger()

    def _resume(self) -> None:
        """Continue from the newest checkpoint that loads (a damaged one is logged and skipped)."""
        found = self.checkpoints.load_latest()
        if found is None:
            self.step = 0
            log.info("no checkpoint in %s: starting from step 0", self.checkpoints.root)
        else:
            folder, ckpt = found
            restore(folder, ckpt, self.accelerator.unwrap_model(self.model), self.optimizer, self.scheduler,
                    dev_digest=self.dev_id)
            self.step = ckpt["step"]
            self.selection.restore(ckpt)
            log.info("resumed from %s at step %d", folder.name, self.step)
        if self.is_main:
            # The end-of-run test follows the last checkpoint, at its step: a resumed run tests again.
            dropped = drop_rows_after(self.folder.metrics, self.step if found else None,
                                      redo=lambda r: r.get("type") == "test" and r.get("step") != 0)
            if dropped:
                log.info("%s: dropped %d row(s) this resumed run logs again", self.folder.metrics, dropped)
            self.state.update(test={k: v for k, v in (self.state.data.get("test") or {}).items()
                                    if found and k == "baseline"})

    # --- one step ------------------------------------------------------------------------

    def _loss(self, examples: list[Example]) -> torch.Tensor:
        labels = pad_labels([e.labels for e in examples]).to(self.accelerator.device)
        base = self.accelerator.unwrap_model(self.model).get_base_model()
        with self.accelerator.autocast():
            encoded, cached = self.encoder_cache.batch(base, examples)
            if self.accelerator.num_processes == 1:
                # Projects to the vocabulary only at real label positions.
                with cached:
                    return decoder_loss(base, encoded.last_hidden_state, encoded.attention_mask, labels)
            # Under DDP the forward goes through the wrapper, which readies its gradient hooks for this
            # backward; they fire for the encoder adapters too, though their forward ran outside it.
            return self.model(encoder_outputs=encoded, labels=labels).loss

    def train_step(self) -> tuple[float, int]:
        """One optimizer step over `grad_accum` micro-batches; returns the mean loss and this
        process's utterance count (an epoch's last batch may be short)."""
        cfg = self.cfg
        total = torch.zeros((), device=self.accelerator.device)
        utterances = 0
        for k in range(cfg.grad_accum):
            examples = self.data_order.micro_batch(self.step * cfg.grad_accum + k)
            utterances += len(examples)
            sync = k == cfg.grad_accum - 1
            with self.accelerator.no_sync(self.model) if not sync else contextlib.nullcontext():
                loss = self._loss(examples)
                self.accelerator.backward(loss / cfg.grad_accum)
            total += loss.detach()
        # Every rank sees the same mean loss, so a NaN on any rank fails them all together.
        mean = self.accelerator.reduce(total / cfg.grad_accum, reduction="mean").item()
        if not math.isfinite(mean):
            raise TrainingDiverged(f"step {self.step + 1}: loss became {mean}, expected a finite number; "
                                   f"lower --lr (now {cfg.lr}) or check the data")
        if cfg.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return mean, utterances

    # --- evaluation ----------------------------------------------------------------------

    def _dev_eval(self) -> None:
        """Dev WER decides best_adapter/ within the safety budget; safety and dev WERs decide early stops."""
        cfg = self.cfg
        due = self.step in (0, cfg.max_steps) or (self.step // cfg.eval_interval) % cfg.safety_every == 0
        if self.is_main:
            self._after_dev_eval(self.evals.dev(self.accelerator.unwrap_model(self.model), self.processor,
                                                with_safety=due))
        self.accelerator.wait_for_everyone()

    def _after_dev_eval(self, result: dict[str, Any]) -> None:
        if self.step == 0:  # the untouched model's safety WER: what forgetting is measured against
            self.state.update(safety_baseline=result.get("safety_wer"))
        log.info("%s", describe(self.step, result, self.state.data.get("safety_baseline")))
        self.metrics.log("eval", self.step, **result)
        summary = brief(self.step, result, self.state.data.get("last_eval"))
        chosen, note = self.selection.consider(self.step, result, summary)
        if note:
            log.info("%s", note)
        if chosen:
            self._save_adapter(self.folder.best_adapter)
        self.state.update(last_eval=summary, best=self.selection.best, selection=self.selection.summary())

    def _test(self, which: str) -> None:
        """The eval manifest, read for the verdict only and twice a run: the untouched model at
        step 0 (`baseline`), best_adapter/ at the end (`best`). Nothing is chosen on it."""
        if self.is_main:
            model, best = self.accelerator.unwrap_model(self.model), which == "best"
            with adapter_weights(model, self.folder.best_adapter if best else None):
                result = {**self.evals.test(model, self.processor), "adapter": which,
                          "adapter_step": self.selection.best["step"] if best else 0}
            log.info("%s", describe(self.step, result))
            self.metrics.log("test", self.step, **result)
            self.state.update(test={**(self.state.data.get("test") or {}), which: brief(self.step, result)})
        self.accelerator.wait_for_everyone()

    def _save_adapter(self, folder: Path) -> None:
        from lora_training.models.adapters import save_adapter

        cfg = self.cfg
        paths = {"train_manifest": cfg.train_manifest, "replay_manifest": self.replay_path, "dev_manifest": cfg.dev_manifest,
                 "corrections_manifest": cfg.corrections_manifest}
        manifests = {name: {"path": path, "sha256": manifest_hash(path)} for name, path in paths.items() if path}
        best = folder == self.folder.best_adapter
        selection = {"chosen_on": "dev", "dev_set": cfg.dev_manifest or CARVED, "dev_utterances": len(self.dev_utts),
                     **self.selection.sidecar()} if best else {"chosen_on": "last step"}
        save_adapter(
            self.accelerator.unwrap_model(self.model), folder, base_model=cfg.model_id, fingerprint=self.fingerprint,
            info={"step": self.step, "manifests": manifests, "train_terms": self.seen_terms,
                  "train_terms_by_source": self.terms_by_source,
                  "config": cfg.to_dict(), "best": self.selection.best, **selection},
        )

    def _checkpoint(self) -> None:
        from peft import get_peft_model_state_dict

        self.checkpoints.save(
            self.step,
            adapter=get_peft_model_state_dict(self.accelerator.unwrap_model(self.model)),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            extra={**self.selection.checkpoint(), "dev_digest": self.dev_id},
        )
        self.state.update(last_checkpoint=self.step)

    # --- the loop ------------------------------------------------------------------------

    def train(self) -> str:
        """Runs to max_steps (or early stop, or a stop request); returns the final phase."""
        from peft import get_peft_model_state_dict

        cfg = self.cfg
        main = self.is_main
        if self.step == 0:
            self._dev_eval()
            self._test("baseline")
        window_start, window_utts = time.perf_counter(), 0
        run_started, run_start_step = time.perf_counter(), self.step
        while self.step < cfg.max_steps:
            (stop,) = self._agree(self.stop_requested)
            if stop:
                if main:
                    self._checkpoint()
                    settle(self.selection, self.folder.best_adapter, self.state)
                log.info("stop requested: checkpointed at step %d", self.step)
                return "stopped"
            self.model.train()
            loss, utterances = self.train_step()
            self.step += 1
            window_utts += utterances
            if main and (self.step % cfg.log_interval == 0 or self.step == cfg.max_steps):
                now = time.perf_counter()
                # Other ranks' batches are this one's size, but for an epoch's last batch.
                utt_s = window_utts * self.accelerator.num_processes / (now - window_start)
                sec_per_step = (now - run_started) / (self.step - run_start_step)
                eta = sec_per_step * (cfg.max_steps - self.step)
                lr = self.scheduler.get_last_lr()[0]
                log.info("step %d/%d  loss %.4f  lr %.2e  %.2f utt/s  %.2fs/step  ETA %s", self.step, cfg.max_steps,
                         loss, lr, utt_s, sec_per_step, hms(eta, missing="?"))
                self.metrics.log("train", self.step, loss=loss, lr=lr, utt_per_s=round(utt_s, 3),
                                 sec_per_step=round(sec_per_step, 3))
                self.state.update(step=self.step, loss=loss, lr=lr, sec_per_step=sec_per_step, eta_seconds=eta)
                window_start, window_utts = now, 0
            if self.step % cfg.eval_interval == 0 or self.step == cfg.max_steps:
                self._dev_eval()
            if main and (self.step % cfg.effective_checkpoint_interval == 0 or self.step == cfg.max_steps):
                self._checkpoint()
            reason = self.selection.stop_reason() if main else None  # evals run on rank 0 only
            (early,) = self._agree(reason is not None)
            if early:
                log.info("early stop at step %d: %s", self.step, reason or "rank 0's decision")
                if main:
                    self._checkpoint()
                    self.state.update(early_stopped=True, stop_reason=reason)
                break
        if main:
            self._save_adapter(self.folder.adapter)
            settle(self.selection, self.folder.best_adapter, self.state)
        # Under DDP every rank must print the same digest.
        log.info("rank %d adapter checksum %s", self.accelerator.process_index,
                 state_digest(get_peft_model_state_dict(self.accelerator.unwrap_model(self.model))))
        self._test("best")
        return "completed"

    def _agree(self, *flags: bool) -> list[bool]:
        """Ranks act together: a flag raised on any rank (a stop signal, early stop) holds on all."""
        if self.accelerator.num_processes == 1:
            return list(flags)
        votes = torch.tensor([float(f) for f in flags], device=self.accelerator.device)
        return [bool(v > 0) for v in self.accelerator.reduce(votes, reduction="sum")]

    def request_stop(self, signum=None, frame=None) -> None:
        self.stop_requested = True

    def cleanup(self) -> None:
        self.metrics.close()
        if hasattr(self, "accelerator"):
            self.accelerator.end_training()

    def run(self, resume: bool = False) -> str:
        """The whole life of a run, reflected in state.json; returns the final phase."""
        handlers = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        if resume:  # the state shows the step being resumed from, even if the resume then fails
            self.step = self.checkpoints.newest_step()
        self.state.update(phase="running", pid=os.getpid(), started_at=time.time(), error=None,
                          max_steps=self.cfg.max_steps, step=self.step, early_stopped=False, stop_reason=None,
                          selection_warning=None)
        try:
            self.setup(resume=resume)
            self.state.update(step=self.step)
            phase = self.train()
        except Exception as e:
            if isinstance(e, LoraTrainingError):  # the message names the culprit; a traceback would bury it
                log.error("run failed at step %d: %s", self.step, e)
            else:
                log.exception("run failed at step %d", self.step)
            self.state.update(phase="failed", error=str(e), failed_step=self.step, ended_at=time.time())
            return "failed"
        finally:
            self.cleanup()
            for sig, handler in handlers.items():  # a foreground run leaves the caller's handlers as they were
                signal.signal(sig, handler)
        self.state.update(phase=phase, step=self.step, ended_at=time.time(), adapters=self.folder.adapters())
        best = self.selection.best
        log.info("run %s at step %d; best dev WER %s", phase, self.step,
                 "n/a" if not best else f"{100 * best['wer']:.2f}% (step {best['step']})")
        return phase


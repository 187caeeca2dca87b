"""Which dev eval becomes best_adapter/, and when a run stops early: the rule in one place, with the
counters it keeps, which travel in every checkpoint so a resumed run decides exactly as it would have.

    best_adapter/  the lowest dev WER among the dev evals whose safety WER, scored at that same step,
                   is not over `safety_budget` WER points above step 0's. Step 0 (the untouched model,
                   a no-op adapter) always qualifies, so there is always a best; when no trained
                   checkpoint qualifies it is step 0's, and the log, state.json and report say so loudly
    safety stop    `safety_patience` consecutive safety scores over the budget end the run (completed,
                   early_stopped, stop_reason): more steps would only forget more
    dev stop       `early_stop_patience` dev evals without a dev WER lower than every earlier one (the
                   dev WER alone, as before: it asks whether the user's words still improve)

"Over" means shown to be over, not one word's worth: a score is over the budget when its change
from step 0 exceeds the budget *and* the paired 95% interval of that change (the same clips at
step 0 and now, resampled together) lies above zero. The in-loop set is small (8 clips, ~170 words:
one word is ~0.6 points), so without the second condition a single misheard word would exclude a
checkpoint; measured on a simulated user (benchmarks/quality.py), that rule passed over every
trained checkpoint of a run whose dev WER fell from 41% to 1% and kept the untouched model. The
final `evaluate` on the 61-clip measurement half is the verdict on forgetting. One exception to
"shown": a safety clip whose transcript loops (`repetition_flag`) where step 0's did not is over
whenever the score is beyond the budget, however wide the interval: one looping clip is one clip,
so its interval always spans 0, but it is the failure forgetting looks like (a `both` demo run chose
a step whose 24-clip safety score was +14 points from one loop, and its 61-clip verdict was +6.8).

A dev eval without a safety score of its own (`--safety-every 2` skips every other one) cannot
become best_adapter/. A score carried from an earlier step says nothing about these weights, and
letting the next score vouch for them would mean holding a candidate adapter aside (in checkpoints
too) for an eval interval, and choosing it late. The price is granularity (a candidate every 100
steps at the defaults), not time: scoring every dev eval would take the evals of a default CPU run
on moonshine-base from ~13% of its wall time to ~17% (evals.py), over the 15% budget.
Without safety in the loop (`--safety-in-loop 0`, or the built-in set missing) the dev WER alone
chooses and stopping for safety is off; the sidecar and state.json say so.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("lora_training.train")


@dataclass
class Selection:
    budget: float  # WER points above step 0's safety WER (--safety-budget)
    patience: int  # consecutive over-budget safety scores that stop the run; 0: never
    dev_patience: int  # dev evals without a lower dev WER that stop the run; 0: never (--early-stop-patience)
    # The state below is what a checkpoint keeps.
    best: dict[str, Any] | None = None  # brief() of the chosen dev eval
    evals_since_best: int = 0  # dev evals since the dev WER last fell below every earlier one (the dev stop)
    lowest_dev: float | None = None  # the lowest dev WER of any eval, chosen or not
    safety_start: float | None = None  # step 0's safety WER; None: safety in the loop is off
    start_errors: list[int] | None = None  # step 0's word errors per safety clip, and the clips' words
    start_words: list[int] | None = None
    start_looping: int | None = None  # step 0's looping safety transcripts
    streak: int = 0  # consecutive over-budget safety scores
    trained_scored: int = 0  # safety scores after step 0
    over: list[dict[str, Any]] = field(default_factory=list)  # {step, wer, safety_wer} of each over-budget score
    unscored: list[dict[str, Any]] = field(default_factory=list)  # {step, wer}: a lower dev WER left without a score

    def points(self, safety_wer: float) -> float:
        """WER points above step 0; rounded so that float noise never tips a score over the budget."""
        return round(100 * (safety_wer - self.safety_start), 6)

    def consider(self, step: int, result: dict[str, Any], summary: dict[str, Any]) -> tuple[bool, str | None]:
        """Take one dev eval (`result`: its metrics row, `summary`: brief() of it); returns whether it
        becomes best_adapter/, and a line for train.log when safety had a say."""
        wer, safety = result["wer"], result.get("safety_wer")  # safety: None when not scored at this step
        if step == 0:
            self.safety_start = safety
            self.start_errors, self.start_words = result.get("safety_errors"), result.get("safety_words")
            self.start_looping = result.get("safety_looping")
        if self.lowest_dev is None or wer < self.lowest_dev:
            self.lowest_dev, self.evals_since_best = wer, 0
        else:
            self.evals_since_best += 1
        lower = self.best is None or wer < self.best["wer"]
        unscored = over = looping = False  # safety in the loop off: the dev WER alone chooses
        note = None
        if self.safety_start is not None and safety is None:
            unscored = True
        elif self.safety_start is not None:
            interval = self._change_interval(result.get("safety_errors"))
            beyond = self.points(safety) > self.budget
            looping = (result.get("safety_looping") or 0) > (self.start_looping or 0)
            over = beyond and (interval is None or interval[0] > 0 or looping)
            self.trained_scored += step > 0
            self.streak = self.streak + 1 if over else 0
            if over:
                self.over.append({"step": step, "wer": wer, "safety_wer": safety, "interval": interval})
            elif beyond:
                note = (f"safety {self.points(safety):+.2f} WER points over step 0 at step {step}, within noise "
                        f"(paired 95% interval [{100 * interval[0]:+.2f}, {100 * interval[1]:+.2f}] on "
                        f"{len(self.start_words)} clips includes 0): within the budget")
        if lower and not (over or unscored):
            self.best = summary
            return True, note
        if over:
            return False, (f"safety over budget at step {step}: {self.points(safety):+.2f} WER points over step 0 "
                           + ("(a safety transcript loops that did not at step 0) " if looping else "")
                           + f"(budget +{self.budget:.2f}"
                           + (f"; {self.streak} of {self.patience} in a row stop the run)" if self.patience else ")")
                           + ("; its lower dev WER is not chosen for best_adapter" if lower else ""))
        if lower and unscored:
            self.unscored.append({"step": step, "wer": wer})
            return False, (f"step {step} has a lower dev WER than best_adapter but no safety score of its own "
                           "(--safety-every): not chosen")
        return False, note

    def _change_interval(self, errors: list[int] | None) -> list[float] | None:
        """Paired 95% interval of (safety WER now - at step 0) from per-clip errors; None without them."""
        if errors is None or self.start_errors is None or len(errors) != len(self.start_errors):
            return None
        from lora_training.evaluation.intervals import paired_delta_interval

        return paired_delta_interval(self.start_errors, errors, self.start_words)

    def stop_reason(self) -> str | None:
        """Why the run should stop now, or None."""
        if self.patience and self.streak >= self.patience:
            last = self.over[-self.streak:]
            return (f"safety WER {self.points(last[-1]['safety_wer']):+.2f} points over step 0 at {self.streak} "
                    f"consecutive safety evals (steps {', '.join(str(o['step']) for o in last)}; "
                    f"budget +{self.budget:.2f})")
        if self.dev_patience and self.evals_since_best >= self.dev_patience:
            return f"{self.evals_since_best} dev evals without a lower dev WER (patience {self.dev_patience})"
        return None

    def warning(self) -> str | None:
        """The loud line of a run whose every trained safety score went over the budget."""
        if self.safety_start is None or not self.trained_scored or len(self.over) < self.trained_scored:
            return None
        return (f"no trained checkpoint stayed within the safety budget (+{self.budget:.2f} WER points over step 0's "
                f"safety WER): best_adapter is step {self.best['step']}'s"
                + (" untouched model (a no-op adapter)" if self.best["step"] == 0 else "")
                + "; lower --lr or --max-steps, or add --replay-manifest data")

    def sidecar(self) -> dict[str, Any]:
        """best_adapter/'s record of the rule: what it was chosen on and what was passed over."""
        if self.safety_start is None:
            return {"metric": "wer (lowest)", "safety_budget": None,
                    "safety_rule": "off: chosen on the dev WER alone (no safety in the loop)"}
        best = self.best or {}
        return {"metric": "wer (lowest, within the safety budget)", "safety_budget": self.budget,
                "safety_rule": f"only dev evals with a safety score at most +{self.budget:.2f} WER points above "
                               "step 0's; evals without a score of their own are not eligible",
                "safety_start": self.safety_start,
                "safety_wer": best.get("safety_wer") if best.get("safety_step") == best.get("step") else None,
                # Lower dev WERs that were not chosen: over the budget, or without a safety score.
                "excluded_for_safety": [o["step"] for o in self.over if o["wer"] < best.get("wer", float("inf"))],
                "excluded_unscored": [u["step"] for u in self.unscored if u["wer"] < best.get("wer", float("inf"))],
                "no_trained_within_budget": self.warning() is not None}

    def summary(self) -> dict[str, Any]:
        """state.json's `selection`: the rule and where the run stands against it (`status`, the report)."""
        if self.safety_start is None:
            return {"rule": "lowest dev WER (safety in the loop off)", "safety_budget": None}
        side = self.sidecar()
        return {"rule": f"lowest dev WER within +{self.budget:.2f} safety WER points of step 0",
                "safety_budget": self.budget, "safety_patience": self.patience, "streak": self.streak,
                "over_budget_steps": [o["step"] for o in self.over],
                **{k: side[k] for k in ("excluded_for_safety", "excluded_unscored", "no_trained_within_budget")}}

    # --- checkpoints --------------------------------------------------------------------

    _KEPT = ("lowest_dev", "safety_start", "start_errors", "start_words", "start_looping", "streak", "trained_scored",
             "over", "unscored")

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint's share: `best` and `evals_since_best` under their old names, the rest in `selection`."""
        kept = {k: v for k, v in asdict(self).items() if k in self._KEPT}
        return {"best": self.best, "evals_since_best": self.evals_since_best, "selection": kept}

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Back to a checkpoint's decisions. One written before this rule lacks `selection`: its lowest dev
        WER was its best, and without step 0's safety WER the dev WER alone chooses, as it did."""
        self.best, self.evals_since_best = ckpt.get("best"), ckpt.get("evals_since_best", 0)
        kept = ckpt.get("selection") or {"lowest_dev": (self.best or {}).get("wer")}
        fresh = Selection(self.budget, self.patience, self.dev_patience)
        for name in self._KEPT:
            setattr(self, name, kept.get(name, getattr(fresh, name)))


def settle(selection: Selection, best_adapter: Path, state) -> None:
    """At the end of a run (or a stop): best_adapter/'s sidecar rewritten with the selection as it ended
    (evals after the chosen one may have been excluded since it was saved), state.json's `selection`, and
    the loud warning, logged and kept in state.json, of a run whose every trained step went over budget."""
    from lora_training.atomic import atomic_write_json
    from lora_training.models.adapters import SIDECAR, read_sidecar

    if best_adapter.is_dir():
        atomic_write_json(best_adapter / SIDECAR, {**read_sidecar(best_adapter), **selection.sidecar()})
    warning = selection.warning()
    if warning:
        log.warning("WARNING: %s", warning)
    state.update(selection=selection.summary(), selection_warning=warning)

"""Learn from corrections: review what `dictate --keep` heard, clip by clip, and keep the written form.

`dictate --keep` saves each utterance as `data/dictation/clips/<id>.wav` and appends a line to
`data/dictation/heard.jsonl`: `id`, `audio` (relative to that folder), `text` and `heard` (the
transcript), `duration`, ... Here the user listens (p), accepts the heard text (Enter or a), types
the written form (e), skips (s), discards a bad clip (d) or quits (q). Each accepted or edited clip
is written to the corrections manifest at once (atomically, so Ctrl-C loses nothing), as a
`source: correction` row that `run-experiment --corrections` trains on as the user's real speech:
their fixes of the model's own mistakes are the rows that teach the most.

A clip is reviewed when the corrections manifest has its row, or when `discarded.jsonl` beside
heard.jsonl lists it (a bad clip is bad whatever `--out`, so discards live with the clips). A re-run
shows only the others; `--all` shows every clip again, and a new decision replaces the old one (the
row is rewritten, never duplicated). Typed text is stripped and otherwise kept verbatim: the written
form (`@docs/plan.md`, `kubectl`) is what the model should learn to type.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from lora_training.atomic import atomic_write_files
from lora_training.data.audio import MAX_SECONDS, MIN_SECONDS, SAMPLE_RATE, audio_duration, audio_path_problem
from lora_training.data.manifest import Utterance, field_problems, load_numbered_manifest, manifest_bytes
from lora_training.errors import AudioError, LoraTrainingError, ManifestError
from lora_training.options import option

DICTATION_DIR = "data/dictation"
HEARD_MANIFEST = "heard.jsonl"
DISCARDED = "discarded.jsonl"
# Commands that play a wav file, tried in this order after sounddevice: macOS, ALSA, PulseAudio, FFmpeg.
PLAYER_COMMANDS = (("afplay",), ("aplay", "-q"), ("paplay",), ("ffplay", "-nodisp", "-autoexit", "-loglevel", "error"))
KEYS = "  p play | Enter/a accept | e edit | s skip | d discard | q quit > "


class PlayerError(LoraTrainingError):
    """No way to play a clip; said when the user presses p, never before."""


class ReviewError(LoraTrainingError):
    """A decision that cannot be written (unknown clip, empty text, a clip that cannot be kept): nothing written."""


@dataclass(frozen=True)
class HeardClip:
    """One line of heard.jsonl: `text` is proposed as the written form, `heard` is what the model said."""

    id: str
    audio: str  # absolute
    text: str
    heard: str
    duration: float | None
    where: str  # heard.jsonl:line


def load_heard(path: str | os.PathLike) -> list[HeardClip]:
    """Every clip of heard.jsonl; the first bad line raises `file:line: what, expected X, got Y`.

    Clips are not opened here: a missing wav only stops that clip from being kept, at review."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError([f"{path}: not found, expected the heard.jsonl that `dictate --keep` writes"])
    clips: list[HeardClip] = []
    first: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise ManifestError([f"{where}: invalid JSON ({e.msg} at column {e.colno}), expected one JSON object "
                                 f"per line, got {line[:60]!r}"]) from e
        if (problem := _heard_problem(d)) is not None:
            raise ManifestError([f"{where}: {problem}"])
        if d["id"] in first:
            raise ManifestError([f"{where}: duplicate id {d['id']!r}, expected unique ids, got it already at "
                                 f"{first[d['id']]}"])
        first[d["id"]] = where
        audio = os.path.normpath(os.path.join(os.path.abspath(path.parent), d["audio"]))
        clips.append(HeardClip(d["id"], audio, d["text"], d.get("heard", d["text"]), d.get("duration"), where))
    return clips


def _heard_problem(d: Any) -> str | None:
    if not isinstance(d, dict):
        return f"line is not an object, expected a JSON object with id, audio and text, got {str(d)[:60]!r}"
    for key in ("id", "audio"):
        if not (isinstance(d.get(key), str) and d[key].strip()):
            return f"missing or empty {key!r}, expected a non-empty string, got {d.get(key)!r}"
    for key in ("text", "heard"):
        if (key == "text" or key in d) and not isinstance(d.get(key), str):
            return f"missing or invalid {key!r}, expected the transcript as a string, got {d.get(key)!r}"
    duration = d.get("duration")
    if duration is not None and not (isinstance(duration, (int, float)) and not isinstance(duration, bool)
                                     and 0 < duration < float("inf")):
        return f"invalid 'duration', expected a number of seconds > 0, got {duration!r}"
    return None


class Decisions:
    """The corrections manifest and the discard log: which clips are reviewed, and each new decision
    written at once, atomically, in place of any earlier decision on the same clip."""

    def __init__(self, out: Path, discarded: Path):
        self.out, self.discarded = out, discarded
        self.rows = self._lines(out, manifest=True)  # id -> its line, verbatim
        self.discards = self._lines(discarded, manifest=False)

    @staticmethod
    def _lines(path: Path, *, manifest: bool) -> dict[str, str]:
        text = path.read_text(encoding="utf-8-sig") if path.is_file() else ""
        if manifest and text.strip():  # every problem with file:line before anything is rewritten
            load_numbered_manifest(path, check_audio=False)
        lines: dict[str, str] = {}
        for lineno, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                uid = json.loads(line).get("id")
            except (json.JSONDecodeError, AttributeError):
                uid = None
            if not isinstance(uid, str):
                raise ManifestError([f"{path}:{lineno}: no clip id, expected a JSON object with the 'id' of a "
                                     f"dictated clip, got {line[:60]!r}"])
            lines[uid] = line
        return lines

    def reviewed(self, uid: str) -> str | None:
        """'accepted', 'edited', 'discarded', or None."""
        if uid in self.discards:
            return "discarded"
        return json.loads(self.rows[uid]).get("status", "accepted") if uid in self.rows else None

    def kept_text(self, uid: str) -> str | None:
        return json.loads(self.rows[uid])["text"] if uid in self.rows else None

    def apply(self, clip: HeardClip, text: str | None) -> str:
        """Keep the clip with `text`, stripped ('accepted' when it is the heard text, else 'edited'), or
        discard it when `text` is None; returns its new state. Raises ReviewError before any write."""
        row, state = None, "discarded"
        if text is not None:
            duration, problem = trainable(clip)
            if problem:
                raise ReviewError(f"{clip.where}: {problem}; it cannot be kept, only discarded")
            state = "accepted" if text.strip() == clip.text.strip() else "edited"
            row = Utterance(audio=clip.audio, text=text.strip(), id=clip.id, duration=round(duration, 3),
                            source="correction", heard=clip.heard, status=state, reviewed=_now())
            if problems := field_problems(row.to_dict()):
                raise ReviewError(f"clip {clip.id}: {problems[0]}")
        rows, discards = dict(self.rows), dict(self.discards)
        rows.pop(clip.id, None)
        discards.pop(clip.id, None)
        if row is None:
            discards[clip.id] = json.dumps({"id": clip.id, "reviewed": _now()}, ensure_ascii=False)
        else:
            rows[clip.id] = manifest_bytes(self.out, [row]).decode("utf-8").rstrip("\n")
        files = {path: "".join(line + "\n" for line in new.values()).encode("utf-8")
                 for path, old, new in ((self.out, self.rows, rows), (self.discarded, self.discards, discards))
                 if new != old}
        atomic_write_files(files)
        self.rows, self.discards = rows, discards
        return state


def open_review(options: CorrectionsOptions) -> tuple[list[HeardClip], Decisions]:
    """heard.jsonl's clips and the decisions made on them so far: what `just corrections` and the studio's
    Corrections page review, each decision written by `Decisions.apply`."""
    folder = Path(options.dictation_dir)
    return load_heard(folder / HEARD_MANIFEST), Decisions(Path(options.out), folder / DISCARDED)


class Player:
    """Plays a clip: `auto` tries sounddevice, then each of PLAYER_COMMANDS found on PATH, and keeps
    the first that works; `sounddevice`; or any command, which gets the clip's path appended."""

    def __init__(self, spec: str):
        self.spec = spec
        self._working: Callable[[str], None] | None = None

    def __call__(self, path: str) -> None:
        if self._working is not None:
            return self._working(path)
        reasons = []
        for name, way in self._candidates():
            try:
                way(path)
            except PlayerError as e:
                reasons.append(f"{name}: {e}")
                continue
            self._working = way
            return None
        wanted = ("sounddevice or one of " + ", ".join(c[0] for c in PLAYER_COMMANDS) + " on PATH"
                  if self.spec == "auto" else self.spec)
        raise PlayerError(f"player {self.spec}: cannot play {path}, expected {wanted} to work (or --player CMD), "
                          f"got " + ("; ".join(reasons) or "none installed"))

    def _candidates(self) -> list[tuple[str, Callable[[str], None]]]:
        if self.spec in ("auto", "sounddevice"):
            found = [("sounddevice", _play_sounddevice)]
            if self.spec == "auto":
                found += [(c[0], _command(c)) for c in PLAYER_COMMANDS if shutil.which(c[0])]
            return found
        argv = shlex.split(self.spec)
        if not argv or not shutil.which(argv[0]):
            raise PlayerError(f"player: {self.spec!r} not found on PATH, expected a command that plays a wav file "
                              f"(e.g. aplay, afplay, ffplay), or auto")
        return [(argv[0], _command(argv))]


def _play_sounddevice(path: str) -> None:
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:  # OSError: the PortAudio library is absent
        raise PlayerError(f"not usable ({type(e).__name__}: {e})") from e
    from lora_training.data.audio import load_audio

    try:
        sd.play(load_audio(path, max_seconds=None), SAMPLE_RATE)
        sd.wait()
    except (sd.PortAudioError, AudioError) as e:
        raise PlayerError(str(e)) from e


def _command(argv) -> Callable[[str], None]:
    def play(path: str) -> None:
        try:
            done = subprocess.run([*argv, path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, check=False)
        except OSError as e:
            raise PlayerError(e.strerror or type(e).__name__) from e
        if done.returncode != 0:
            last = (done.stderr or "").strip().splitlines()[-1:] or ["no message"]
            raise PlayerError(f"exit status {done.returncode}: {last[0]}")
    return play


@dataclass
class CorrectionsOptions:
    dictation_dir: str = option(DICTATION_DIR, f"folder of `dictate --keep`: {HEARD_MANIFEST} and clips/")
    out: str = option("data/corrections.jsonl", "corrections manifest to write (train on it with run-experiment "
                                                "--corrections)")
    player: str = option("auto", "how p plays a clip: auto (sounddevice, else afplay/aplay/paplay/ffplay on PATH), "
                                 "sounddevice, or a command the clip's path is appended to", metavar="CMD")
    review_all: bool = option(False, "show clips already reviewed too; a new decision replaces the old one",
                              flag="--all")


@dataclass
class ReviewSummary:
    corrections: str
    clips: int  # in heard.jsonl
    shown: int
    accepted: int = 0
    edited: int = 0
    discarded: int = 0
    skipped: int = 0
    unreviewed: int = 0  # after the session
    quit: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        end = "stopped early" if self.quit else "done"
        kept = self.accepted + self.edited
        return (f"{end}: {self.accepted} accepted, {self.edited} edited, {self.discarded} discarded, "
                f"{self.skipped} skipped; {self.unreviewed} of {self.clips} clips still to review; "
                f"corrections: {self.corrections}"
                + (f" (train on them: just run-experiment NAME --corrections {self.corrections})" if kept else ""))


class _Quit(Exception):
    """q pressed or input ended."""


def review_corrections(options: CorrectionsOptions, *, ask: Callable[[str], str] = input,
                       play: Callable[[str], None] | None = None,
                       out: Callable[[str], None] = print) -> ReviewSummary:
    """`just corrections`: each clip not yet reviewed (every clip with --all), one decision at a time."""
    clips, decisions = open_review(options)
    todo = [c for c in clips if options.review_all or decisions.reviewed(c.id) is None]
    summary = ReviewSummary(options.out, len(clips), len(todo))
    session = _Session(decisions, ask, play or Player(options.player), out)
    out(f"{len(todo)} of {len(clips)} dictated clips to review into {options.out}")
    try:
        for index, clip in enumerate(todo, start=1):
            decision = session.review(clip, f"[{index}/{len(todo)}]")
            setattr(summary, decision, getattr(summary, decision) + 1)
    except _Quit:
        summary.quit = True
    except KeyboardInterrupt:
        out(f"\ninterrupted: every decision made is saved in {options.out} and {decisions.discarded}")
        raise
    summary.unreviewed = sum(decisions.reviewed(c.id) is None for c in clips)
    return summary


class _Session:
    """Shows one clip at a time and reads keys until a decision, which `Decisions` writes at once."""

    def __init__(self, decisions: Decisions, ask, play, say):
        self.decisions, self.ask, self.play, self.say = decisions, ask, play, say

    def review(self, clip: HeardClip, counter: str) -> str:
        """The decision on one clip: 'accepted', 'edited', 'discarded' or 'skipped'."""
        duration, problem = trainable(clip)
        self.say(f"\n{counter} {clip.id}  " + (f"{duration:.1f} s" if duration else "? s"))
        self.say(f"  heard: {clip.text}" if clip.text.strip() else "  heard: (nothing)")
        if (before := self.decisions.reviewed(clip.id)) is not None:
            self.say(f"  reviewed before: {before}"
                     + (f": {self.decisions.kept_text(clip.id)}" if before == "edited" else ""))
        if problem:
            self.say(f"  ! {clip.where}: {problem}; it cannot be kept (d discards it)")
        while True:
            key = self._key(KEYS)
            if key == "p":
                self._play(clip)
            elif key == "s":
                return "skipped"
            elif key == "d":
                return self.decisions.apply(clip, None)
            elif problem:
                self.say("  this clip cannot be kept: d discards it, s skips it")
            elif key in ("", "a"):
                if not clip.text.strip():
                    self.say("  nothing was heard: e types what was said")
                elif decided := self._keep(clip, clip.text):
                    return decided
            elif key == "e":
                text = self._text("  written form (Enter: back) > ")
                if text and (decided := self._keep(clip, text)):
                    return decided

    def _keep(self, clip: HeardClip, text: str) -> str | None:
        try:
            return self.decisions.apply(clip, text)
        except ReviewError as e:
            self.say(f"  ! not kept: {e}")
            return None

    def _play(self, clip: HeardClip) -> None:
        try:
            self.play(clip.audio)
        except PlayerError as e:
            self.say(f"  ! {e}")

    def _key(self, prompt: str) -> str:
        while True:
            key = self._text(prompt).lower()
            if key == "q":
                raise _Quit
            if key in ("", "a", "e", "p", "s", "d"):
                return key
            self.say(f"  unknown key, expected Enter or one of p, a, e, s, d, q, got {key!r}")

    def _text(self, prompt: str) -> str:
        """A stripped line; end of input quits."""
        try:
            return self.ask(prompt).strip()
        except EOFError:
            raise _Quit from None


def trainable(clip: HeardClip) -> tuple[float | None, str | None]:
    """(duration, why the clip cannot be trained on or None): its wav must exist and fit a clip's length."""
    if (problem := audio_path_problem(clip.audio)) is not None:
        return clip.duration, f"{problem}, got {clip.audio}"
    try:
        duration = clip.duration or audio_duration(clip.audio)
    except AudioError as e:
        return None, str(e)
    if not MIN_SECONDS <= duration <= MAX_SECONDS:
        return duration, (f"clip length out of range, expected {MIN_SECONDS:g}-{MAX_SECONDS:g} s to train on, "
                          f"got {duration:.2f} s")
    return duration, None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

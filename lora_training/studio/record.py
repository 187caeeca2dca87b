"""The Record page: `just record` in the browser, writing the same manifest the same way.

The prompts are `load_prompts(vocabulary, count, seed)`, so the page and the terminal recorder
agree on them and a prompt whose text is already in the manifest counts as done in both. The
browser records PCM with Web Audio and uploads a WAV (no MediaRecorder: its webm would need
ffmpeg); the server converts it to 16 kHz mono, trims the key sounds as the terminal does, and
answers with the on-the-spot checks of `record` and `verify`: levels, issues, and the baseline
model's transcript against the prompt. A take waits in server memory under a random id until it
is kept (written by `save_take`, the terminal recorder's own function) or re-taken.
"""

from __future__ import annotations

import io
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lora_training.capture.dictate import TorchTranscriber
from lora_training.capture.record import (TOO_SHORT, describe_levels, load_prompts, recorded, save_take,
                                          to_sample_rate, trim_key_sounds)
from lora_training.data.audio import MAX_SECONDS, MIN_SECONDS, SAMPLE_RATE
from lora_training.data.manifest import Utterance
from lora_training.data.quality import Issue, check_audio
from lora_training.errors import ConfigError, LoraTrainingError
from lora_training.evaluation.verify import DEFAULT_MAX_WER, prompt_wer
from lora_training.studio.common import BadInput, NotFound, form, is_htmx, render, required, studio_options

if TYPE_CHECKING:
    from lora_training.studio.serve import StudioOptions
    from lora_training.synth.sentences import GeneratedSentence

# A 30 s take as the page encodes it (16-bit mono) at 96 kHz is 5.8 MB; 16 MB leaves room for a
# stereo or float WAV from another client and still refuses a runaway upload before it is parsed.
MAX_UPLOAD_BYTES = 16 * 1024 * 1024
# Takes neither kept nor re-taken (a skipped prompt, a closed tab) are dropped oldest first:
# at most 8 x 30 s x 64 kB/s = 15 MB of memory.
PENDING_TAKES = 8


@dataclass
class Take:
    """One checked take; `id` is None when it is too short to keep (it is then not stored)."""

    number: int
    prompt: GeneratedSentence
    audio: np.ndarray
    levels: str
    issues: list[Issue]
    id: str | None = None
    transcript: str | None = None
    wer: float | None = None
    baseline_error: str | None = None

    @property
    def too_short(self) -> bool:
        return len(self.audio) < MIN_SECONDS * SAMPLE_RATE

    @property
    def far(self) -> bool:
        return self.wer is not None and self.wer > DEFAULT_MAX_WER


@dataclass
class Board:
    """Where the user stands: the prompts, which are done (text -> id) and which one is shown."""

    prompts: list[GeneratedSentence]
    done: dict[str, str | None]
    number: int | None = None
    saved: Utterance | None = None
    todo: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.todo = [n for n, p in enumerate(self.prompts, start=1) if p.text not in self.done]

    @property
    def prompt(self) -> GeneratedSentence | None:
        return self.prompts[self.number - 1] if self.number else None

    @property
    def done_id(self) -> str | None:
        return self.done.get(self.prompt.text) if self.prompt else None

    @property
    def next(self) -> int | None:
        """The first prompt still to record after this one, wrapping round; None when no other is left."""
        later = [n for n in self.todo if n > (self.number or 0)] + [n for n in self.todo if n < (self.number or 0)]
        return later[0] if later else None


class Baseline:
    """The baseline model, loaded on the first take behind a lock and reused; one take decodes at a
    time. A model that fails to load is not retried on every take (a hub timeout would stall each)."""

    def __init__(self, reference: str):
        self.reference = reference
        self._lock = threading.Lock()
        self._transcriber: TorchTranscriber | None = None
        self._failure: LoraTrainingError | None = None

    def transcribe(self, audio: np.ndarray) -> str:
        from lora_training.models.registry import resolve_model
        from lora_training.models.runtime import pick_device

        with self._lock:
            if self._failure is not None:
                raise self._failure
            if self._transcriber is None:
                try:
                    self._transcriber = TorchTranscriber(*resolve_model(self.reference, device=pick_device()))
                except LoraTrainingError as e:
                    self._failure = e
                    raise
            return self._transcriber.transcribe(audio)


class Desk:
    """The page's state for one server: the pending takes, the baseline model, and the lock that
    makes checking for a duplicate and appending to the manifest one step."""

    def __init__(self, options: StudioOptions):
        self.options = options
        self.baseline = Baseline(options.model)
        self.pending: OrderedDict[str, Take] = OrderedDict()
        self._lock = threading.Lock()

    def board(self, number: int | None = None, saved: Utterance | None = None) -> Board:
        """The prompts as `just record` makes them, read afresh (12 ms for 100) so an edited vocabulary shows."""
        o = self.options
        try:
            prompts = load_prompts(o.vocabulary, o.count, seed=o.seed)
        except ConfigError as e:
            raise BadInput(f"{e} (the prompts come from the studio's --vocabulary FILE)") from e
        board = Board(prompts, {u.text: u.id for u in recorded(o.manifest)}, saved=saved)
        board.number = number if number is not None else next(iter(board.todo), None)
        return board

    def prompt(self, raw: str | None) -> Board:
        """The board at prompt `raw` (1-based, as the page shows it)."""
        board = self.board()
        try:
            number = int(raw or "")
        except ValueError:
            raise BadInput(f"prompt: not a number, expected a prompt number 1-{len(board.prompts)}, "
                           f"got {raw!r}") from None
        if not 1 <= number <= len(board.prompts):
            raise NotFound(f"prompt {number}: no such prompt, expected 1-{len(board.prompts)} "
                           f"(--count {self.options.count}), got {number}")
        board.number = number
        return board

    def check(self, number: str, text: str, data: bytes) -> Take:
        """Decode and check a take of prompt `number`, read as `text`; one long enough to keep waits for Keep."""
        board = self.prompt(number)
        if text != board.prompt.text:
            raise BadInput(f"prompt {board.number}: changed since the page was loaded (was --vocabulary edited?), "
                           f"expected {board.prompt.text!r}, got {text!r}; reload the page")
        if board.done_id is not None:
            raise BadInput(f"prompt {board.number}: already recorded as {board.done_id} in "
                           f"{self.options.manifest}, expected a prompt still to record, got {board.prompt.text!r}")
        audio = trim_key_sounds(decode_take(data))
        levels, issues = check_audio(audio)
        take = Take(board.number, board.prompt, audio, describe_levels(levels), issues)
        if take.too_short:
            return take
        try:
            take.transcript = self.baseline.transcribe(audio)
        except LoraTrainingError as e:
            take.baseline_error = str(e)
        else:
            take.wer = prompt_wer(Utterance(audio="", text=take.prompt.text, spoken=take.prompt.spoken),
                                  take.transcript)
        take.id = secrets.token_urlsafe(12)
        with self._lock:
            self.pending[take.id] = take
            while len(self.pending) > PENDING_TAKES:
                self.pending.popitem(last=False)
        return take

    def take(self, take_id: str) -> Take:
        with self._lock:
            return self._pending(take_id)

    def discard(self, take_id: str) -> Take:
        with self._lock:
            return self.pending.pop(self._pending(take_id).id)

    def keep(self, take_id: str) -> Board:
        """Write the take into the manifest, then the board at the next prompt still to record."""
        with self._lock:
            take = self._pending(take_id)
            done = {u.text: u.id for u in recorded(self.options.manifest)}
            if take.prompt.text in done:
                del self.pending[take.id]
                raise BadInput(f"prompt {take.number}: already recorded as {done[take.prompt.text]} in "
                               f"{self.options.manifest}, expected a prompt still to record, "
                               f"got {take.prompt.text!r}")
            utt = save_take(self.options.manifest, take.prompt, take.audio, speaker=self.options.speaker)
            del self.pending[take.id]
        board = self.board(take.number, saved=utt)
        board.number = board.next
        return board

    def _pending(self, take_id: str) -> Take:
        if take_id not in self.pending:
            raise NotFound(f"take {take_id}: no such take, expected one still waiting for Keep or Re-take "
                           f"(the last {PENDING_TAKES} are held), got none")
        return self.pending[take_id]


def decode_take(data: bytes) -> np.ndarray:
    """An uploaded WAV as 16 kHz mono float32; anything else is refused before it is stored."""
    if not data:
        raise BadInput("audio: empty upload, expected a WAV file of the take, got 0 bytes")
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise BadInput(f"audio: not a WAV file, expected RIFF/WAVE data, got {data[:12]!r}")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as e:
        raise BadInput(f"audio: unreadable WAV, expected PCM samples, got error: {e}") from e
    if len(samples) == 0:
        raise BadInput("audio: empty take, expected some speech, got 0 samples")
    if len(samples) > MAX_SECONDS * rate:
        raise BadInput(f"audio: take too long, expected at most {MAX_SECONDS:g} s, "
                       f"got {len(samples) / rate:.2f} s")
    return to_sample_rate(samples.mean(axis=1, dtype=np.float32), rate)


def wav_bytes(audio: np.ndarray) -> bytes:
    """A pending take as the 16-bit WAV it would be kept as, to listen to before keeping it."""
    buf = io.BytesIO()
    sf.write(buf, audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


_DESK_LOCK = threading.Lock()


def _desk(request: Request) -> Desk:
    """The app's one Desk, made on first use: app.py builds the app and knows nothing of this page's state."""
    state = request.app.state
    with _DESK_LOCK:
        if not hasattr(state, "record_desk"):
            state.record_desk = Desk(studio_options(request))
        return state.record_desk


def _panel(request: Request, board: Board) -> Response:
    template = "record_panel.html" if is_htmx(request) else "record.html"
    return render(request, template, board=board, max_seconds=MAX_SECONDS)


def page(request: Request) -> Response:
    desk = _desk(request)
    raw = request.query_params.get("prompt")
    return _panel(request, desk.board() if raw is None else desk.prompt(raw))


async def upload(request: Request) -> Response:
    size = request.headers.get("content-length", "")
    if size.isdigit() and int(size) > MAX_UPLOAD_BYTES:
        raise BadInput(f"audio: upload too large, expected at most {MAX_UPLOAD_BYTES // 2**20} MB "
                       f"(a {MAX_SECONDS:g} s take), got {int(size) / 2**20:.1f} MB")
    fields = await form(request)
    number = required(fields, "prompt", "the number of the prompt this take reads")
    text = required(fields, "text", "the text of the prompt this take reads")
    audio = (await request.form()).get("audio")
    if not isinstance(audio, UploadFile):
        raise BadInput("audio: missing, expected a WAV file upload of the take, got nothing")
    data = await audio.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise BadInput(f"audio: upload too large, expected at most {MAX_UPLOAD_BYTES // 2**20} MB, got more")
    take = await run_in_threadpool(_desk(request).check, number, text, data)
    return render(request, "record_take.html", take=take, TOO_SHORT=TOO_SHORT, max_wer=DEFAULT_MAX_WER)


def take_audio(request: Request) -> Response:
    return Response(wav_bytes(_desk(request).take(request.path_params["take"]).audio), media_type="audio/wav")


def keep(request: Request) -> Response:
    board = _desk(request).keep(request.path_params["take"])
    response = render(request, "record_panel.html", board=board, max_seconds=MAX_SECONDS)
    # The button targets its own error slot; a kept take replaces the whole panel instead.
    response.headers.update({"HX-Retarget": "#recorder", "HX-Reswap": "innerHTML",
                             "HX-Push-Url": f"/record?prompt={board.number}" if board.number else "/record"})
    return response


def discard(request: Request) -> Response:
    take = _desk(request).discard(request.path_params["take"])
    return render(request, "record_discarded.html", take=take)


ROUTES = [
    Route("/record", page),
    Route("/record/takes", upload, methods=["POST"]),
    Route("/record/takes/{take}/audio", take_audio),
    Route("/record/takes/{take}/keep", keep, methods=["POST"]),
    Route("/record/takes/{take}/discard", discard, methods=["POST"]),
]

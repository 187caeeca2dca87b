"""The Corrections page: the clips `dictate --keep` kept, to play, accept, fix or discard.

Every decision goes through `Decisions.apply` (capture/corrections.py), the same code as `just corrections`,
so a clip decided here is reviewed there and the corrections manifest gets the same `source: correction`
row. Clips are named by their heard.jsonl id; the audio path comes from heard.jsonl, never the URL.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lora_training.capture.corrections import (HEARD_MANIFEST, CorrectionsOptions, Decisions, HeardClip,
                                               ReviewError, open_review, trainable)
from lora_training.studio.common import BadInput, NotFound, audio_response, form, render, required, studio_options
from lora_training.studio.serve import StudioOptions

ACTIONS = ("accept", "edit", "discard")
SHOW = ("todo", "all")


@dataclass
class Card:
    """One clip as the page shows it: its state (None: not reviewed), the text to propose, why it cannot be kept."""

    clip: HeardClip
    state: str | None
    text: str
    problem: str | None


def _review(options: StudioOptions) -> tuple[list[HeardClip], Decisions]:
    return open_review(CorrectionsOptions(dictation_dir=options.dictation_dir, out=options.corrections))


def _card(clip: HeardClip, decisions: Decisions) -> Card:
    return Card(clip, decisions.reviewed(clip.id), decisions.kept_text(clip.id) or clip.text, trainable(clip)[1])


def _clip(clips: list[HeardClip], clip_id: str, options: StudioOptions) -> HeardClip:
    if (clip := next((c for c in clips if c.id == clip_id), None)) is None:
        raise NotFound(f"clip: unknown id, expected one of {Path(options.dictation_dir) / HEARD_MANIFEST}, "
                       f"got {clip_id!r}")
    return clip


def page(request: Request) -> Response:
    options = studio_options(request)
    show = request.query_params.get("show", "todo")
    if show not in SHOW:
        raise BadInput(f"show: expected one of {', '.join(SHOW)}, got {show!r}")
    heard = Path(options.dictation_dir) / HEARD_MANIFEST
    if not heard.is_file():
        return render(request, "corrections.html", heard=heard, cards=None, show=show)
    clips, decisions = _review(options)
    cards = [_card(clip, decisions) for clip in clips]
    states = Counter(card.state for card in cards)
    shown = [card for card in cards if show == "all" or card.state is None]
    return render(request, "corrections.html", heard=heard, cards=shown, total=len(cards), states=states, show=show)


def audio(request: Request) -> Response:
    options = studio_options(request)
    clips, _ = _review(options)
    return audio_response(_clip(clips, required(dict(request.query_params), "id", "a clip id"), options).audio)


async def decide(request: Request) -> Response:
    """Accept the heard text, save the typed one, or discard; a refusal (empty text, a clip whose wav is gone)
    comes back as the card with the error in it, and nothing is written."""
    options = studio_options(request)
    fields = await form(request)
    action = fields.get("action", "")
    if action not in ACTIONS:
        raise BadInput(f"action: expected one of {', '.join(ACTIONS)}, got {action!r}")
    clips, decisions = _review(options)
    clip = _clip(clips, required(fields, "id", "a clip id"), options)
    text = {"accept": clip.text, "edit": fields.get("text", ""), "discard": None}[action]
    try:
        decisions.apply(clip, text)
    except ReviewError as e:
        card = _card(clip, decisions)
        card.text = fields.get("text", card.text)
        return render(request, "corrections_clip.html", status=400, card=card, message=str(e))
    return render(request, "corrections_clip.html", card=_card(clip, decisions), saved=True)


ROUTES = [Route("/corrections", page), Route("/corrections/audio", audio),
          Route("/corrections/decide", decide, methods=["POST"])]

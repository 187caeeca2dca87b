"""What every page shares: the templates, rendering, the errors a page turns into a status, and file answers.

A page module (record.py, data.py, runs.py, results.py, corrections.py) exports `ROUTES`, reads its
settings from `studio_options(request)` and raises `BadInput` (400) or `NotFound` (404) with a one-line
message in the toolkit's shape (`<where>: <what>, expected X, got Y`); app.py turns those, and any
LoraTrainingError from the library, into the error fragment (htmx) or the error page.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.templating import Jinja2Templates

from lora_training.errors import LoraTrainingError

if TYPE_CHECKING:
    from lora_training.studio.serve import StudioOptions

PACKAGE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(PACKAGE / "templates"))
PAGES = (("record", "Record"), ("data", "Data"), ("runs", "Runs"), ("results", "Results"),
         ("corrections", "Corrections"))


class BadInput(LoraTrainingError):
    """The request itself is wrong (a missing field, a value out of range): 400, nothing written."""


class NotFound(LoraTrainingError):
    """The run, manifest, row or clip the request names does not exist: 404."""


def studio_options(request: Request) -> StudioOptions:
    return request.app.state.options


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> Response:
    """A template with the studio's options and the active page (for the navigation) in its context."""
    page = request.url.path.strip("/").split("/")[0] or "runs"
    return templates.TemplateResponse(request, template, {"options": studio_options(request), "pages": PAGES,
                                                          "active": page, **context}, status_code=status)


def audio_response(path: str | Path) -> Response:
    """A clip from disk. Callers look the path up in a manifest, run or heard.jsonl: never from the URL."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path}: audio file not found, expected the clip the manifest names")
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type="audio/wav" if path.suffix.lower() == ".wav" else media)


async def form(request: Request) -> dict[str, str]:
    """The posted form as text fields (an uploaded file is read by the page that expects it)."""
    data = await request.form()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def required(fields: dict[str, str], name: str, what: str) -> str:
    value = fields.get(name, "").strip()
    if not value:
        raise BadInput(f"{name}: missing, expected {what}, got nothing")
    return value

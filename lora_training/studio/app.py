"""The ASGI app: the pages' routes, the vendored static files, the access guard and the error pages."""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lora_training.errors import LoraTrainingError
from lora_training.studio import corrections, data, record, results, runs
from lora_training.studio.common import PACKAGE, BadInput, NotFound, is_htmx, render
from lora_training.studio.serve import StudioOptions

TOKEN_COOKIE = "studio_token"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class Guard:
    """Refuses a request without the token (when one is set) and any cross-site write: a page on
    another site cannot post to the studio through the user's browser, token or not."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if scope["method"] in UNSAFE and origin and urlsplit(origin).netloc != headers.get("host"):
            return await PlainTextResponse(f"origin: {origin} is another site, expected this studio's own "
                                           f"pages", status_code=403)(scope, receive, send)
        if self.token is None:
            return await self.app(scope, receive, send)
        from_query = parse_qs(scope.get("query_string", b"").decode()).get("token", [None])[0]
        cookie = SimpleCookie(headers.get("cookie", "")).get(TOKEN_COOKIE)
        given = headers.get("x-studio-token") or from_query or (cookie.value if cookie else None)
        if not (given and hmac.compare_digest(given.encode(), self.token.encode())):
            return await PlainTextResponse("token: missing or wrong, expected the --token the studio was started "
                                           "with (open the URL it printed)", status_code=401)(scope, receive, send)
        if from_query is None:
            return await self.app(scope, receive, send)

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append(
                    (b"set-cookie", f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()))
            await send(message)

        return await self.app(scope, receive, send_with_cookie)


def _error(request: Request, status: int, message: str) -> Response:
    template = "_error.html" if is_htmx(request) else "error.html"
    return render(request, template, status=status, message=message)


async def _library_error(request: Request, exc: Exception) -> Response:
    status = 404 if isinstance(exc, NotFound) else 400 if isinstance(exc, (BadInput, LoraTrainingError)) else 500
    return _error(request, status, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if exc.status_code != 404 else f"{request.url.path}: no such page"
    return _error(request, exc.status_code, message)


def _home(request: Request) -> Response:
    return RedirectResponse("/runs", status_code=303)


def create_app(options: StudioOptions) -> Starlette:
    routes = [Route("/", _home), Mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static"),
              *record.ROUTES, *data.ROUTES, *runs.ROUTES, *results.ROUTES, *corrections.ROUTES]
    app = Starlette(routes=routes, exception_handlers={LoraTrainingError: _library_error,
                                                       HTTPException: _http_error})
    app.state.options = options
    app.add_middleware(Guard, token=options.token)
    return app

"""The studio under test: a real uvicorn server on a free port, and Debian's chromium driven by Playwright.

`studio` starts a server for given StudioOptions (stopped at teardown); `launch_browser` starts chromium
with extra flags (the record test feeds a wav file as the microphone); `shoot` writes a screenshot under
the test's temp folder (and, when STUDIO_SCREENSHOTS names a folder, a copy there).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("STUDIO_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                      shutil.which("google-chrome"),
                      "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def studio():
    """studio(options_without_port) -> base URL of a running server with those options."""
    import uvicorn

    from lora_training.studio.app import create_app
    from lora_training.studio.serve import StudioOptions

    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**fields) -> str:
        options = StudioOptions(port=_free_port(), no_browser=True, **fields)
        server = uvicorn.Server(uvicorn.Config(create_app(options), host=options.host, port=options.port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.time() + 20
        while not server.started:
            if time.time() > deadline or not thread.is_alive():
                raise RuntimeError("studio server did not start")
            time.sleep(0.05)
        servers.append((server, thread))
        return f"http://{options.host}:{options.port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def playwright_driver():
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium not found: scripts/system-deps.sh installs Debian's chromium (or set STUDIO_CHROMIUM)")
        pytest.skip("no chromium (scripts/system-deps.sh installs it; or set STUDIO_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p, path


@pytest.fixture
def launch_browser(playwright_driver):
    """launch_browser(*extra_flags) -> a Playwright Browser (closed at teardown)."""
    p, path = playwright_driver
    browsers = []

    def launch(*extra: str):
        browser = p.chromium.launch(executable_path=path, headless=True, args=[*CHROMIUM_FLAGS, *extra])
        browsers.append(browser)
        return browser

    yield launch
    for browser in browsers:
        browser.close()


@pytest.fixture
def page(launch_browser):
    """A 1280x800 page in a fresh browser."""
    context = launch_browser().new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


@pytest.fixture
def shoot(tmp_path):
    """shoot(page, name) -> path of a full-page screenshot under the test's temp folder."""
    def take(page, name: str) -> Path:
        path = tmp_path / "screenshots" / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if (extra := os.environ.get("STUDIO_SCREENSHOTS")):
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(extra) / path.name)
        return path

    return take

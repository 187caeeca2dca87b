"""The studio's shell: access guard (token, cross-site writes), static files, error pages, options, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from lora_training.errors import ConfigError
from lora_training.studio.app import create_app
from lora_training.studio.serve import StudioOptions

REPO = Path(__file__).resolve().parents[2]


def _client(tmp_path, **fields) -> TestClient:
    return TestClient(create_app(StudioOptions(outputs=str(tmp_path), no_browser=True, **fields)))


def test_home_redirects_to_runs_and_static_is_vendored(tmp_path):
    client = _client(tmp_path)
    home = client.get("/", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == "/runs"
    htmx = client.get("/static/htmx.min.js")
    assert htmx.status_code == 200 and b"htmx" in htmx.content[:200]
    assert client.get("/static/htmx.LICENSE").status_code == 200
    assert "http" not in Path(REPO / "lora_training/studio/templates/base.html").read_text().split("<body>")[0]


def test_unknown_page_is_a_404_page_and_fragment(tmp_path):
    client = _client(tmp_path)
    page = client.get("/no/such/page")
    assert page.status_code == 404 and "/no/such/page: no such page" in page.text and "<nav" in page.text
    fragment = client.get("/no/such/page", headers={"HX-Request": "true"})
    assert fragment.status_code == 404 and "<nav" not in fragment.text and 'role="alert"' in fragment.text


def test_token_is_required_then_carried_by_cookie(tmp_path):
    client = _client(tmp_path, host="0.0.0.0", token="s3cret")
    refused = client.get("/static/studio.css")
    assert refused.status_code == 401 and "token" in refused.text
    assert client.get("/static/studio.css?token=wrong").status_code == 401
    first = client.get("/static/studio.css?token=s3cret")
    assert first.status_code == 200 and "studio_token=s3cret" in first.headers["set-cookie"]
    assert client.get("/static/studio.css").status_code == 200  # the cookie now
    other = _client(tmp_path, host="0.0.0.0", token="s3cret")
    assert other.get("/static/studio.css", headers={"X-Studio-Token": "s3cret"}).status_code == 200


def test_cross_site_writes_are_refused_without_touching_anything(tmp_path):
    client = _client(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    refused = client.post("/runs", data={"name": "x"}, headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403 and "another site" in refused.text
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("fields, message", [
    ({"host": "0.0.0.0"}, "--token"),
    ({"host": "192.168.1.5", "token": ""}, "--token"),
    ({"port": 0}, "port"),
])
def test_bad_options_are_one_line_errors(fields, message):
    with pytest.raises(ConfigError, match=message):
        StudioOptions(**fields)


def test_loopback_needs_no_token_and_url_carries_one():
    assert StudioOptions(host="::1").url == "http://[::1]:8765/"
    assert StudioOptions(host="0.0.0.0", token="t", port=9000).url == "http://0.0.0.0:9000/?token=t"


def test_cli_refuses_an_open_address_without_token():
    done = subprocess.run([sys.executable, "main.py", "studio", "--host", "0.0.0.0", "--no-browser"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "--token" in done.stderr


def test_demo_serves_the_demo_folders_except_those_given():
    options = StudioOptions(demo=True, vocabulary="my/vocab.txt")
    assert options.outputs == "outputs/demo" and options.data == "outputs/demo/data"
    assert options.manifest == "outputs/demo/data/my_voice_all.jsonl" and options.vocabulary == "my/vocab.txt"
    assert StudioOptions().outputs == "outputs"

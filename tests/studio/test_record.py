"""The Record page: every route's bad input is a one-line 400/404 that writes nothing; a kept take
is the row `just record` writes; and a real chromium, fed a wav as its microphone, records with
Space, keeps with Enter, re-takes with r and skips with n."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import soundfile as sf
import soxr
from starlette.testclient import TestClient

from lora_training.capture.record import TOO_SHORT, load_prompts
from lora_training.cli import main as cli_main
from lora_training.data.audio import SAMPLE_RATE, audio_header
from lora_training.studio.app import create_app
from lora_training.studio.record import MAX_UPLOAD_BYTES
from lora_training.studio.serve import StudioOptions
from lora_training.testing.signals import speech_like

HTMX = {"HX-Request": "true"}
VOCABULARY = "kubectl | cube control\npytest\nnginx | engine x\n"


def _wav(samples: np.ndarray, rate: int = SAMPLE_RATE, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


# A browser's take: 1.5 s of speech at the usual 48 kHz of an AudioContext.
TAKE = _wav(soxr.resample(speech_like(1.5), SAMPLE_RATE, 48000), 48000)


@pytest.fixture
def setup(tmp_path, tiny_model_dir):
    """(options fields, manifest path, recordings folder) for a 3-prompt studio with the tiny model."""
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text(VOCABULARY)
    manifest = tmp_path / "data" / "my_voice_all.jsonl"
    fields = dict(vocabulary=str(vocabulary), count=3, manifest=str(manifest), model=str(tiny_model_dir))
    return fields, manifest, manifest.parent / "recordings"


@pytest.fixture
def prompts(setup):
    return load_prompts(setup[0]["vocabulary"], 3)


@pytest.fixture
def client(setup):
    return TestClient(create_app(StudioOptions(**setup[0])))


def _upload(client, prompt="1", audio=TAKE, *, text):
    """A take as the page posts it: the prompt's number and text, and the WAV."""
    data = {k: v for k, v in {"prompt": prompt, "text": text}.items() if v is not None}
    files = None if audio is None else {"audio": ("take.wav", audio, "audio/wav")}
    return client.post("/record/takes", data=data, files=files, headers=HTMX)


def _take_id(response) -> str:
    return re.search(r"/record/takes/([\w-]+)/keep", response.text).group(1)


def _nothing_written(manifest, recordings):
    assert not manifest.exists() and not recordings.exists()


def _error(response) -> str:
    return re.search(r"error: (.*)</p>", response.text).group(1).replace("&#39;", "'")


BAD_UPLOADS = {
    "no prompt": (dict(prompt=None), 400, "prompt: missing, expected the number of the prompt"),
    "prompt not a number": (dict(prompt="two"), 400, "prompt: not a number, expected a prompt number 1-3, "
                                                     "got 'two'"),
    "unknown prompt": (dict(prompt="9"), 404, "prompt 9: no such prompt, expected 1-3 (--count 3), got 9"),
    "no prompt text": (dict(text=None), 400, "text: missing, expected the text of the prompt this take reads"),
    "stale prompt text": (dict(text="an older prompt"), 400, "prompt 1: changed since the page was loaded "
                                                             "(was --vocabulary edited?), expected '"),
    "no file": (dict(audio=None), 400, "audio: missing, expected a WAV file upload of the take, got nothing"),
    "empty file": (dict(audio=b""), 400, "audio: empty upload, expected a WAV file of the take, got 0 bytes"),
    "garbage": (dict(audio=b"hello, not audio"), 400, "audio: not a WAV file, expected RIFF/WAVE data, "
                                                      "got b'hello, not a'"),
    "flac": (dict(audio=_wav(speech_like(1.0), fmt="FLAC")), 400, "audio: not a WAV file, expected RIFF/WAVE"),
    "broken wav": (dict(audio=TAKE[:12] + b"\0" * 40), 400, "audio: unreadable WAV, expected PCM samples"),
    "no samples": (dict(audio=_wav(np.zeros(0, np.float32))), 400, "audio: empty take, expected some speech, "
                                                                   "got 0 samples"),
    "too long": (dict(audio=_wav(np.zeros(31 * 8000, np.float32), 8000)), 400,
                 "audio: take too long, expected at most 30 s, got 31.00 s"),
    "too large": (dict(audio=b"RIFF" + b"\0" * MAX_UPLOAD_BYTES), 400, "audio: upload too large, expected at "
                                                                       "most 16 MB (a 30 s take), got 16.0 MB"),
}


@pytest.mark.parametrize("case", BAD_UPLOADS.values(), ids=BAD_UPLOADS.keys())
def test_a_bad_upload_is_one_line_and_writes_nothing(setup, client, prompts, case):
    kwargs, status, message = case
    response = _upload(client, **{"text": prompts[0].text, **kwargs})
    assert response.status_code == status, response.text
    assert _error(response).startswith(message)
    _nothing_written(*setup[1:])


BAD_TAKE_IDS = {
    "keep": ("post", "/record/takes/{}/keep"),
    "re-take": ("post", "/record/takes/{}/discard"),
    "listen": ("get", "/record/takes/{}/audio"),
}


@pytest.mark.parametrize("case", BAD_TAKE_IDS.values(), ids=BAD_TAKE_IDS.keys())
def test_an_unknown_take_is_404(setup, client, case):
    method, url = case
    response = getattr(client, method)(url.format("nope"), headers=HTMX)
    assert response.status_code == 404
    assert _error(response) == ("take nope: no such take, expected one still waiting for Keep or Re-take "
                                "(the last 8 are held), got none")
    _nothing_written(*setup[1:])


@pytest.mark.parametrize("query, status, message", [
    ("prompt=0", 404, "prompt 0: no such prompt, expected 1-3 (--count 3), got 0"),
    ("prompt=x", 400, "prompt: not a number, expected a prompt number 1-3, got 'x'"),
])
def test_an_unknown_prompt_page_is_an_error_page(client, query, status, message):
    response = client.get(f"/record?{query}")
    assert response.status_code == status and "<nav" in response.text
    assert _error(response) == message


def test_a_missing_vocabulary_names_the_option(setup, tmp_path):
    fields, manifest, recordings = setup
    client = TestClient(create_app(StudioOptions(**{**fields, "vocabulary": str(tmp_path / "none.txt")})))
    response = client.get("/record")
    assert response.status_code == 400
    assert _error(response) == (f"{tmp_path / 'none.txt'}: vocabulary file not found, expected a 'written | "
                                f"spoken' text file, got no file (the prompts come from the studio's "
                                f"--vocabulary FILE)")
    _nothing_written(manifest, recordings)


def test_a_kept_take_is_the_row_record_writes_and_the_page_moves_on(setup, client, prompts):
    fields, manifest, recordings = setup
    page = client.get("/record")
    assert "prompt 1 of 3" in page.text and prompts[0].text in page.text

    take = _upload(client, text=prompts[0].text)
    assert take.status_code == 200
    assert "1.25 s, peak -10.5 dBFS" in take.text  # 1.5 s less the two key sounds, measured as `record` does
    assert "WER against the prompt" in take.text
    take_id = _take_id(take)
    listen = client.get(f"/record/takes/{take_id}/audio")
    assert listen.headers["content-type"] == "audio/wav" and sf.info(io.BytesIO(listen.content)).samplerate == 16000
    _nothing_written(manifest, recordings)

    kept = client.post(f"/record/takes/{take_id}/keep", headers=HTMX)
    assert kept.status_code == 200
    assert (kept.headers["hx-retarget"], kept.headers["hx-push-url"]) == ("#recorder", "/record?prompt=2")
    assert "saved rec-0001" in kept.text and "prompt 2 of 3" in kept.text
    row = json.loads(manifest.read_text())
    assert row == {"audio": "recordings/rec-0001.wav", "text": prompts[0].text, "id": "rec-0001", "duration": 1.25,
                   "source": "real", "speaker": "me", "spoken": prompts[0].spoken, "terms": prompts[0].terms}
    assert audio_header(recordings / "rec-0001.wav") == (16000, 1, 20000)
    assert cli_main(["validate-manifest", str(manifest)]) == 0

    before = manifest.read_bytes()
    again = client.post(f"/record/takes/{take_id}/keep", headers=HTMX)
    assert again.status_code == 404
    retake = _upload(client, "1", text=prompts[0].text)
    assert retake.status_code == 400
    assert _error(retake) == (f"prompt 1: already recorded as rec-0001 in {manifest}, expected a prompt still "
                              f"to record, got {prompts[0].text!r}")
    assert "already recorded as rec-0001" in client.get("/record?prompt=1").text
    assert manifest.read_bytes() == before and sorted(p.name for p in recordings.iterdir()) == ["rec-0001.wav"]


def test_two_takes_of_one_prompt_keep_only_the_first_and_numbering_skips_orphans(setup, client, prompts):
    _, manifest, recordings = setup
    recordings.mkdir(parents=True)
    (recordings / "rec-0004.wav").write_bytes(b"left by a crash between wav and manifest")
    first, second = (_take_id(_upload(client, text=prompts[0].text)) for _ in range(2))
    assert client.post(f"/record/takes/{first}/keep", headers=HTMX).status_code == 200
    before = manifest.read_bytes()
    late = client.post(f"/record/takes/{second}/keep", headers=HTMX)
    assert late.status_code == 400 and _error(late).startswith("prompt 1: already recorded as rec-0005")
    assert manifest.read_bytes() == before
    assert sorted(p.name for p in recordings.iterdir()) == ["rec-0004.wav", "rec-0005.wav"]


def test_retake_discards_and_a_short_take_cannot_be_kept(setup, client, prompts):
    take_id = _take_id(_upload(client, "2", text=prompts[1].text))
    discarded = client.post(f"/record/takes/{take_id}/discard", headers=HTMX)
    assert discarded.status_code == 200 and "records prompt 2 again" in discarded.text
    assert client.post(f"/record/takes/{take_id}/keep", headers=HTMX).status_code == 404

    blip = _wav(speech_like(0.5, lead=0.1, trail=0.1))  # 0.25 s once the key sounds are trimmed
    short = _upload(client, "2", blip, text=prompts[1].text)
    assert short.status_code == 200
    assert TOO_SHORT in short.text and "clip too short, expected at least 0.3 s, got 0.25 s" in short.text
    assert "/keep" not in short.text
    _nothing_written(*setup[1:])


def test_a_model_that_cannot_load_still_shows_the_checks(setup, prompts, tmp_path):
    fields, manifest, _ = setup
    client = TestClient(create_app(StudioOptions(**{**fields, "model": str(tmp_path / "no-model")})))
    take = _upload(client, text=prompts[0].text)
    assert take.status_code == 200 and "baseline transcript unavailable: " in take.text
    assert client.post(f"/record/takes/{_take_id(take)}/keep", headers=HTMX).status_code == 200
    assert json.loads(manifest.read_text())["id"] == "rec-0001"


def test_browser_records_with_space_keeps_with_enter_and_fits_a_phone(setup, prompts, studio, launch_browser,
                                                                         shoot, tmp_path):
    fields, manifest, recordings = setup
    microphone = tmp_path / "microphone.wav"
    sf.write(microphone, speech_like(2.0, amplitude=0.3), SAMPLE_RATE, subtype="PCM_16")  # chromium loops it
    base = studio(**fields)
    browser = launch_browser("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                             f"--use-file-for-fake-audio-capture={microphone}")
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    page.goto(f"{base}/record")

    def record(seconds: float) -> None:
        page.keyboard.press("Space")
        page.wait_for_selector("#rec-status:has-text('recording')")
        page.wait_for_timeout(seconds * 1000)
        page.keyboard.press("Space")

    record(1.6)
    page.wait_for_selector("#keep")
    assert "WER against the prompt" in page.inner_text("#take")
    shoot(page, "record")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=saved rec-0001")
    assert page.inner_text(".prompt-text") == prompts[1].text and page.url.endswith("/record?prompt=2")

    row = json.loads(manifest.read_text())
    assert (row["id"], row["text"], row["source"]) == ("rec-0001", prompts[0].text, "real")
    rate, channels, frames = audio_header(recordings / "rec-0001.wav")
    assert (rate, channels) == (16000, 1) and 1.0 < frames / rate < 3.0
    assert cli_main(["validate-manifest", str(manifest)]) == 0

    record(0.8)
    page.wait_for_selector("#retake")
    page.keyboard.press("r")
    page.wait_for_selector("text=take discarded")
    page.keyboard.press("n")
    page.wait_for_selector("#prompt[data-prompt='3']")
    assert len(manifest.read_text().splitlines()) == 1 and not errors

    phone = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    phone.goto(f"{base}/record")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    shoot(phone, "record-phone")

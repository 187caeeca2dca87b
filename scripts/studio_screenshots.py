"""Screenshots of the studio's five pages on the demo's real data, for docs/studio.md.

    make demo && .venv/bin/python scripts/studio_screenshots.py [--out docs/studio]

Serves `just studio --demo` (the demo's runs and data), keeps two dictated clips of the demo user
with the demo's adapter (`dictate --file --keep`, as a user would) so Corrections has clips, and
speaks the first Record prompt in the demo user's espeak-ng voice as Chromium's fake microphone.
Needs Debian's chromium (scripts/system-deps.sh). Writes PNGs at 1280x800 plus a phone-width Runs page.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lora_training.runners.demo import EXPERIMENT, USER_VOICE  # noqa: E402
from lora_training.studio.serve import DEMO_PATHS  # noqa: E402

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keep_dictation(clips: int) -> None:
    """`dictate --file CLIP --keep` on the first eval clips of the demo user, once."""
    folder = Path(DEMO_PATHS["dictation_dir"])
    if (folder / "heard.jsonl").is_file():
        return
    rows = [json.loads(line) for line in Path(DEMO_PATHS["data"], "my_voice_eval.jsonl").read_text().splitlines()]
    for row in rows[:clips]:
        audio = Path(DEMO_PATHS["data"], row["audio"])
        subprocess.run([sys.executable, "main.py", "dictate", "--file", str(audio), "--keep", "--dictation-dir",
                        str(folder), "--adapter-dir", f"{DEMO_PATHS['outputs']}/{EXPERIMENT}/best_adapter",
                        "--threads", "2"], cwd=REPO, check=True)


def _microphone(text: str, path: Path) -> Path:
    """The prompt in the demo user's voice, then silence: Chromium loops the file as its microphone."""
    subprocess.run(["espeak-ng", "-v", USER_VOICE, "-w", str(path), text], check=True)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/studio", help="folder for the PNGs")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from lora_training.capture.record import load_prompts

    if not Path(DEMO_PATHS["outputs"], EXPERIMENT, "eval_results.json").is_file():
        sys.exit(f"error: {DEMO_PATHS['outputs']}: no finished demo, expected `make demo` first")
    _keep_dictation(3)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prompt = load_prompts(DEMO_PATHS["vocabulary"], 100)[0]
    port = _free_port()
    server = subprocess.Popen([sys.executable, "main.py", "studio", "--demo", "--no-browser", "--port", str(port)],
                              cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/static/studio.css")
                break
            except OSError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
            mic = _microphone(prompt.spoken, Path(tmp) / "mic.wav")
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=[
                *FLAGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={mic}"])
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()

            def shot(path: str, name: str, wait: str | None = None) -> None:
                page.goto(base + path)
                if wait:
                    page.wait_for_selector(wait)
                page.screenshot(path=str(out / f"{name}.png"), full_page=False)
                print(out / f"{name}.png")

            page.goto(f"{base}/record")
            page.keyboard.press("Space")
            page.wait_for_selector("#rec-status:has-text('recording')")
            page.wait_for_timeout(4500)
            page.keyboard.press("Space")
            page.wait_for_selector("#keep", timeout=120_000)
            page.screenshot(path=str(out / "record.png"))
            print(out / "record.png")
            shot("/data", "data")
            shot("/data/view?manifest=my_voice_eval.jsonl", "data-view")
            shot("/runs", "runs")
            shot(f"/runs/{EXPERIMENT}", "runs-run", "svg")
            shot(f"/results/{EXPERIMENT}", "results")
            shot(f"/results/{EXPERIMENT}?filter=better#utterances", "results-better")
            shot("/corrections", "corrections")
            page.set_viewport_size({"width": 390, "height": 844})
            shot(f"/runs/{EXPERIMENT}", "runs-phone", "svg")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

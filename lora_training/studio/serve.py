"""`just studio`: the options, the address checks, and the uvicorn server."""

from __future__ import annotations

import ipaddress
import threading
import webbrowser
from dataclasses import dataclass, fields

from lora_training.capture.corrections import DICTATION_DIR
from lora_training.defaults import default_model, model_help
from lora_training.errors import ConfigError
from lora_training.options import default_of, option
from lora_training.runners.demo import WORKDIR as DEMO
from lora_training.runs import DEFAULT_OUTPUTS

# `--demo`: the folders `make demo` writes, for every folder option left at its default.
DEMO_PATHS = {"outputs": DEMO, "data": f"{DEMO}/data", "vocabulary": f"{DEMO}/data/vocabulary.txt",
              "manifest": f"{DEMO}/data/my_voice_all.jsonl", "dictation_dir": f"{DEMO}/data/dictation",
              "corrections": f"{DEMO}/data/corrections.jsonl"}


@dataclass
class StudioOptions:
    host: str = option("127.0.0.1", "address to bind; anything but a loopback address requires --token")
    port: int = option(8765, "port to serve on")
    token: str | None = option(None, "secret every request must carry (?token=, then a cookie; or the "
                                     "X-Studio-Token header); required off loopback")
    outputs: str = option(DEFAULT_OUTPUTS, "folder of the runs (outputs/NAME)")
    data: str = option("data", "folder of the manifests the Data page lists")
    vocabulary: str = option("data/vocabulary.txt", "lexicon the Record page's prompts come from")
    count: int = option(100, "number of prompts on the Record page")
    seed: int = option(0, "seed of the prompt generator (same seed, same prompts as `just record`)")
    manifest: str = option("data/my_voice_all.jsonl", "manifest the Record page appends to (as `just record`)")
    speaker: str = option("me", "speaker name stored with each recording")
    model: str = option(default_model("transcribe"), model_help("transcribe", "model for the Record page's "
                                                                               "baseline transcript of each take"))
    dictation_dir: str = option(DICTATION_DIR, "folder of `dictate --keep` the Corrections page reviews")
    corrections: str = option("data/corrections.jsonl", "corrections manifest the Corrections page writes")
    no_browser: bool = option(False, "do not open the browser")
    demo: bool = option(False, f"serve the demo's folders ({DEMO}: its runs, data/ and vocabulary) in place of "
                               f"every folder option left at its default")

    def __post_init__(self) -> None:
        if self.demo:
            for f in fields(self):
                if f.name in DEMO_PATHS and getattr(self, f.name) == default_of(f):
                    setattr(self, f.name, DEMO_PATHS[f.name])
        if not 0 < self.port < 65536:
            raise ConfigError(f"port: expected 1-65535, got {self.port}")
        if not _loopback(self.host) and not self.token:
            raise ConfigError(f"host: {self.host} is reachable from other machines, expected --token SECRET "
                              f"with it (every request must then carry the token), got none")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(options: StudioOptions) -> None:
    """Serve until Ctrl-C; opens the browser once the socket listens (unless --no-browser)."""
    import uvicorn

    from lora_training.studio.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(options), host=options.host, port=options.port,
                                           log_level="warning"))
    if not options.no_browser:
        def _open() -> None:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.1)
            if server.started:
                webbrowser.open(options.url)
        threading.Thread(target=_open, daemon=True).start()
    print(f"studio: {options.url} (Ctrl-C stops)", flush=True)
    server.run()

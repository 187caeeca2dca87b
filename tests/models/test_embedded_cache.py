"""The embedded model's cache without converting anything: location, key, locking, atomicity, errors."""

import importlib.util
import threading
import time

import pytest

from lora_training.errors import ModelError
from lora_training.models import embedded


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"LORA_TRAINING_CACHE": "{tmp}/mine", "XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/mine"),
        ({"XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/xdg/lora_training"),
        ({}, "{tmp}/home/.cache/lora_training"),
    ],
)
def test_cache_root_precedence(monkeypatch, tmp_path, env, expected):
    for var in ("LORA_TRAINING_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var, value in env.items():
        monkeypatch.setenv(var, value.format(tmp=tmp_path))
    assert str(embedded.cache_root()) == expected.format(tmp=tmp_path)


def test_cache_folder_is_keyed_by_package_versions_and_converter(monkeypatch, tmp_path):
    monkeypatch.setenv("LORA_TRAINING_CACHE", str(tmp_path))
    first = embedded.embedded_cache_path()
    assert first.parent == tmp_path / "models" and first.name.startswith("moonshine-base-")
    monkeypatch.setattr(embedded, "CONVERTER_VERSION", embedded.CONVERTER_VERSION + 1)
    second = embedded.embedded_cache_path()
    monkeypatch.setattr(embedded, "_package_versions", lambda: {"moonshine-cpp": "9.9.9"})
    third = embedded.embedded_cache_path()
    assert len({first, second, third}) == 3


@pytest.fixture
def fake_build(monkeypatch, tmp_path):
    """Replaces the conversion by a slow fake that records its calls; returns the call list."""
    monkeypatch.setenv("LORA_TRAINING_CACHE", str(tmp_path))
    calls = []

    def build(name, folder):
        calls.append(folder)
        time.sleep(0.3)  # long enough for a second caller to arrive during the build
        (folder / "model.safetensors").write_text(f"build {len(calls)}")
        (folder / "provenance.json").write_text("{}")

    monkeypatch.setattr(embedded, "_build", build)
    return calls


def test_concurrent_callers_convert_once(fake_build):
    results = []
    threads = [threading.Thread(target=lambda: results.append(embedded.embedded_model_dir())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake_build) == 1
    assert results[0] == results[1] == embedded.embedded_cache_path()
    assert (results[0] / "model.safetensors").read_text() == "build 1"
    assert not list(results[0].parent.glob("*.tmp"))  # no staging folder left behind


def test_rebuild_replaces_the_cached_folder(fake_build):
    folder = embedded.embedded_model_dir()
    assert embedded.embedded_model_dir() == folder and len(fake_build) == 1
    assert embedded.embedded_model_dir(rebuild=True) == folder
    assert len(fake_build) == 2 and (folder / "model.safetensors").read_text() == "build 2"


def test_failed_build_leaves_no_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("LORA_TRAINING_CACHE", str(tmp_path))

    def build(name, folder):
        (folder / "model.safetensors").write_text("half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(embedded, "_build", build)
    with pytest.raises(RuntimeError, match="disk full"):
        embedded.embedded_model_dir()
    assert [p.name for p in (tmp_path / "models").iterdir()] == [f".{embedded.embedded_cache_path().name}.lock"]


def test_missing_package_names_it_and_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "moonshine_cpp" else real_find_spec(name, *a)
    )
    with pytest.raises(ModelError) as e:
        embedded.beckett_wav()
    assert str(e.value) == (
        "embedded:moonshine-base: package moonshine-cpp is missing, expected it installed, "
        "got none (run: pip install 'lora-training[embedded]')"
    )


def test_unknown_name_is_rejected_before_any_work(monkeypatch):
    monkeypatch.setattr(embedded, "_build", lambda *a: pytest.fail("built an unknown model"))
    with pytest.raises(ModelError, match="expected one of embedded:moonshine-base, got 'large'"):
        embedded.embedded_model_dir("large")


def test_staging_left_by_a_killed_build_is_removed(fake_build):
    final = embedded.embedded_cache_path()
    stale = final.parent / f".{final.name}.killed.tmp"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_text("half")
    embedded.embedded_model_dir()
    assert not stale.exists()

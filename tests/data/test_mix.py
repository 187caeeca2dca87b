"""Mixing manifests: ratios, upsampling, sources, ids, paths, determinism, the CLI."""

import json
from collections import Counter
from dataclasses import replace

import pytest

from lora_training.cli import main
from lora_training.data.manifest import load_manifest, save_manifest
from lora_training.data.mix import mix_manifests, MixOptions, parse_input, parse_ratio
from lora_training.errors import ConfigError, ManifestError
from lora_training.testing.factories import make_manifest


def _manifest(folder, n, source):
    """n tone clips under folder/; source None leaves the field out."""
    path = make_manifest(folder, n, seconds=0.5)
    save_manifest(path, [replace(u, source=source) for u in load_manifest(path)])
    return str(path)


@pytest.fixture
def real(tmp_path):
    return _manifest(tmp_path / "real", 4, "real")


@pytest.fixture
def synthetic(tmp_path):
    return _manifest(tmp_path / "synthetic", 20, "synthetic")


def _sources(path):
    return Counter(u.source for u in load_manifest(path))


@pytest.mark.parametrize(
    "ratio, upsample, expected",
    [
        (None, 1, {"real": 4, "synthetic": 20}),
        ({"real": 1, "synthetic": 3}, 1, {"real": 4, "synthetic": 12}),  # synthetic sampled down
        ({"real": 1, "synthetic": 1}, 1, {"real": 4, "synthetic": 4}),
        ({"real": 1, "synthetic": 1}, 3, {"real": 12, "synthetic": 12}),
        ({"real": 2, "synthetic": 1}, 1, {"real": 4, "synthetic": 2}),
        ({"real": 1, "synthetic": 0}, 1, {"real": 4}),
        (None, 3, {"real": 12, "synthetic": 20}),
    ],
)
def test_ratio_and_upsampling(tmp_path, real, synthetic, ratio, upsample, expected):
    out = tmp_path / "mixed.jsonl"
    summary = mix_manifests(MixOptions([real, synthetic], out, ratio=ratio, upsample_real=upsample))
    assert _sources(out) == expected
    assert {s.source: s.selected for s in summary.sources if s.selected} == expected
    assert summary.utterances == sum(expected.values())


def test_upsampled_rows_repeat_evenly_with_unique_ids(tmp_path, real, synthetic):
    out = tmp_path / "mixed.jsonl"
    mix_manifests(MixOptions([real, synthetic], out, ratio={"real": 11, "synthetic": 20}, upsample_real=3))
    rows = load_manifest(out)  # would raise on a duplicate id
    repeats = Counter(u.audio for u in rows if u.source == "real")
    assert sorted(repeats.values()) == [2, 3, 3, 3]  # 11 real rows: 2 full copies + 3 of the 4 once more
    assert any(u.id.endswith("~3") for u in rows)


def test_paths_are_rewritten_for_the_output_folder(tmp_path, real, synthetic):
    out = tmp_path / "elsewhere" / "deeper" / "mixed.jsonl"
    mix_manifests(MixOptions([real, synthetic], out))
    line = json.loads(out.read_text().splitlines()[0])
    assert line["audio"].startswith("../../")
    originals = {u.audio for u in load_manifest(real) + load_manifest(synthetic)}
    assert {u.audio for u in load_manifest(out)} == originals


def test_rows_without_source_take_it_from_the_input_or_the_default(tmp_path, synthetic):
    bare = _manifest(tmp_path / "bare", 3, None)
    assert parse_input(f"real={bare}").source == "real"
    mix_manifests(MixOptions([f"real={bare}", synthetic], tmp_path / "a.jsonl"))
    assert _sources(tmp_path / "a.jsonl") == {"real": 3, "synthetic": 20}
    mix_manifests(MixOptions([bare, synthetic], tmp_path / "b.jsonl", default_source="synthetic"))
    assert _sources(tmp_path / "b.jsonl") == {"synthetic": 23}
    summary = mix_manifests(MixOptions([bare, synthetic], tmp_path / "c.jsonl"))
    assert _sources(tmp_path / "c.jsonl") == {"real": 3, "synthetic": 20}
    assert summary.notes == [f"3 row(s) without `source` in {bare} counted as real (name it synthetic={bare} "
                             "if they are not)"]
    assert "note: 3 row(s) without `source`" in summary.render()
    half = _manifest(tmp_path / "half", 2, "synthetic")
    save_manifest(half, [replace(u, source=None) if i == 0 else u for i, u in enumerate(load_manifest(half))])
    with pytest.raises(ManifestError, match=r"1 row\(s\) without 'source' beside synthetic rows.*real="):
        mix_manifests(MixOptions([half, bare], tmp_path / "d.jsonl"))


def test_clashing_ids_get_their_manifest_name(tmp_path):
    one = _manifest(tmp_path / "mine", 2, "real")
    two = _manifest(tmp_path / "tts", 2, "synthetic")  # same default ids: audio/utt_0000.wav ...
    out = tmp_path / "mixed.jsonl"
    mix_manifests(MixOptions([one, two], out))
    assert sorted(u.id for u in load_manifest(out)) == [
        "manifest-1/audio/utt_0000.wav", "manifest-1/audio/utt_0001.wav",
        "manifest-2/audio/utt_0000.wav", "manifest-2/audio/utt_0001.wav",
    ]


def test_shuffle_is_deterministic_by_seed(tmp_path, real, synthetic):
    def order(seed, name):
        mix_manifests(MixOptions([real, synthetic], tmp_path / name, ratio={"real": 1, "synthetic": 2}, seed=seed))
        return [u.id for u in load_manifest(tmp_path / name)]

    assert order(1, "a.jsonl") == order(1, "b.jsonl")
    assert order(1, "a.jsonl") != order(2, "c.jsonl")


@pytest.mark.parametrize(
    "spec, message",
    [("real=1,synthetic", "invalid part 'synthetic'"), ("real=-1", "WEIGHT >= 0"), ("human=1", "SOURCE one of")],
)
def test_bad_ratio_specs(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_ratio(spec)


def test_ratio_must_name_exactly_the_sources_present(tmp_path, real, synthetic):
    with pytest.raises(ConfigError, match=r"expected a weight for exactly the sources present \(real, synthetic\)"):
        mix_manifests(MixOptions([real, synthetic], tmp_path / "m.jsonl", ratio={"real": 1}))
    with pytest.raises(ConfigError, match="exactly the sources present"):
        mix_manifests(MixOptions([real], tmp_path / "m.jsonl", ratio={"real": 1, "synthetic": 1}))


def test_cli_mix_prints_the_composition(tmp_path, real, synthetic, capsys):
    out = tmp_path / "mixed.jsonl"
    assert main(["mix", real, synthetic, "--output", str(out), "--ratio", "real=1,synthetic=3", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {s["source"]: s["selected"] for s in summary["sources"]} == {"real": 4, "synthetic": 12}
    assert summary["hours"] == pytest.approx(16 * 0.5 / 3600)
    before = out.read_bytes()
    assert main(["mix", real, synthetic, "--output", str(out)]) == 1  # other rows: not without --overwrite
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["mix", real, synthetic, "--output", str(out), "--overwrite"]) == 0
    text = capsys.readouterr().out
    assert "real" in text and "synthetic" in text and "24 utterances" in text
    assert f"replaced (--overwrite): {out}" in text

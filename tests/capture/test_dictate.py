"""Dictation: Silero VAD on a real voice, the streaming segmenter's rules on scripted probabilities,
`dictate --file` with a tiny model + adapter checked against `transcribe_clips`, --keep's
heard.jsonl contract, push-to-talk, Ctrl-C, the runtime path, the clipboard and one-line errors."""

import argparse
import functools
import importlib.util
import json
import re
import sys
import types
from datetime import datetime

import numpy as np
import pytest
import soundfile as sf

from lora_training.capture.dictate import (CLIPS_DIR, HEARD_MANIFEST, DictateOptions, clipboard_copier,
                                           dictate)
from lora_training.capture.vad import FRAME_SAMPLES, Segmenter, VadSettings, segment_audio
from lora_training.data.audio import SAMPLE_RATE, load_audio, write_wav
from lora_training.errors import AudioError, ConfigError, LoraTrainingError

needs_silero = pytest.mark.skipif(importlib.util.find_spec("silero_vad") is None,
                                  reason="silero-vad not installed (pip install -e '.[record]')")
# Where "Ever tried." and "Fail better." lie in beckett.wav (seconds, read once off the waveform,
# with a little silence each side).
FIRST_PHRASE, LAST_PHRASE = (0.25, 1.45), (7.95, 9.10)
# Speech as the tests measure it without a VAD: from the first to the last sample above this level.
LOUD = 0.05
GAP = 1.5


def _s(seconds):
    return round(seconds * SAMPLE_RATE)


def _silence(seconds):
    return np.zeros(_s(seconds), np.float32)


def _loud_span(audio, offset):
    """(first, last) loud sample of `audio`, in seconds from `offset`: the speech, measured without the VAD."""
    loud = np.flatnonzero(np.abs(audio) > LOUD)
    return offset + loud[0] / SAMPLE_RATE, offset + loud[-1] / SAMPLE_RATE


@pytest.fixture(scope="module")
def beckett():
    """A real English voice (6 short sentences, 10 s), shipped in the moonshine-cpp wheel (Linux x86-64)."""
    from lora_training.models.embedded import beckett_wav

    if importlib.util.find_spec("moonshine_cpp") is None:
        pytest.skip("moonshine-cpp not installed: no real voice clip (pip install -e '.[embedded]')")

    return load_audio(beckett_wav())


@pytest.fixture(scope="module")
def two_phrases(beckett, tmp_path_factory):
    """0.5 s silence, "Ever tried.", 1.5 s silence, "Fail better.", 0.5 s silence: (wav, audio, phrase spans)."""
    first = beckett[_s(FIRST_PHRASE[0]):_s(FIRST_PHRASE[1])]
    last = beckett[_s(LAST_PHRASE[0]):_s(LAST_PHRASE[1])]
    audio = np.concatenate([_silence(0.5), first, _silence(GAP), last, _silence(0.5)])
    spans = [_loud_span(first, 0.5), _loud_span(last, 0.5 + len(first) / SAMPLE_RATE + GAP)]
    wav = write_wav(tmp_path_factory.mktemp("dictate") / "two.wav", audio)
    return wav, load_audio(wav, max_seconds=None), spans


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter on the tiny model whose B matrices are far from zero, so it changes the text."""
    import torch

    from lora_training.models.adapters import apply_adapter, base_fingerprint, save_adapter
    from lora_training.models.registry import resolve_model

    model, _ = resolve_model(str(tiny_model_dir))
    fingerprint = base_fingerprint(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        peft_model = apply_adapter(model, r=4, alpha=8, dropout=0.0, use_dora=False, sites="decoder",
                                   target_modules=["q_proj", "v_proj", "fc1", "fc2"])
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.5)
    return save_adapter(peft_model, tmp_path_factory.mktemp("adapter") / "best_adapter",
                        base_model=str(tiny_model_dir), fingerprint=fingerprint, info={})


@functools.lru_cache(maxsize=None)
def _reference(model_dir, adapter=None):
    """The base model, or with the adapter merged, loaded once for every test that compares with it."""
    from lora_training.models.adapters import load_adapter
    from lora_training.models.registry import resolve_model

    model, processor = resolve_model(str(model_dir))
    if adapter is not None:
        model = load_adapter(model, adapter, base_model=str(model_dir)).merge_and_unload()
    return model, processor


def _texts(model_dir, audios, adapter=None, bias=None):
    """What `transcribe_clips` says on each audio alone: the reference dictation must match."""
    from lora_training.evaluation.transcribe import transcribe_clips

    model, processor = _reference(model_dir, adapter)
    return [transcribe_clips(model, processor, [a], bias=bias)[0].text for a in audios]


# --- the segmenter's rules, on scripted probabilities -----------------------------------

class Script:
    """A FrameScorer that reads probabilities from a list, one per frame (0 after its end)."""

    def __init__(self, probs):
        self.probs, self.i = list(probs), 0

    def __call__(self, frame):
        assert len(frame) == FRAME_SAMPLES
        self.i += 1
        return self.probs[self.i - 1] if self.i <= len(self.probs) else 0.0

    def reset(self):
        self.i = 0


FRAME_S = FRAME_SAMPLES / SAMPLE_RATE  # 32 ms


NO_PAD = VadSettings(pad_seconds=0)


@pytest.mark.parametrize("probs, settings, expected_frames", [
    # 10 speech frames between silences: one utterance.
    ([0] * 20 + [0.9] * 10 + [0] * 40, NO_PAD, [(20, 30)]),
    # A 4-frame (0.13 s) burst is shorter than min_speech 0.25 s: dropped.
    ([0] * 20 + [0.9] * 4 + [0] * 40, NO_PAD, []),
    # 0.4 is in the hysteresis band (>= 0.35): speech goes on, one utterance over both halves.
    ([0.9] * 10 + [0.4] * 30 + [0.9] * 10 + [0] * 40, NO_PAD, [(0, 50)]),
    # A pause shorter than min_silence (0.6 s ~ 19 frames) does not end it; a longer one does.
    ([0.9] * 10 + [0] * 15 + [0.9] * 10 + [0] * 25 + [0.9] * 10 + [0] * 40, NO_PAD, [(0, 35), (60, 70)]),
    # Speech still going at the end of the stream is closed by flush.
    ([0] * 5 + [0.9] * 20, NO_PAD, [(5, 25)]),
    # Over max_seconds (1 s ~ 31 frames): cut at the last dip in its second half; the rest goes on.
    ([0.9] * 25 + [0.45] + [0.9] * 20 + [0] * 40, VadSettings(pad_seconds=0, max_seconds=1.0), [(0, 25), (25, 46)]),
])
def test_segmenter_rules_on_scripted_probabilities(probs, settings, expected_frames):
    stream = np.arange(len(probs) * FRAME_SAMPLES, dtype=np.float32)  # sample values = their positions
    for chunk_seconds in (0.1, 0.005, 10.0):  # any chunking gives the same utterances
        segments = segment_audio(stream, settings, scorer=Script(probs), chunk_seconds=chunk_seconds)
        assert [(s.start, s.end) for s in segments] == [(a * FRAME_SAMPLES, b * FRAME_SAMPLES)
                                                        for a, b in expected_frames], chunk_seconds
        for s in segments:
            np.testing.assert_array_equal(s.audio, stream[s.start:s.end])


def test_utterances_are_padded_within_the_stream():
    pad = round(VadSettings().pad_seconds * SAMPLE_RATE)
    probs = [0.9] * 10 + [0] * 40 + [0.9] * 10
    stream = np.arange(len(probs) * FRAME_SAMPLES, dtype=np.float32)
    segments = segment_audio(stream, scorer=Script(probs))
    assert [(s.start, s.end) for s in segments] == [(0, 10 * FRAME_SAMPLES + pad),
                                                    (50 * FRAME_SAMPLES - pad, len(stream))]


def test_segmenter_keeps_only_the_audio_an_utterance_may_still_need():
    segmenter = Segmenter(VadSettings(), Script([0.0] * 10_000))
    for _ in range(300):  # 30 s of silence
        assert segmenter.feed(np.zeros(1600, np.float32)) == []
    assert len(segmenter._buffer) <= round(0.2 * SAMPLE_RATE) + FRAME_SAMPLES


def test_vad_settings_reject_nonsense_in_one_line():
    with pytest.raises(ConfigError, match=r"threshold: expected a probability in \(0, 1\), got 1.5; "
                                          r"pad_seconds: expected seconds >= 0, got -1"):
        VadSettings(threshold=1.5, pad_seconds=-1)


# --- Silero on real speech --------------------------------------------------------------

@needs_silero
def test_vad_finds_the_two_utterances_around_a_silence(two_phrases):
    _, audio, spans = two_phrases
    segments = segment_audio(audio)
    assert len(segments) == 2
    for segment, (first, last) in zip(segments, spans):
        # Each covers its phrase's loud part, padded, without reaching into the 1.5 s gap's far side.
        assert segment.start_seconds <= first and segment.end_seconds >= last
        assert first - segment.start_seconds < 0.5 and segment.end_seconds - last < 0.5
    assert segments[0].end_seconds < spans[1][0] - 0.5


@needs_silero
def test_a_real_voice_clip_yields_segments_covering_its_speech(beckett):
    audio = np.concatenate([_silence(2.0), beckett, _silence(2.0)])
    first, last = _loud_span(beckett, 2.0)
    segments = segment_audio(audio)
    # "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better." with ~0.7 s pauses.
    assert len(segments) == 6
    # Padding is 0.2 s; at the end the soft decay of "better" (below LOUD) and the hysteresis add ~0.2 s.
    assert first - 0.35 <= segments[0].start_seconds <= first
    assert last <= segments[-1].end_seconds <= last + 0.5
    assert all(a.end <= b.start for a, b in zip(segments, segments[1:]))


@needs_silero
def test_silence_and_room_noise_give_no_utterance():
    rng = np.random.default_rng(0)
    audio = np.concatenate([_silence(1.0), (0.003 * rng.standard_normal(_s(3.0))).astype(np.float32)])
    assert segment_audio(audio) == []


# --- dictate --------------------------------------------------------------------------

@needs_silero
def test_dictate_file_prints_one_line_per_utterance_as_the_adapter_transcribes_it(two_phrases, tiny_model_dir,
                                                                                 tiny_adapter):
    wav, audio, _ = two_phrases
    lines = []
    results = dictate(DictateOptions(file=str(wav), adapter_dir=str(tiny_adapter)), out=lines.append)
    segments = segment_audio(audio)
    expected = _texts(tiny_model_dir, [s.audio for s in segments], adapter=tiny_adapter)
    assert [r["text"] for r in results] == expected
    assert lines == [t for t in expected if t] and lines
    assert [(r["start"], r["end"]) for r in results] == [(round(s.start_seconds, 3), round(s.end_seconds, 3))
                                                          for s in segments]
    assert all(r["decode_seconds"] > 0 and r["clip"] is None for r in results)
    # The adapter is really in: the base model says something else.
    assert _texts(tiny_model_dir, [s.audio for s in segments]) != expected


@needs_silero
def test_verbose_shows_times_and_latency_on_the_utterance_line(two_phrases, tiny_model_dir):
    wav, _, _ = two_phrases
    lines = []
    results = dictate(DictateOptions(file=str(wav), base_model=str(tiny_model_dir), verbose=True), out=lines.append)
    assert len(lines) == len(results) == 2
    for line, r in zip(lines, results):
        assert line.startswith(f"[{r['start']:7.2f}-{r['end']:7.2f} s] ")
        assert f"{r['audio_seconds']:.2f} s audio" in line and " ms decode, RTF " in line


@needs_silero
def test_keep_writes_clips_and_heard_jsonl_and_a_second_run_never_overwrites(two_phrases, tiny_model_dir,
                                                                              tiny_adapter, tmp_path):
    wav, _, _ = two_phrases
    heard = tmp_path / "dictation" / HEARD_MANIFEST
    heard.parent.mkdir()
    corrected = '{"id": "dict-20240101-000000-001", "text": "corrected meanwhile"}'
    heard.write_text(corrected)  # a line without its newline, as an editor may leave it
    options = DictateOptions(file=str(wav), adapter_dir=str(tiny_adapter), keep=True, dictation_dir=str(heard.parent))
    first = dictate(options, out=lambda line: None)
    second = dictate(options, out=lambda line: None)
    lines = heard.read_text().splitlines()
    assert lines[0] == corrected
    rows = [json.loads(line) for line in lines[1:]]
    assert len(rows) == 4 and len({r["id"] for r in rows}) == 4
    for row, result in zip(rows, first + second):
        assert list(row) == ["id", "audio", "text", "heard", "source", "model", "duration", "created"]
        assert row["id"] == result["id"] and row["text"] == row["heard"] == result["text"]
        assert row["audio"] == f"{CLIPS_DIR}/{row['id']}.wav"
        assert re.fullmatch(r"dict-\d{8}-\d{6}-\d{3}", row["id"]) and datetime.strptime(row["id"][5:20],
                                                                                          "%Y%m%d-%H%M%S")
        assert row["source"] == "dictation" and row["model"] == str(tiny_adapter)
        assert datetime.fromisoformat(row["created"]).utcoffset().total_seconds() == 0
        clip = tmp_path / "dictation" / row["audio"]
        assert str(clip) == result["clip"]
        info = sf.info(str(clip))
        assert (info.samplerate, info.channels) == (SAMPLE_RATE, 1)
        assert row["duration"] == pytest.approx(info.frames / SAMPLE_RATE, abs=1e-3) == result["audio_seconds"]


@needs_silero
def test_live_dictation_ends_cleanly_on_ctrl_c_and_transcribes_what_was_being_said(two_phrases, tiny_model_dir):
    _, audio, spans = two_phrases

    class Mic:
        def chunks(self):
            for i in range(0, _s(spans[1][1] - 0.2), 1600):  # Ctrl-C while "Fail better" is said
                yield audio[i:i + 1600]
            raise KeyboardInterrupt

    lines = []
    results = dictate(DictateOptions(base_model=str(tiny_model_dir), verbose=True), source=Mic(), out=lines.append)
    assert len(results) == 2 and results[1]["end"] < spans[1][1]
    assert lines[0].startswith(f"dictating with {tiny_model_dir} (speak; Ctrl-C stops)")
    assert lines[-1] == "stopped: 2 utterance(s)"


def test_push_to_talk_transcribes_each_take_without_the_enter_key_sounds(beckett, tiny_model_dir):
    take = beckett[:_s(1.6)]

    class Mic:
        def record(self, stop, max_seconds):
            stop()
            return take

    keys = iter(["", "", "q"])  # Enter: talk, Enter: stop (asked by stop()), q: quit
    lines, copied = [], []
    results = dictate(DictateOptions(base_model=str(tiny_model_dir), push_to_talk=True, clipboard=True),
                      source=Mic(), out=lines.append, ask=lambda prompt: next(keys), copy=copied.append)
    trimmed = take[_s(0.1):len(take) - _s(0.15)]
    [expected] = _texts(tiny_model_dir, [trimmed])
    assert [r["text"] for r in results] == [expected]
    assert results[0]["audio_seconds"] == round(len(trimmed) / SAMPLE_RATE, 3)
    assert copied == ([expected] if expected else [])
    assert lines[-1] == "stopped: 1 utterance(s)"


@pytest.fixture(scope="module")
def tiny_export(tiny_model_dir, tiny_adapter, tmp_path_factory):
    """The tiny model with its adapter merged, exported in the on-device format (float weights)."""
    from lora_training.export.export import export_model

    model, processor = _reference(tiny_model_dir, tiny_adapter)
    return export_model(model, processor, tmp_path_factory.mktemp("export") / "export", quantize="none")["out"]


@needs_silero
# moonshine-cpp knows only the real tiny and base layer counts, not the tiny random model's: it is
# proven on the real model in tests/export/test_runtimes_real.py.
@pytest.mark.parametrize("runtime", ["onnxruntime", "sherpa-onnx"])
def test_an_exported_model_is_decoded_by_its_runtime(two_phrases, tiny_export, tmp_path, runtime):
    pytest.importorskip(runtime.replace("-", "_"))
    from lora_training.export.runtimes import open_export

    wav, audio, _ = two_phrases
    options = DictateOptions(model=tiny_export, runtime=runtime, file=str(wav), keep=True,
                             dictation_dir=str(tmp_path / "d"))
    results = dictate(options, out=lambda line: None)
    reference = open_export(tiny_export, runtime)
    assert [r["text"] for r in results] == [reference.transcribe(s.audio) for s in segment_audio(audio)]
    assert len(results) == 2
    assert {json.loads(line)["model"] for line in (tmp_path / "d" / HEARD_MANIFEST).read_text().splitlines()} == {
        tiny_export}


@pytest.mark.parametrize("kwargs, message", [
    ({"model": "exp", "adapter_dir": "ad"}, "model: expected one of --model or --adapter-dir (or neither: the base "
                                            "model), got both (exp, ad)"),
    ({"model": "exp", "base_model": "b"}, "base_model: --base-model is for the torch path, expected no --model, "
                                          "got --model exp"),
    ({"file": "a.wav", "push_to_talk": True}, "push_to_talk: needs the microphone, expected no --file, got --file"),
    ({"bias_boost": -1.0}, "bias_boost: expected a finite logit bonus >= 0, got -1.0"),
])
def test_bad_option_combinations_are_one_line_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as e:
        DictateOptions(**kwargs)
    assert str(e.value) == message


def test_bad_inputs_fail_in_one_line_before_any_model_is_loaded(tmp_path, monkeypatch):
    import lora_training.capture.dictate as dictate_module

    monkeypatch.setattr(dictate_module, "load_transcriber", lambda *a: pytest.fail("model loaded before checks"))
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match=f"^{missing}: audio file not found, expected an existing file$"):
        dictate(DictateOptions(file=str(missing), adapter_dir=str(tmp_path)))
    (tmp_path / "junk.wav").write_text("not audio")
    with pytest.raises(AudioError, match=r"junk.wav: unreadable audio, expected wav/flac/ogg/mp3"):
        dictate(DictateOptions(file=str(tmp_path / "junk.wav")))
    with pytest.raises(ConfigError, match=r"^model: .*/gone not found, expected an exported model folder$"):
        dictate(DictateOptions(model=str(tmp_path / "gone")))
    (tmp_path / HEARD_MANIFEST).write_text('{"id": "dict-1"}\nnot json\n')
    with pytest.raises(ConfigError, match=rf"^{tmp_path / HEARD_MANIFEST}:2: unreadable line, expected a JSON object "
                                          r"with an id, got JSONDecodeError: "):
        dictate(DictateOptions(keep=True, dictation_dir=str(tmp_path)), source=object())


def test_clipboard_uses_pyperclip_else_the_first_tool_on_path_else_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyperclip", None)  # find_spec: not installed
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"^clipboard: no way to copy, expected pyperclip \(pip install "
                                          r"pyperclip\) or one of pbcopy, wl-copy, xclip on PATH, got none$"):
        clipboard_copier()
    tool = tmp_path / "xclip"
    tool.write_text(f"#!{sys.executable}\nimport pathlib, sys\n"
                    f"pathlib.Path({str(tmp_path / 'copied')!r}).write_text(' '.join(sys.argv[1:]) + ':' + "
                    f"sys.stdin.read())\n")
    tool.chmod(0o755)
    clipboard_copier()("dev@example.com")
    assert (tmp_path / "copied").read_text() == "-selection clipboard:dev@example.com"
    tool.write_text(f"#!{sys.executable}\nimport sys\nsys.exit('Error: Can\\'t open display')\n")
    with pytest.raises(LoraTrainingError, match=r"^clipboard: xclip -selection clipboard failed, expected exit "
                                                r"status 0, got 1: Error: Can't open display$"):
        clipboard_copier()("text")
    monkeypatch.setitem(sys.modules, "pyperclip", types.SimpleNamespace(copy="pyperclip.copy",
                                                                       __spec__=object()))
    assert clipboard_copier() == "pyperclip.copy"


@needs_silero
def test_cli_dictate_json_lists_the_utterances(two_phrases, tiny_adapter, capsys):
    from lora_training.cli.capture import add_capture_commands
    from lora_training.cli.commands import Commands

    parser = argparse.ArgumentParser()
    add_capture_commands(Commands(parser.add_subparsers(dest="command"), "dictate"))
    wav, _, _ = two_phrases
    args = parser.parse_args(["dictate", "--file", str(wav), "--adapter-dir", str(tiny_adapter), "--json"])
    assert args.handler(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and set(rows[0]) == {"text", "start", "end", "audio_seconds", "decode_seconds", "id",
                                               "clip"}


@needs_silero
def test_bias_vocabulary_decodes_with_the_keyterm_hook(two_phrases, tiny_model_dir, tmp_path):
    from lora_training.evaluation.biasing import keyterm_bias

    wav, audio, _ = two_phrases
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("kubectl | cube control\nnginx | engine x\n")
    results = dictate(DictateOptions(file=str(wav), base_model=str(tiny_model_dir), bias_vocabulary=str(vocabulary),
                                     bias_boost=8.0), out=lambda line: None)
    bias = keyterm_bias(_reference(tiny_model_dir)[1].tokenizer, ["kubectl", "nginx"], 8.0)
    segments = segment_audio(audio)
    assert [r["text"] for r in results] == _texts(tiny_model_dir, [s.audio for s in segments], bias=bias)
    assert [r["text"] for r in results] != _texts(tiny_model_dir, [s.audio for s in segments])


def test_the_torch_path_writes_spoken_forms_as_terms_unless_told_not_to(tiny_model_dir, tmp_path):
    from dataclasses import replace

    from lora_training.capture.dictate import load_transcriber
    from lora_training.data.vocabulary import load_vocabulary

    path = tmp_path / "vocabulary.txt"
    path.write_text("nginx | engine x\n")
    options = DictateOptions(base_model=str(tiny_model_dir), bias_vocabulary=str(path))
    transcriber = load_transcriber(options, load_vocabulary(path))
    assert transcriber.rewrite("the engine x box") == "the nginx box"
    assert transcriber.bias is not None
    plain = transcriber.transcribe(np.zeros(SAMPLE_RATE, np.float32))
    transcriber.rewrite = lambda text: f"<{text}>"  # the rewrite is what transcribe() returns
    assert transcriber.transcribe(np.zeros(SAMPLE_RATE, np.float32)) == f"<{plain}>"
    assert load_transcriber(replace(options, rewrite_spoken=False), load_vocabulary(path)).rewrite is None
    assert load_transcriber(DictateOptions(base_model=str(tiny_model_dir))).bias is None


def test_an_exported_model_gets_the_rewrite_but_no_bias(tmp_path, monkeypatch):
    from lora_training.capture.dictate import load_transcriber
    from lora_training.data.vocabulary import load_vocabulary
    from lora_training.export import runtimes

    class Runtime:
        def transcribe(self, audio):
            return "restart engine x"

    monkeypatch.setattr(runtimes, "open_export", lambda *a, **k: Runtime())
    path = tmp_path / "vocabulary.txt"
    path.write_text("nginx | engine x\n")
    options = DictateOptions(model="exp", bias_vocabulary=str(path))
    assert load_transcriber(options, load_vocabulary(path)).transcribe(None) == "restart nginx"
    off = DictateOptions(model="exp", bias_vocabulary=str(path), rewrite_spoken=False)
    assert load_transcriber(off, load_vocabulary(path)).transcribe(None) == "restart engine x"

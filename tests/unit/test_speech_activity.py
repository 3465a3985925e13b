"""The speech activity example (Silero VAD on ONNX Runtime), in-process: it finds the speech
in the bundled recording where the recording has it, none in noise, and a batch gives each
recording what it would get alone."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from tasks.base.runtime import load_task, run_batch, run_once
from tests.conftest import ROOT

EXAMPLE = ROOT / "tasks" / "examples" / "speech_activity"
SAMPLE = ROOT / "tasks" / "data" / "speech.wav"
SPANS = json.loads((ROOT / "tasks" / "data" / "speech.json").read_text())["speech"]


@pytest.fixture(scope="module")
def task():  # noqa: ANN201
    t = load_task(EXAMPLE)
    t.setup()
    return t


def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1) -> Path:
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def detect(task, path: Path | str, **options: object) -> dict:  # noqa: ANN001
    verdict, payload = run_once(task, json.dumps({"audio_path": str(path), **options}))
    assert verdict == "ok", payload
    return json.loads(payload)


def test_it_finds_each_spoken_sentence_and_nothing_in_the_pauses(task) -> None:  # noqa: ANN001
    out = detect(task, SAMPLE)
    found = [(s["start_seconds"], s["end_seconds"]) for s in out["segments"]]
    assert len(found) == len(SPANS) == 2
    for (start, end), (true_start, true_end) in zip(found, SPANS, strict=True):
        # eSpeak's own trailing silence is inside a true span: the end may come early.
        assert abs(start - true_start) < 0.15 and true_end - 0.5 < end < true_end + 0.15
        assert out["segments"][0]["mean_probability"] > 0.8
    assert out["duration_seconds"] == pytest.approx(9.377, abs=0.01)
    assert out["batch_size"] == 1


def test_noise_alone_has_no_speech(task, tmp_path: Path) -> None:  # noqa: ANN001
    noise = np.random.default_rng(1).normal(0, 0.01, 16_000 * 3)
    out = detect(task, write_wav(tmp_path / "noise.wav", noise, 16_000))
    assert out["segments"] == [] and out["speech_seconds"] == 0.0
    assert out["max_probability"] < 0.5


def test_another_rate_and_stereo_are_converted_and_give_the_same_speech(
    task,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    with wave.open(str(SAMPLE)) as w:
        mono = np.frombuffer(w.readframes(w.getnframes()), np.int16) / 32768.0
    n = len(mono) // 2  # 8 kHz: every other sample of a band-limited copy
    spectrum = np.fft.rfft(mono)[: n // 2 + 1]
    low = np.fft.irfft(spectrum, n) * (n / len(mono))
    stereo = np.repeat(low, 2)  # both channels the same
    out = detect(task, write_wav(tmp_path / "8k.wav", stereo, 8_000, channels=2))
    # Telephone bandwidth: the same speech, though a pause inside a sentence may split it.
    assert out["duration_seconds"] == pytest.approx(9.377, abs=0.01)
    assert abs(out["segments"][0]["start_seconds"] - SPANS[0][0]) < 0.2
    for seg in out["segments"]:
        assert any(a - 0.2 < seg["start_seconds"] < seg["end_seconds"] < b + 0.2 for a, b in SPANS)
    full = detect(task, SAMPLE)["speech_seconds"]
    assert out["speech_seconds"] == pytest.approx(full, rel=0.1)


def test_a_batch_gives_each_recording_what_it_gets_alone(task, tmp_path: Path) -> None:  # noqa: ANN001
    noise = write_wav(
        tmp_path / "noise.wav", np.random.default_rng(2).normal(0, 0.01, 8000), 16_000
    )
    inputs = [
        json.dumps({"audio_path": str(SAMPLE)}),
        json.dumps({"audio_path": str(noise)}),
        json.dumps({"audio_path": str(tmp_path / "missing.wav")}),
        json.dumps({"audio_path": str(SAMPLE), "threshold": 0.9}),
    ]
    batched = run_batch(task, inputs)
    assert batched[2][0] == "fatal" and "audio_path" in batched[2][1]  # fails alone
    for text, (verdict, payload) in zip(inputs, batched, strict=True):
        if verdict != "ok":
            continue
        alone = json.loads(run_once(task, text)[1])
        together = json.loads(payload)
        assert together["batch_size"] == 3 and alone["batch_size"] == 1
        for key in ("segments", "speech_seconds", "chunks"):
            assert together[key] == alone[key]


@pytest.mark.parametrize(
    ("audio_path", "says"),
    [("speech.mp3", "not a .wav file"), ("", "expected an artifact URI or a path")],
)
def test_what_it_cannot_read_is_named(task, audio_path: str, says: str) -> None:  # noqa: ANN001
    verdict, error = run_once(task, json.dumps({"audio_path": audio_path}))
    assert verdict == "fatal" and "audio_path" in error and says in error

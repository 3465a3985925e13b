"""Makes ``tasks/data/speech.wav``: two spoken sentences with pauses, over faint noise.

The speech is synthesized by eSpeak NG (``apt-get install espeak-ng``), so the file is free of
anyone's voice and its speech spans are known exactly (``SPANS`` below, written to
``tasks/data/speech.json`` for the tests). It is 16 kHz mono 16-bit PCM, what the speech
activity example reads best; the noise (seeded, -50 dBFS) keeps its pauses from being digital
silence that any threshold would find.

    python scripts/make_speech_sample.py
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

RATE = 16_000
SENTENCES = (
    "Worker Task Manager runs tasks and pipelines on a fleet of executors.",
    "Batches of speech.",
)
PAUSES_S = (0.8, 1.2, 0.8)  # before, between and after the sentences
OUT = Path(__file__).resolve().parents[1] / "tasks" / "data"


def spoken(text: str) -> np.ndarray:
    """``text`` spoken by eSpeak NG, resampled to 16 kHz (band-limited, by FFT)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
        with wave.open(str(path)) as w:
            rate = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float64)
    n = round(len(x) * RATE / rate)
    spectrum = np.fft.rfft(x)[: n // 2 + 1]
    return np.fft.irfft(spectrum, n) * (n / len(x))


def main() -> None:
    parts, spans, t = [], [], 0.0
    for i, text in enumerate(SENTENCES):
        pause = np.zeros(round(PAUSES_S[i] * RATE))
        speech = spoken(text)
        parts += [pause, speech]
        t += len(pause) / RATE
        spans.append([round(t, 3), round(t + len(speech) / RATE, 3)])
        t += len(speech) / RATE
    parts.append(np.zeros(round(PAUSES_S[-1] * RATE)))
    audio = np.concatenate(parts)
    audio += np.random.default_rng(18).normal(0, 32768 * 10 ** (-50 / 20), len(audio))
    pcm = np.clip(np.round(audio), -32768, 32767).astype(np.int16)
    with wave.open(str(OUT / "speech.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    (OUT / "speech.json").write_text(
        json.dumps({"seconds": round(len(pcm) / RATE, 3), "speech": spans}, indent=1) + "\n"
    )
    print(f"{OUT / 'speech.wav'}: {len(pcm) / RATE:.2f} s, speech at {spans}")


if __name__ == "__main__":
    main()

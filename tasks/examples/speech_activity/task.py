"""Speech activity: where in a recording someone speaks (Silero VAD on ONNX Runtime).

The model is Silero VAD 6 (Silero Team, MIT licence; ``silero_vad.onnx``, copied from the
``silero-vad`` wheel by ``scripts/vendor_vad_model.py``, licence in ``SILERO_VAD_LICENSE``). For
each 32 ms chunk of 16 kHz audio (512 samples, with the 64 before it as context) it gives the
probability that the chunk holds speech, carrying a recurrent state from chunk to chunk. The
task turns those probabilities into speech segments the way Silero's own
``get_speech_timestamps`` does: a threshold with hysteresis, a minimum speech and silence
duration, a little padding.

Dynamic batching (task.json ``batching``): per chunk the network is small, so a call costs
ONNX Runtime mostly per-call overhead. ``process_batch`` runs the recordings of a batch in
lockstep — one model call per chunk for all of them, each with its own state — which is
what makes batching pay here. A step leased alone is a batch of one (the SDK's ``process``
calls ``process_batch``).
"""

from __future__ import annotations

import wave
from pathlib import Path, PurePosixPath
from typing import Any

from tasks.base.task_base import FatalError, SimpleTask, TaskContext

MODEL = Path(__file__).with_name("silero_vad.onnx")
RATE = 16_000
CHUNK = 512  # samples per model call at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk the model sees with each chunk
MAX_SECONDS = 600
MIN_SPEECH_MS, MIN_SILENCE_MS, PAD_MS = 250, 100, 30  # get_speech_timestamps' defaults


def read_wav(path: Path, name: str) -> Any:
    """Mono float32 samples in [-1, 1] at 16 kHz from a PCM WAV file (resampled if needed)."""
    import numpy as np

    try:
        with wave.open(str(path)) as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            if w.getnframes() > MAX_SECONDS * rate:
                raise FatalError(f"audio_path: {name} is over {MAX_SECONDS} s")
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise FatalError(f"audio_path: {name} is not a PCM WAV file ({exc})") from exc
    except OSError as exc:
        raise FatalError(f"audio_path: cannot read {name}: {exc.strerror or exc}") from exc
    kinds = {1: (np.uint8, 128.0, 128.0), 2: (np.int16, 0.0, 32768.0), 4: (np.int32, 0.0, 2.0**31)}
    if width not in kinds:
        raise FatalError(f"audio_path: {name} has {8 * width}-bit samples; 8, 16 or 32 will do")
    dtype, offset, scale = kinds[width]
    x = (np.frombuffer(raw, dtype).astype(np.float32) - offset) / scale
    x = x.reshape(-1, channels).mean(axis=1)
    if rate != RATE and len(x):  # band-limited resampling, by FFT
        n = max(1, round(len(x) * RATE / rate))
        x = np.fft.irfft(np.fft.rfft(x)[: n // 2 + 1], n).astype(np.float32) * (n / len(x))
    return x


def audio_file(value: Any, context: TaskContext) -> tuple[Path, str]:
    """The local file of an ``audio_path``: an artifact URI (fetched by the executor) or a
    path."""
    if not isinstance(value, str) or not value:
        raise FatalError("audio_path: expected an artifact URI or a path to a .wav file")
    if PurePosixPath(value.split("?")[0]).suffix.lower() != ".wav":
        raise FatalError(f"audio_path: {value!r} is not a .wav file")
    return context.local_path(value, "audio_path"), value


def segments(probs: Any, samples: int, threshold: float) -> list[tuple[int, int, float]]:
    """Speech segments (first sample, end sample, mean probability) from per-chunk speech
    probabilities: speech starts at a chunk over ``threshold`` and ends after
    ``MIN_SILENCE_MS`` under ``threshold - 0.15``; segments shorter than ``MIN_SPEECH_MS``
    are dropped; each is padded by ``PAD_MS`` (not past its neighbours)."""
    low = max(threshold - 0.15, 0.01)
    min_speech, min_silence = MIN_SPEECH_MS * RATE // 1000, MIN_SILENCE_MS * RATE // 1000
    found: list[tuple[int, int]] = []
    start, silent_from = -1, -1
    for i, p in enumerate(probs):
        at = i * CHUNK
        if p >= threshold:
            silent_from = -1
            if start < 0:
                start = at
        elif p < low and start >= 0:
            if silent_from < 0:
                silent_from = at
            if at - silent_from >= min_silence:
                if silent_from - start > min_speech:
                    found.append((start, silent_from))
                start, silent_from = -1, -1
    if start >= 0 and samples - start > min_speech:
        found.append((start, samples))
    pad = PAD_MS * RATE // 1000
    out = []
    for k, (a, b) in enumerate(found):
        lo = max(a - pad, found[k - 1][1] if k else 0, 0)
        hi = min(b + pad, found[k + 1][0] if k + 1 < len(found) else samples, samples)
        first, last = a // CHUNK, max(a // CHUNK + 1, -(-b // CHUNK))
        out.append((lo, hi, float(probs[first:last].mean())))
    return out


class Task(SimpleTask):
    def setup(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # a slot is one core's worth of work
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])

    def process_batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any] | Exception]:
        """Speech segments of each input's recording, the recordings run in lockstep. One
        that cannot be read fails alone."""
        audio: list[Any] = []
        for data in inputs:
            try:
                path, name = audio_file(data.get("audio_path"), self.context)
                audio.append(read_wav(path, name))
            except FatalError as exc:
                audio.append(exc)
        clips = [a for a in audio if not isinstance(a, Exception)]
        probs = iter(self.probabilities(clips) if clips else [])
        outputs: list[dict[str, Any] | Exception] = []
        for data, samples in zip(inputs, audio, strict=True):
            if isinstance(samples, Exception):
                outputs.append(samples)
                continue
            p = next(probs)
            threshold = float(data.get("threshold", 0.5))
            found = segments(p, len(samples), threshold)
            speech = sum(b - a for a, b, _ in found) / RATE
            duration = len(samples) / RATE
            outputs.append(
                {
                    "duration_seconds": round(duration, 3),
                    "speech_seconds": round(speech, 3),
                    "speech_ratio": round(speech / duration, 4) if duration else 0.0,
                    "segments": [
                        {
                            "start_seconds": round(a / RATE, 3),
                            "end_seconds": round(b / RATE, 3),
                            "mean_probability": round(m, 4),
                        }
                        for a, b, m in found
                    ],
                    "chunks": int(len(p)),
                    "max_probability": round(float(p.max()), 4) if len(p) else 0.0,
                    "threshold": threshold,
                    "model": "Silero VAD 6 (silero-vad 6.2.3, ONNX), MIT licence",
                    "batch_size": len(clips),  # recordings that shared the model calls
                }
            )
        return outputs

    def probabilities(self, clips: list[Any]) -> list[Any]:
        """Per-chunk speech probabilities of each clip: one model call per chunk index for
        all clips together (shorter clips padded with silence, their extra chunks dropped)."""
        import numpy as np

        chunks = [len(c) // CHUNK for c in clips]
        n = max(chunks)
        batch = np.zeros((len(clips), n * CHUNK), np.float32)
        for k, c in enumerate(clips):
            batch[k, : chunks[k] * CHUNK] = c[: chunks[k] * CHUNK]
        state = np.zeros((2, len(clips), 128), np.float32)
        context = np.zeros((len(clips), CONTEXT), np.float32)
        rate = np.array(RATE, np.int64)
        out = np.empty((len(clips), n), np.float32)
        for i in range(n):
            chunk = batch[:, i * CHUNK : (i + 1) * CHUNK]
            x = np.concatenate([context, chunk], axis=1)
            p, state = self.session.run(None, {"input": x, "state": state, "sr": rate})
            out[:, i] = p[:, 0]
            context = chunk[:, -CONTEXT:]
        return [out[k, : chunks[k]] for k in range(len(clips))]

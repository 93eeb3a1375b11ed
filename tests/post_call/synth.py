"""Synthetic dual-channel call recordings for the post-call tests: tones stand in for
voices, placed on the caller's or the agent's channel at given times."""

import io
import wave

import numpy as np

RATE = 8000


def tone(seconds: float, freq: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return amplitude * np.sin(2 * np.pi * freq * t)


def dual_wav(
    duration_s: float,
    caller: list[tuple[float, float, float]],
    agent: list[tuple[float, float, float]],
    *,
    bleed: float = 0.0,
) -> bytes:
    """A 16-bit 8 kHz two-channel WAV: caller on channel 1, agent on channel 2. Each
    utterance is (start s, end s, frequency Hz); `bleed` leaks each side into the other
    channel at that fraction, as echo on a real line does."""
    channels = np.zeros((int(duration_s * RATE), 2))
    for index, spans in enumerate((caller, agent)):
        for start, end, freq in spans:
            first = int(start * RATE)
            signal = tone(end - start, freq)[: channels.shape[0] - first]
            channels[first : first + len(signal), index] += signal
            channels[first : first + len(signal), 1 - index] += bleed * signal
    pcm = (np.clip(channels, -1, 1) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm.tobytes())
    return out.getvalue()

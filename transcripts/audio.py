"""The dual-channel recording as numbers: channels, energy, silences, mono pieces and
voice clips. Pure functions over bytes and arrays, tested without files or network.

Twilio serves call recordings as 16-bit linear PCM WAV at 8 kHz; a dual-channel call
recording holds the caller (the call's inbound audio) on the first channel and what our
stream played (the agent) on the second. See docs/protocol-notes.md.
"""

import base64
import io
import itertools
import wave
from dataclasses import dataclass

import numpy as np

CALLER_CHANNEL = 1  # channels are numbered from 1, as Twilio's docs do
AGENT_CHANNEL = 2
WINDOW_S = 0.02  # energy is measured in 20 ms windows, one Twilio media frame
SPEECH_DBFS = -45.0  # a window louder than this holds speech (µ-law silence is -inf)
# One side must be this much louder than the other for a stretch to count as theirs.
DOMINANCE_DB = 6.0
SILENCE_FLOOR_DB = -120.0  # digital silence, instead of -inf, so levels can be compared


class AudioError(ValueError):
    """The recording cannot be read as audio."""


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # shape (frames, channels), float32 in [-1, 1]
    rate: int

    @property
    def channels(self) -> int:
        return self.samples.shape[1]

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.rate

    def channel(self, number: int) -> np.ndarray:
        return self.samples[:, number - 1]

    def mono(self) -> np.ndarray:
        return self.samples.mean(axis=1) if self.channels > 1 else self.samples[:, 0]

    def span(self, start_s: float, end_s: float) -> np.ndarray:
        first = max(0, int(start_s * self.rate))
        last = min(self.samples.shape[0], int(end_s * self.rate))
        return self.samples[first:last]


def read_wav(data: bytes) -> Audio:
    try:
        with wave.open(io.BytesIO(data)) as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"not a PCM WAV file: {exc}") from exc
    if width != 2:
        raise AudioError(f"expected 16-bit samples, got {width * 8}-bit")
    pcm = np.frombuffer(frames, dtype="<i2")
    pcm = pcm[: len(pcm) // channels * channels].reshape(-1, channels)
    return Audio((pcm.astype(np.float32) / 32768.0), rate)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """A mono 16-bit WAV of `samples` (float, [-1, 1])."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())
    return out.getvalue()


def wav_data_url(samples: np.ndarray, rate: int) -> str:
    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(samples, rate)).decode()


def dbfs(samples: np.ndarray) -> float:
    if samples.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def window_levels(signal: np.ndarray, rate: int) -> np.ndarray:
    """Level in dBFS of each 20 ms window of a one-channel signal."""
    size = max(1, int(rate * WINDOW_S))
    count = len(signal) // size
    if count == 0:
        return np.zeros(0)
    windows = signal[: count * size].reshape(count, size)
    # Sum of squares per window without a squared copy of the signal: an hour of audio
    # stays within its own size in memory.
    rms = np.sqrt(np.einsum("ij,ij->i", windows, windows) / size)
    with np.errstate(divide="ignore"):
        return np.maximum(20 * np.log10(rms), SILENCE_FLOOR_DB)


def speech_spans(
    signal: np.ndarray, rate: int, *, min_silence_s: float = 0.5, min_speech_s: float = 0.1
) -> list[tuple[float, float]]:
    """(start, end) seconds of speech in one channel, split at silences of at least
    `min_silence_s`: the utterances of one speaker."""
    return _spans(window_levels(signal, rate) > SPEECH_DBFS, min_silence_s, min_speech_s)


def own_speech_spans(
    audio: Audio, channel: int, *, min_silence_s: float = 0.5, min_speech_s: float = 0.1
) -> list[tuple[float, float]]:
    """Like speech_spans, but a window where the other channel is DOMINANCE_DB louder is
    the other side's voice leaking in (line echo), not this side speaking."""
    own = window_levels(audio.channel(channel), audio.rate)
    if audio.channels < 2:
        return _spans(own > SPEECH_DBFS, min_silence_s, min_speech_s)
    other_channel = AGENT_CHANNEL if channel == CALLER_CHANNEL else CALLER_CHANNEL
    other = window_levels(audio.channel(other_channel), audio.rate)
    voiced = (own > SPEECH_DBFS) & (own > other - DOMINANCE_DB)
    return _spans(voiced, min_silence_s, min_speech_s)


def _spans(
    voiced: np.ndarray, min_silence_s: float, min_speech_s: float
) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    start = None
    quiet = 0
    gap = max(1, round(min_silence_s / WINDOW_S))
    for index, is_voiced in enumerate(voiced):
        if is_voiced:
            if start is None:
                start = index
            quiet = 0
        elif start is not None:
            quiet += 1
            if quiet >= gap:
                spans.append((start, index - quiet + 1))
                start, quiet = None, 0
    if start is not None:
        spans.append((start, len(voiced) - quiet))
    return [
        (round(a * WINDOW_S, 3), round(b * WINDOW_S, 3))
        for a, b in spans
        if (b - a) * WINDOW_S >= min_speech_s
    ]


def dominant_channel(audio: Audio, start_s: float, end_s: float) -> int | None:
    """Which channel carries a stretch of the call: the one at least DOMINANCE_DB louder
    than the other, or None when neither is (crosstalk, silence, a mono file)."""
    if audio.channels < 2:
        return None
    span = audio.span(start_s, end_s)
    caller, agent = dbfs(span[:, CALLER_CHANNEL - 1]), dbfs(span[:, AGENT_CHANNEL - 1])
    if max(caller, agent) <= SPEECH_DBFS:
        return None
    if caller - agent >= DOMINANCE_DB:
        return CALLER_CHANNEL
    if agent - caller >= DOMINANCE_DB:
        return AGENT_CHANNEL
    return None


def voice_clip(audio: Audio, channel: int, *, min_s: float = 2.0, max_s: float = 8.0):
    """A clip of one speaker for OpenAI's known-speaker references (2–10 s): their speech
    where the other side is quiet, joined up to `max_s`. None if they said too little."""
    other = AGENT_CHANNEL if channel == CALLER_CHANNEL else CALLER_CHANNEL
    own_levels = window_levels(audio.channel(channel), audio.rate)
    other_levels = (
        window_levels(audio.channel(other), audio.rate)
        if audio.channels > 1
        else np.full_like(own_levels, -np.inf)
    )
    solo = (own_levels > SPEECH_DBFS) & (own_levels - other_levels >= DOMINANCE_DB)
    size = int(audio.rate * WINDOW_S)
    wanted = int(max_s / WINDOW_S)
    picked = np.flatnonzero(solo)[:wanted]
    if len(picked) * WINDOW_S < min_s:
        return None
    signal = audio.channel(channel)
    return np.concatenate([signal[i * size : (i + 1) * size] for i in picked])


def cut_points(signal: np.ndarray, rate: int, max_piece_s: float) -> list[float]:
    """Where to cut a long mono signal into pieces of at most `max_piece_s`: at the
    quietest 20 ms window in the last third of each piece, so no word is split."""
    levels = window_levels(signal, rate)
    total_s = len(signal) / rate
    cuts: list[float] = []
    start_s = 0.0
    while total_s - start_s > max_piece_s:
        first = int((start_s + max_piece_s * 2 / 3) / WINDOW_S)
        last = int((start_s + max_piece_s) / WINDOW_S)
        window = levels[first:last]
        if len(window):
            cut_s = (first + int(np.argmin(window))) * WINDOW_S
        else:
            cut_s = start_s + max_piece_s
        cut_s = round(max(cut_s, start_s + WINDOW_S), 3)
        cuts.append(cut_s)
        start_s = cut_s
    return cuts


def pieces(audio: Audio, max_piece_s: float) -> list[tuple[float, np.ndarray]]:
    """The mono mix in pieces short enough for one transcription request each, with the
    offset in seconds of each piece in the call."""
    mono = audio.mono()
    bounds = [0.0, *cut_points(mono, audio.rate, max_piece_s), audio.duration_s]
    return [
        (start, mono[int(start * audio.rate) : int(end * audio.rate)])
        for start, end in itertools.pairwise(bounds)
        if end > start
    ]

"""G.711 µ-law helpers shared by the fakes and the tests (8 kHz, one byte per sample)."""

from __future__ import annotations

import math

SAMPLE_RATE = 8000
BYTES_PER_MS = SAMPLE_RATE // 1000  # one µ-law byte per sample
ULAW_SILENCE = 0xFF  # encodes linear 0

_BIAS = 0x84  # 132: G.711 adds it so every segment has a leading one bit
_CLIP_14 = 8159  # largest 14-bit magnitude µ-law encodes


def ulaw_to_linear(byte: int) -> int:
    """Decode one µ-law byte to a 16-bit linear sample (G.711)."""
    byte = ~byte & 0xFF
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return -magnitude if sign else magnitude


def linear_to_ulaw(sample: int) -> int:
    """Encode one 16-bit linear sample to a µ-law byte (G.711, same rounding as audioop)."""
    value = sample >> 2  # µ-law works on 14-bit samples
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, _CLIP_14) + (_BIAS >> 2)
    segment = max(0, value.bit_length() - 6)  # 0..7: which power-of-two band
    if segment > 7:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


# Decoding is on the VAD path for every 20 ms window: precompute |linear| per byte.
_ABS_LINEAR = [abs(ulaw_to_linear(b)) for b in range(256)]


def ms_of(n_bytes: int) -> int:
    """Duration in ms of `n_bytes` of 8 kHz µ-law."""
    return n_bytes // BYTES_PER_MS


def silence(ms: int) -> bytes:
    return bytes([ULAW_SILENCE]) * (ms * BYTES_PER_MS)


def tone(ms: int, amplitude: int = 8000, freq: int = 440) -> bytes:
    """A sine wave of `freq` Hz as 8 kHz µ-law."""
    n = ms * BYTES_PER_MS
    step = 2 * math.pi * freq / SAMPLE_RATE
    return bytes(linear_to_ulaw(round(amplitude * math.sin(step * i))) for i in range(n))


def mean_abs_amplitude(chunk: bytes) -> float:
    if not chunk:
        return 0.0
    return sum(_ABS_LINEAR[b] for b in chunk) / len(chunk)


def is_speech(chunk: bytes, threshold: int = 500) -> bool:
    """True when the mean absolute linear amplitude of `chunk` is above `threshold`."""
    return mean_abs_amplitude(chunk) > threshold


def alaw_to_linear(byte: int) -> int:
    """Decode one A-law byte to a 16-bit linear sample (G.711), for `audio/pcma`."""
    byte ^= 0x55
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    magnitude = (mantissa << 4) + 8  # segment 0 is linear
    if exponent:
        magnitude = (magnitude + 0x100) << (exponent - 1)
    return magnitude if sign else -magnitude


def linear_to_alaw(sample: int) -> int:
    """Encode one 16-bit linear sample to an A-law byte (G.711, same rounding as audioop)."""
    value = sample >> 3  # A-law works on 13-bit samples
    if value >= 0:
        mask = 0xD5
    else:
        mask, value = 0x55, -value - 1
    segment = max(0, value.bit_length() - 5)
    if segment > 7:
        return 0x7F ^ mask
    shift = 1 if segment < 2 else segment
    return ((segment << 4) | ((value >> shift) & 0x0F)) ^ mask

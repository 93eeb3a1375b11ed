"""What the fakes' voices say. Fake audio is sine tones: every utterance gets a tone of its
own, and the bank remembers who said what with it, so the fake transcription server can
"hear" a recording — find the tones, look up their words and speakers — the way a real
model hears speech."""

from __future__ import annotations

import threading
from dataclasses import dataclass

LOWEST_HZ = 420
STEP_HZ = 60  # far enough apart for a 20 ms FFT (50 Hz bins) to tell them apart
HIGHEST_HZ = 3540


@dataclass(frozen=True)
class Utterance:
    freq_hz: int
    voice: str  # who speaks: "agent", "caller", …
    text: str
    ms: int | None  # how long the whole utterance lasts, when known


class VoiceBank:
    def __init__(self) -> None:
        self._by_freq: dict[int, Utterance] = {}
        self._next = LOWEST_HZ
        self._lock = threading.Lock()  # the realtime fake and the HTTP fake use it at once

    def say(self, voice: str, text: str, ms: int | None = None) -> int:
        """A new tone for one utterance; returns its frequency in Hz."""
        with self._lock:
            if self._next > HIGHEST_HZ:
                raise RuntimeError("the voice bank has no tones left: use a new bank")
            freq = self._next
            self._next += STEP_HZ
            self._by_freq[freq] = Utterance(freq, voice, text, ms)
            return freq

    def lookup(self, freq_hz: float) -> Utterance | None:
        with self._lock:
            if not self._by_freq:
                return None
            nearest = min(self._by_freq, key=lambda f: abs(f - freq_hz))
            return self._by_freq[nearest] if abs(nearest - freq_hz) <= STEP_HZ / 2 else None

    def utterances(self) -> list[Utterance]:
        with self._lock:
            return list(self._by_freq.values())

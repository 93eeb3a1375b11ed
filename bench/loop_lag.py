"""How late an event loop wakes up: a load generator whose loop lags inflates every
latency it measures, so each one reports this next to its figures."""

import asyncio
import time

from bench.stats import percentile

TICK_S = 0.005
SPIKE_MS = 5.0


class LoopLag:
    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self.spikes: list[tuple[float, float]] = []  # (when, lag ms) of lags over 5 ms
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            due = time.monotonic() + TICK_S
            await asyncio.sleep(TICK_S)
            lag_ms = (time.monotonic() - due) * 1000
            self.lags_ms.append(lag_ms)
            if lag_ms > SPIKE_MS:
                self.spikes.append((due, lag_ms))

    def stop(self) -> dict:
        if self._task is not None:
            self._task.cancel()
        return {
            "p50_ms": percentile(self.lags_ms, 50),
            "p99_ms": percentile(self.lags_ms, 99),
            "max_ms": max(self.lags_ms, default=None),
            "spikes": self.spikes,
        }

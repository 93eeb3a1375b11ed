"""Percentiles and small summaries of latency samples."""

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (p99 of 100 samples is the 99th smallest); None if empty."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def p50_p99(samples: Sequence[float]) -> tuple[float | None, float | None]:
    return percentile(samples, 50), percentile(samples, 99)


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"

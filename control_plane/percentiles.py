"""Nearest-rank percentiles: the one definition the shadow report, `switchyard traffic`,
the tests and the benchmarks share, so their numbers mean the same thing."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The smallest value with at least ``q`` percent (0..100] of ``values`` at or below it; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(len(ordered) * q / 100))
    return ordered[min(rank, len(ordered)) - 1]

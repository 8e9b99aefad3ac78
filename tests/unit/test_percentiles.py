"""The one percentile definition (nearest rank) that reports, the CLI and benchmarks share."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from control_plane.percentiles import percentile


def test_known_values() -> None:
    assert percentile([], 95) is None
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile(list(range(1, 101)), 100) == 100
    assert percentile([3.0], 50) == 3.0
    assert percentile([5.0, 1.0], 50) == 1.0


@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=200),
    st.floats(min_value=0.0, max_value=100.0, exclude_min=True),
)
def test_nearest_rank(values: list[float], q: float) -> None:
    found = percentile(values, q)
    assert found in values
    rank = max(1, math.ceil(len(values) * q / 100))
    # At least `rank` values are at or below it, and fewer than `rank` are strictly below.
    assert sum(v <= found for v in values) >= rank > sum(v < found for v in values)

"""Durations as users write them (``250ms``, ``5s``, ``1m``), parsed to milliseconds."""

from __future__ import annotations

import re

# Also the JSON Schema of a duration field (schema.py), which the Kubernetes API server
# checks with Go's RE2: ASCII classes here too, so both accept exactly the same text.
DURATION_PATTERN = r"^\s*(\d+(?:\.\d+)?)(ms|s|m|h)\s*$"
_DURATION = re.compile(DURATION_PATTERN, re.ASCII)
_UNIT_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
# Envoy converts durations to int64 nanoseconds and refuses 9,223,372,036 s and
# more (protobuf's own limit, 315,576,000,000 s, is higher): about 292 years.
MAX_DURATION_MS = 9_223_372_035_999


def parse_duration_ms(value: object) -> int:
    """Parse a duration string; raise ``ValueError`` with a message fit for a user."""
    if not isinstance(value, str):
        raise ValueError(f"bad duration {value!r}: write a number with a unit, e.g. 250ms, 5s, 1m, 1h")
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"bad duration {value!r}: write a number with a unit, e.g. 250ms, 5s, 1m, 1h")
    millis = float(match.group(1)) * _UNIT_MS[match.group(2)]
    if millis > MAX_DURATION_MS:
        raise ValueError(f"bad duration {value!r}: at most {MAX_DURATION_MS // 1000}s (about 292 years)")
    if millis < 1 or millis != int(millis):
        raise ValueError(f"bad duration {value!r}: must be a whole number of milliseconds >= 1ms")
    return int(millis)


def format_duration_ms(millis: int) -> str:
    """The shortest exact spelling, so written-back policies stay readable."""
    for unit in ("h", "m", "s"):
        size = int(_UNIT_MS[unit])
        if millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"

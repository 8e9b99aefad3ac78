"""Silent near-misses, made loud: a misspelt pin field or header gets a warning.

Envoy pins a request to a version when it carries the pin header or body field
(``x-model-version``, ``model_version``); a request that spells it
``model_verison`` matches nothing, follows the split, and looks like it worked.
So the service that answers compares the request's unknown body fields and its
headers with the names it knows: one within a small edit distance of a known
name is almost certainly that name misspelt. The answer then carries a
``Warning: 299`` header (as the Kubernetes API does for deprecated fields) and
the service logs it once per name. Routing on other body fields keeps working:
an unknown field that is not close to a known one is no warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

log = logging.getLogger("model_services")

MAX_DISTANCE = 2
_LOGGED_MAX = 1024  # distinct misspellings logged; a bound, so a hostile client cannot grow it


def distance(a: str, b: str, limit: int = MAX_DISTANCE) -> int:
    """Levenshtein distance with adjacent transpositions (``verison``/``version`` is 1), capped at ``limit + 1``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return min(previous[-1], limit + 1)


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name ``name`` is probably a misspelling of, if any."""
    candidates = [(distance(name, k), k) for k in known if k != name]
    near = [(d, k) for d, k in candidates if 0 < d <= MAX_DISTANCE and d < len(k) // 2]
    return min(near)[1] if near else None


class NearMisses:
    """The pin names one service knows, and the warnings for what comes close to them."""

    def __init__(self, body_fields: Iterable[str], headers: Iterable[str]) -> None:
        self.body_fields = tuple(body_fields)
        self.headers = tuple(h.lower() for h in headers)
        self._logged: set[str] = set()

    def warnings(self, unknown_fields: Iterable[str], header_names: Iterable[str]) -> list[str]:
        found: list[str] = []
        for name in unknown_fields:
            meant = closest(name, self.body_fields)
            if meant is not None:
                found.append(f"body field {name!r} is not a field of this API; did you mean {meant!r}?")
        for header in header_names:
            header = header.lower()
            if header in self.headers:
                continue
            meant = closest(header, self.headers)
            if meant is not None:
                found.append(f"header {header!r} is not one Switchyard routes on; did you mean {meant!r}?")
        for warning in found:
            if warning not in self._logged and len(self._logged) < _LOGGED_MAX:
                self._logged.add(warning)
                log.warning("near miss: %s (the request followed the split, it was not pinned)", warning)
        return found


def warning_header(messages: list[str]) -> str:
    """RFC 7234 ``Warning`` values (code 299, "miscellaneous persistent warning")."""
    return ", ".join('299 - "' + m.replace("\\", "\\\\").replace('"', '\\"') + ' (not pinned)"' for m in messages)

"""Effective weights: a version with no ready endpoint never gets traffic."""

from __future__ import annotations

from collections.abc import Container

from control_plane.ir import Split


def effective_weights(split: Split, unready: Container[str]) -> tuple[tuple[str, int], ...]:
    """Positive weights of ``split`` with unready versions dropped.

    Dropping a version hands its share to the remaining ones in proportion to
    their weights (Envoy normalises by the sum). If nothing with weight is
    ready, the split is kept as declared: there is nowhere better to send it,
    and the policy stays visible in Envoy.
    """
    positive = tuple((name, weight) for name, weight in split.weights if weight > 0)
    ready = tuple((name, weight) for name, weight in positive if name not in unready)
    return ready or positive

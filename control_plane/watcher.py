"""Reload when policy files change."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from watchfiles import Change, awatch

from control_plane.policy.loader import POLICY_SUFFIXES

log = logging.getLogger(__name__)


def _is_policy(change: Change, path: str) -> bool:
    return Path(path).suffix in POLICY_SUFFIXES and not Path(path).name.startswith(".")


async def watch_policies(paths: list[Path], on_change: Callable[[], object]) -> None:
    """Call ``on_change`` after each batch of edits (debounced; editors write in bursts)."""
    watched = [p for p in paths if p.exists()]
    async for changes in awatch(*watched, watch_filter=_is_policy, debounce=50, step=20):
        log.info("policy files changed: %s", ", ".join(sorted({p for _, p in changes})))
        on_change()

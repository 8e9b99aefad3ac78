"""Reload when policy files change, for as long as the process runs.

The watch never ends by itself: a reload that raises is logged and the next
edit is still picked up; if watching fails (the directory vanished, the
inotify watch broke) it starts again once the path is back, and reloads then,
since files may have changed while nobody watched.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from watchfiles import Change, awatch

from control_plane.sources.files import POLICY_SUFFIXES

log = logging.getLogger(__name__)

RETRY_S = 1.0


def _is_policy(change: Change, path: str) -> bool:
    return Path(path).suffix in POLICY_SUFFIXES and not Path(path).name.startswith(".")


async def watch_policies(paths: list[Path], on_change: Callable[[], Awaitable[object]]) -> None:
    """Await ``on_change`` after each batch of edits (debounced; editors write in bursts)."""
    interrupted = False
    while True:
        watched = [p for p in paths if p.exists()]
        if not watched:
            if not interrupted:
                log.error("no policy path exists (%s); waiting for one", ", ".join(map(str, paths)))
            interrupted = True
            await asyncio.sleep(RETRY_S)
            continue
        if interrupted:
            log.info("watching %s again", ", ".join(map(str, watched)))
            await _call(on_change)
            interrupted = False
        # A watched directory that is removed (and perhaps made again) leaves the
        # inotify watch on the old inode, seeing nothing: notice, and start over.
        vanished = asyncio.Event()
        checker = asyncio.create_task(_until_vanished(watched, vanished))
        try:
            async for changes in awatch(*watched, watch_filter=_is_policy, debounce=50, step=20, stop_event=vanished):
                log.info("policy files changed: %s", ", ".join(sorted({p for _, p in changes})))
                await _call(on_change)
        except Exception:
            log.exception("watching the policy files failed; starting again")
        finally:
            checker.cancel()
        if vanished.is_set():
            log.warning("a policy path disappeared; watching again once it is back")
        interrupted = True
        await asyncio.sleep(RETRY_S)


async def _until_vanished(paths: list[Path], vanished: asyncio.Event) -> None:
    # Holding each path open keeps its inode alive, so a directory removed and made
    # again cannot come back with the same inode number and go unnoticed.
    handles = {p: os.open(p, os.O_RDONLY) for p in paths}
    try:
        while True:
            await asyncio.sleep(RETRY_S)
            try:
                same = all(p.stat().st_ino == os.fstat(fd).st_ino for p, fd in handles.items())
            except OSError:
                same = False
            if not same:
                vanished.set()
                return
    finally:
        for fd in handles.values():
            os.close(fd)


async def _call(on_change: Callable[[], Awaitable[object]]) -> None:
    try:
        await on_change()
    except Exception:  # the reload itself never raises; this guards the watch against a bug in it
        log.exception("reloading the policies failed; still watching")

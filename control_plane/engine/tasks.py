"""The control plane's long-running tasks, supervised: none may end unnoticed.

A background task that dies (an exception nobody caught, or a loop that
returns) is logged with its traceback at once, and ``/healthz`` answers 503
naming the task and the error, so a supervisor or an orchestrator restarts the
process instead of it silently ignoring every later policy edit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TaskFailure:
    task: str
    error: str
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "error": self.error, "at": self.at}


class BackgroundTasks:
    """Tasks that should run until ``stop``; one that ends earlier is a failure."""

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[Any], str] = {}
        self._stopping = False
        self.failures: list[TaskFailure] = []

    def start(self, name: str, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks[task] = name
        task.add_done_callback(self._ended)
        return task

    @property
    def healthy(self) -> bool:
        return not self.failures

    def _ended(self, task: asyncio.Task[Any]) -> None:
        name = self._tasks.pop(task, task.get_name())
        if self._stopping or task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            error = "stopped unexpectedly (returned)"
            log.error("background task %r %s; the process is unhealthy", name, error)
        else:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.error("background task %r died; the process is unhealthy", name, exc_info=exc)
        self.failures.append(TaskFailure(name, error, time.time()))

    def shutting_down(self) -> None:
        """From now on a task that ends is expected to (the process is stopping)."""
        self._stopping = True

    async def stop(self) -> None:
        """Cancel every task and wait for them to finish."""
        self.shutting_down()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

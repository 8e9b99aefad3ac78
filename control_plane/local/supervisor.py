"""Child processes of `switchyard up`: start, watch, restart on crash, stop in order."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Run in the child before exec: if `up` itself dies, the kernel sends SIGTERM.

    Children run in their own session so that Ctrl-C reaches only `up`, which
    then stops them in order (Envoy first, then replicas drain, then the
    control plane). This keeps that from leaving orphans if `up` is killed.
    """
    with contextlib.suppress(AttributeError, OSError):  # not Linux: nothing to set
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Managed:
    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    restart: bool = True
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_restart_at: float = 0.0
    stopping: bool = False

    def start(self) -> None:
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def terminate(self) -> None:
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0fs; killing it", self.name, timeout)
            self.proc.kill()
            self.proc.wait()


class Supervisor:
    """Restarts crashed children with backoff; ``on_event`` hears about each crash."""

    def __init__(self, log_dir: Path, on_event: Callable[[str], None]) -> None:
        self.log_dir = log_dir
        self.on_event = on_event
        self.children: list[Managed] = []

    def add(self, name: str, args: list[str], *, env: dict[str, str] | None = None) -> Managed:
        child = Managed(name, args, self.log_dir / f"{name}.log", env or {})
        self.children.append(child)
        child.start()
        return child

    def check(self) -> None:
        """Call regularly: report and restart children that died on their own."""
        now = time.monotonic()
        for child in self.children:
            code = child.exited()
            if code is None or child.stopping or not child.restart:
                continue
            if child.next_restart_at == 0.0:
                delay = min(0.5 * 2**child.restarts, 10.0)
                child.next_restart_at = now + delay
                self.on_event(
                    f"{child.name} exited with code {code}; restarting in {delay:.1f}s (log: {child.log_path})"
                )
            elif now >= child.next_restart_at:
                child.restarts += 1
                child.next_restart_at = 0.0
                child.start()
                self.on_event(f"{child.name} restarted (pid {child.pid})")

    def stop(self, groups: list[list[Managed]], timeout: float = 30.0) -> None:
        """Stop group by group; each group's members drain in parallel."""
        for group in groups:
            for child in group:
                child.terminate()
            for child in group:
                child.wait(timeout)

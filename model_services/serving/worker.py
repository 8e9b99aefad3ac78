"""Run the model in a child process, behind the same Handler interface.

Why: a PyTorch forward pass is hundreds of short kernels, and between two of
them the calling thread needs the GIL back. In a thread of the HTTP process it
competes with the event loop, which holds the GIL while it parses requests, and
each hand-back can wait a whole switch interval. Under load the model then
runs several times slower than it does alone (measured: see README). A child
process has its own GIL: the HTTP process only sends texts down a pipe and gets
probabilities back, one GIL hand-off per batch instead of hundreds.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import multiprocessing.connection
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from model_services.serving.handler import LoadedModel, Probabilities, load_model
from model_services.store.manifest import read_manifest


class WorkerError(RuntimeError):
    """The model worker failed or died; the message says how."""


# Signals a terminal (Ctrl-C), systemd's default KillMode and dumb-init send to
# the whole process group. The worker must outlive them: its server drains
# in-flight requests through it first, then stops it (None on the pipe).
_DRAIN_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _child_main(
    conn: multiprocessing.connection.Connection,
    model_dir: str,
    device: str,
    num_threads: int | None,
) -> None:
    # First, before torch does any work: the signals were blocked since the
    # spawn (see ProcessHandler), so one that reached the group meanwhile is
    # pending and is discarded here instead of killing the child.
    for sig in _DRAIN_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _DRAIN_SIGNALS)
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        loaded = load_model(Path(model_dir), torch.device(device))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("loaded", loaded.load_seconds, list(loaded.handler.labels)))
    handler = loaded.handler
    while True:
        try:
            texts = conn.recv()
        except EOFError:  # parent gone
            return
        if texts is None:
            return
        try:
            reply: tuple[Any, ...] = ("ok", handler.predict(texts))
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except OSError:  # parent gone mid-batch
            return


class ProcessHandler:
    """A Handler whose predict() runs in a dedicated child process.

    Not thread-safe: the service calls it from its one inference thread.
    """

    def __init__(self, model_dir: Path, device: torch.device, num_threads: int | None) -> None:
        # spawn, not fork: forking a process that already started threads
        # (tokenizers, OpenMP) can deadlock the child.
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child_main,
            args=(child, str(model_dir), str(device), num_threads),
            name="model-worker",
            daemon=True,
        )
        # Blocked in this thread while it spawns: the child inherits the mask,
        # so a group signal during its start-up (importing torch takes a
        # while) waits until _child_main ignores it. CPython's resource
        # tracker starts the same way (bpo-33613).
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _DRAIN_SIGNALS)
        try:
            self._proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        child.close()
        # The child ignores SIGTERM, so multiprocessing's own exit hook (which
        # terminates daemonic children, then joins them) would wait forever if
        # the server exited without close(). Registered after that hook, this
        # runs first.
        atexit.register(self.close)
        reply = self._receive()
        if reply[0] == "error":
            self.close()
            raise WorkerError(str(reply[1]))
        self.load_seconds = float(reply[1])
        self._labels = tuple(str(x) for x in reply[2])

    @property
    def labels(self) -> Sequence[str]:
        return self._labels

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()

    def _receive(self) -> tuple[Any, ...]:
        try:
            reply: tuple[Any, ...] = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerError(f"model worker exited (code {self._proc.exitcode})") from exc
        return reply

    def predict(self, texts: Sequence[str]) -> Probabilities:
        try:
            self._conn.send(list(texts))
        except OSError as exc:
            raise WorkerError(f"model worker exited (code {self._proc.exitcode})") from exc
        kind, payload = self._receive()
        if kind == "error":
            raise WorkerError(str(payload))
        result: Probabilities = payload
        return result

    def close(self) -> None:
        atexit.unregister(self.close)
        if self._proc.is_alive() and not self._conn.closed:
            with contextlib.suppress(OSError):
                self._conn.send(None)
            self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()  # it ignores SIGTERM (see _child_main)
            self._proc.join(timeout=5)
        self._conn.close()


def process_loader(num_threads: int | None) -> Callable[[Path, torch.device], LoadedModel]:
    """A service loader that puts the model in a worker process."""

    def load(model_dir: Path, device: torch.device) -> LoadedModel:
        handler = ProcessHandler(model_dir, device, num_threads)
        manifest = read_manifest(model_dir, verify=False)  # the child verified it
        return LoadedModel(manifest, handler, device, handler.load_seconds)

    return load

"""In-process service fixtures: a real ModelService and FastAPI app around a
fake handler, driven through httpx's ASGI transport (no sockets)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from model_services.api.app import create_app
from model_services.config import ServeConfig
from model_services.serving.handler import LoadedModel, Probabilities
from model_services.serving.service import ModelService
from model_services.store.manifest import Manifest, hash_files, write_manifest

LABELS = ("negative", "positive")


class FakeHandler:
    """Scores by the share of letters in "good"; a gate can hold every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    @property
    def labels(self) -> Sequence[str]:
        return LABELS

    def predict(self, texts: Sequence[str]) -> Probabilities:
        self.entered.set()
        assert self.gate.wait(20), "test forgot to open the gate"
        self.calls.append(list(texts))
        pos = [0.9 if "good" in t else 0.2 for t in texts]
        return np.array([[1 - p, p] for p in pos], dtype=np.float32)


def write_fake_version(root: Path, version: str = "fake-v1") -> Path:
    directory = root / "fake" / version
    directory.mkdir(parents=True)
    (directory / "weights.bin").write_bytes(b"weights")
    (directory / "tokenizer.json").write_text("{}")
    manifest = Manifest(
        name="fake",
        version=version,
        architecture="custom",
        handler="tests:unused",
        labels=list(LABELS),
        files=hash_files(directory, ["weights.bin", "tokenizer.json"]),
        module="weights.bin",
        tokenizer="tokenizer.json",
    )
    write_manifest(directory, manifest)
    return directory


@dataclass
class Harness:
    service: ModelService
    handler: FakeHandler
    client: httpx.AsyncClient
    load_gate: threading.Event


@pytest.fixture
def make_harness(tmp_path: Path) -> Callable[..., object]:
    """Returns an async context manager factory: ``async with make_harness(**cfg)``."""
    from contextlib import asynccontextmanager

    made = [0]

    @asynccontextmanager
    async def factory(
        *, wait_ready: bool = True, hold_load: bool = False, **overrides: object
    ) -> AsyncIterator[Harness]:
        made[0] += 1
        model_dir = write_fake_version(tmp_path / f"store{made[0]}")
        # The pytest process's heap is not the service's to freeze (test_ms_heap.py turns it on).
        overrides.setdefault("gc_freeze", False)
        config = ServeConfig(model_dir=model_dir, device="cpu", worker="thread", **overrides)  # type: ignore[arg-type]
        handler = FakeHandler()
        load_gate = threading.Event()
        if not hold_load:
            load_gate.set()

        def loader(path: Path, device: torch.device) -> LoadedModel:
            from model_services.store.manifest import read_manifest

            assert load_gate.wait(20), "test forgot to release the load"
            return LoadedModel(read_manifest(path), handler, device, 0.01)

        service = ModelService(config, loader=loader)
        app = create_app(service)
        await service.start()
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://model")
        try:
            if wait_ready:
                await service.wait_started()
            yield Harness(service, handler, client, load_gate)
        finally:
            load_gate.set()
            handler.gate.set()
            await client.aclose()
            await service.wait_started()
            await service.stop()

    return factory

"""Fixtures of the job-queue tests (helpers.py has the classes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.jobs.helpers import RedisServer, Services


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    made = Services(tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="session")
def v3_dir(model_store: Path) -> Path:
    return model_store / "sentiment" / "sentiment-v3"

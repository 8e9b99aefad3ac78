from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import Stack


@pytest.fixture(scope="module", params=["sotw", "delta"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One real stack per ADS mode, shared by a module's tests (each test applies its own policy)."""
    workdir: Path = tmp_path_factory.mktemp(f"stack-{request.param}")
    stack = Stack(workdir, delta=request.param == "delta")
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def fresh_stack(tmp_path: Path) -> Iterator[Stack]:
    """A state-of-the-world stack for one test alone."""
    stack = Stack(tmp_path, delta=False)
    try:
        yield stack
    finally:
        stack.close()

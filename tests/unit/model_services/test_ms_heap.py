"""The startup heap is frozen out of the garbage collector's reach once the model is warm."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from model_services.serving.heap import freeze_heap

pytestmark = pytest.mark.timeout(60)

Make = Callable[..., Any]


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Give the test process its heap back whatever the test did."""
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()


def test_garbage_is_collected_before_the_freeze_and_survivors_are_frozen(unfrozen: None) -> None:
    garbage = weakref.ref(Node())  # unreachable already, but alive until a collection
    kept = Node()
    assert garbage() is not None
    frozen = freeze_heap()
    assert garbage() is None, "garbage frozen instead of collected: it would never be freed"
    assert frozen == gc.get_freeze_count() > 0
    # Frozen objects are out of every generation a collection walks.
    assert not any(obj is kept for obj in gc.get_objects(generation=2))


@pytest.mark.parametrize("gc_freeze", [True, False])
async def test_the_service_freezes_once_warm_unless_told_not_to(
    make_harness: Make, unfrozen: None, gc_freeze: bool
) -> None:
    async with make_harness(gc_freeze=gc_freeze) as h:
        assert h.service.state.value == "ready"
        assert (gc.get_freeze_count() > 0) is gc_freeze

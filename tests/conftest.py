from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example model store, trained once per test session (~15 s on 2 cores)."""
    from model_services.store.train import build_store

    store = tmp_path_factory.mktemp("model-store")
    build_store(store)
    return store

"""`build --if-missing` trains only what the store lacks or what fails its hash check."""

from __future__ import annotations

from pathlib import Path

from model_services.store.manifest import read_manifest
from model_services.store.train import build_store


def test_if_missing_skips_verified_versions_and_rebuilds_broken_ones(tmp_path: Path) -> None:
    first = build_store(tmp_path, only=["sentiment-v3"])
    assert [r.version for r in first] == ["sentiment-v3"]
    directory = first[0].directory
    assert build_store(tmp_path, only=["sentiment-v3"], if_missing=True) == []

    manifest = read_manifest(directory, verify=False)
    weights = directory / next(iter(manifest.files))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")  # a corrupted file fails the hash check
    again = build_store(tmp_path, only=["sentiment-v3"], if_missing=True)
    assert [r.version for r in again] == ["sentiment-v3"]
    read_manifest(directory, verify=True)  # whole again

"""The manifest guards a version directory: hashes, fields, paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_services.store.manifest import (
    MANIFEST_FILE,
    Manifest,
    ManifestError,
    hash_files,
    read_manifest,
    write_manifest,
)


def make_version(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "w.bin").write_bytes(b"weights")
    (directory / "tok.json").write_text("{}")
    write_manifest(
        directory,
        Manifest(
            name="m",
            version="m-v1",
            architecture="embedding-bag",
            labels=["a", "b"],
            files=hash_files(directory, ["w.bin", "tok.json"]),
            module="w.bin",
            tokenizer="tok.json",
        ),
    )
    return directory


def test_round_trip(tmp_path: Path) -> None:
    d = make_version(tmp_path / "m" / "m-v1")
    m = read_manifest(d)
    assert (m.name, m.version, m.labels) == ("m", "m-v1", ["a", "b"])
    assert m.files["w.bin"].startswith("sha256:")


def test_tampered_file_is_refused(tmp_path: Path) -> None:
    d = make_version(tmp_path / "v")
    (d / "w.bin").write_bytes(b"weightz")
    with pytest.raises(ManifestError, match=r"hash mismatch for 'w\.bin'"):
        read_manifest(d)
    read_manifest(d, verify=False)  # name/version are still readable


def test_missing_file_is_refused(tmp_path: Path) -> None:
    d = make_version(tmp_path / "v")
    (d / "tok.json").unlink()
    with pytest.raises(ManifestError, match=r"'tok\.json' is missing"):
        read_manifest(d)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no manifest"):
        read_manifest(tmp_path)


def _edit(d: Path, **changes: object) -> None:
    data = json.loads((d / MANIFEST_FILE).read_text())
    data.update(changes)
    (d / MANIFEST_FILE).write_text(json.dumps(data))


def test_unknown_field_is_an_error(tmp_path: Path) -> None:
    d = make_version(tmp_path / "v")
    _edit(d, lables=["x"])
    with pytest.raises(ManifestError, match="lables"):
        read_manifest(d)


def test_used_file_must_be_listed(tmp_path: Path) -> None:
    d = make_version(tmp_path / "v")
    _edit(d, module="other.bin")
    with pytest.raises(ManifestError, match="not listed"):
        read_manifest(d)


def test_paths_stay_inside(tmp_path: Path) -> None:
    d = make_version(tmp_path / "v")
    _edit(d, files={"../w.bin": "sha256:0", "tok.json": "sha256:0", "w.bin": "sha256:0"})
    with pytest.raises(ManifestError, match="inside the version dir"):
        read_manifest(d)

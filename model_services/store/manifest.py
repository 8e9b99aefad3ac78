"""Model store layout and the manifest that makes a version directory trustworthy.

Layout: ``<store>/<name>/<version>/manifest.json`` next to the files it lists.
Every listed file carries a sha256; loading refuses a directory whose files are
missing or differ, so a half-copied or tampered version never serves traffic.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1

Architecture = Literal["embedding-bag", "minilm", "torchscript", "torch-export", "custom"]


class ManifestError(Exception):
    """The version directory cannot be served; the message says why."""


class Manifest(BaseModel):
    # Unknown keys are an error: a misspelt field must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SCHEMA_VERSION
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    architecture: Architecture
    labels: list[str] = Field(min_length=2)
    # Relative file name -> "sha256:<hex>". Everything the loader reads is listed.
    files: dict[str, str]
    # The file holding the weights or the whole module (TorchScript / torch.export).
    module: str
    # A Hugging Face `tokenizers` JSON file turning text into input_ids.
    tokenizer: str
    max_length: int = Field(default=128, ge=1, le=4096)
    # Architecture hyper-parameters (embedding-bag, minilm).
    config: dict[str, Any] = Field(default_factory=dict)
    # "package.module:factory" for architecture "custom" (see handler.py).
    handler: str | None = None
    # Provenance: dataset hash, seed, held-out accuracy... informational only.
    training: dict[str, Any] = Field(default_factory=dict)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def hash_files(directory: Path, names: list[str]) -> dict[str, str]:
    return {name: sha256_file(directory / name) for name in sorted(names)}


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    path = directory / MANIFEST_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest.model_dump(), indent=2, sort_keys=True) + "\n")
    # Written last and renamed into place: a reader never sees a manifest for
    # files that are not all there yet.
    tmp.replace(path)
    return path


def read_manifest(directory: Path, *, verify: bool = True) -> Manifest:
    """Parse the manifest and (by default) check every file hash."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{path}: no manifest; is {directory} a <store>/<name>/<version> dir?")
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise ManifestError(f"{path}: invalid manifest: {exc}") from exc
    for needed in (manifest.module, manifest.tokenizer):
        if needed not in manifest.files:
            raise ManifestError(f"{path}: {needed!r} is used but not listed under 'files'")
    if manifest.architecture == "custom" and not manifest.handler:
        raise ManifestError(f"{path}: architecture 'custom' needs 'handler: module:factory'")
    if verify:
        for name, expected in manifest.files.items():
            file = directory / name
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ManifestError(f"{path}: file {name!r} must stay inside the version dir")
            if not file.is_file():
                raise ManifestError(f"{path}: listed file {name!r} is missing")
            actual = sha256_file(file)
            if actual != expected:
                raise ManifestError(f"{path}: hash mismatch for {name!r}: manifest {expected}, file {actual}")
    return manifest


def version_dir(store: Path, name: str, version: str) -> Path:
    return store / name / version

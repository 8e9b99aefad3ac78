"""Turn a user's TorchScript / torch.export file, tokenizer and labels into a
model store version directory (manifest with hashes), ready to serve."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from model_services.store.manifest import Manifest, hash_files, version_dir, write_manifest

ModuleFormat = Literal["torchscript", "torch-export"]


def package_model(
    *,
    store: Path,
    name: str,
    version: str,
    module_file: Path,
    module_format: ModuleFormat,
    tokenizer_file: Path,
    labels: Sequence[str],
    max_length: int = 128,
) -> Path:
    """Copy the files into ``store/name/version/`` and write the manifest last."""
    if len(labels) < 2:
        raise ValueError("a classifier needs at least two labels")
    out = version_dir(store, name, version)
    out.mkdir(parents=True, exist_ok=True)
    module_name = "model.pt2" if module_format == "torch-export" else "model.pt"
    shutil.copyfile(module_file, out / module_name)
    shutil.copyfile(tokenizer_file, out / "tokenizer.json")
    manifest = Manifest(
        name=name,
        version=version,
        architecture=module_format,
        labels=list(labels),
        files=hash_files(out, [module_name, "tokenizer.json"]),
        module=module_name,
        tokenizer="tokenizer.json",
        max_length=max_length,
    )
    write_manifest(out, manifest)
    return out

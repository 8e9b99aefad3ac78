"""The handler interface: what the service needs from a model, and the loaders
that build one from a verified version directory.

A handler turns a batch of texts into class probabilities. The service calls
``predict`` from its single inference thread, one batch at a time, so a handler
needs no locking of its own.

To serve your own model without touching the service, put in a directory:

* a TorchScript (``torch.jit.save``) or ``torch.export.save`` file whose module
  is called as ``module(input_ids, attention_mask)`` (int64, ``[batch, tokens]``)
  and returns logits ``[batch, num_labels]``;
* a ``tokenizers`` JSON file (any Hugging Face fast tokenizer);
* a manifest, written by ``python -m model_services package ...``.

Anything else (other inputs, other pre-processing) is a ``custom`` architecture:
the manifest names a ``module:factory`` importable in the serving environment,
called as ``factory(model_dir, manifest, device)`` and returning a ``Handler``.
"""

from __future__ import annotations

import importlib
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import torch
from tokenizers import Tokenizer

from model_services.store.manifest import Manifest, read_manifest
from model_services.store.models.bag import BagClassifier
from model_services.store.models.minilm import MiniLMClassifier

Probabilities = npt.NDArray[np.float32]


@runtime_checkable
class Handler(Protocol):
    """What the service needs from a model."""

    @property
    def labels(self) -> Sequence[str]:
        """Class names, in the order of the probability columns."""
        ...

    def predict(self, texts: Sequence[str]) -> Probabilities:
        """Probabilities, shape ``[len(texts), len(labels)]``; rows sum to 1."""
        ...


class TextClassifierHandler:
    """Tokenize -> ``module(input_ids, attention_mask)`` -> softmax.

    Shared by every built-in architecture. Rows are padded to the longest text in
    the batch and the models ignore padding, so a text's result does not depend
    on what it was batched with (up to float rounding).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        tokenizer: Tokenizer,
        labels: Sequence[str],
        device: torch.device,
        max_length: int,
    ) -> None:
        self._module = module
        self._labels = tuple(labels)
        self._device = device
        pad_id = tokenizer.token_to_id("[PAD]")
        tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        tokenizer.enable_truncation(max_length=max_length)
        self._tokenizer = tokenizer

    @property
    def labels(self) -> Sequence[str]:
        return self._labels

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.int64)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.int64)
        return ids, mask

    def predict(self, texts: Sequence[str]) -> Probabilities:
        ids, mask = self.encode(texts)
        with torch.inference_mode():
            logits = self._module(ids.to(self._device), mask.to(self._device))
            probs = torch.softmax(logits.to(torch.float32), dim=-1)
        out: Probabilities = probs.cpu().numpy()
        return out


@dataclass(frozen=True)
class LoadedModel:
    manifest: Manifest
    handler: Handler
    device: torch.device
    load_seconds: float


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device")
    if choice not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {choice!r}; use auto, cpu or cuda")
    return torch.device(choice)


def _build_module(model_dir: Path, manifest: Manifest, device: torch.device) -> torch.nn.Module:
    path = model_dir / manifest.module
    arch = manifest.architecture
    module: torch.nn.Module
    if arch in ("embedding-bag", "minilm"):
        from safetensors.torch import load_file

        builder: Any = BagClassifier if arch == "embedding-bag" else MiniLMClassifier
        module = builder.from_config(manifest.config)
        module.load_state_dict(load_file(str(path)), strict=True)
    elif arch == "torchscript":
        # torch 2.x deprecates TorchScript but still runs it; the warning is for
        # authors, not for an operator starting a server.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=device)  # type: ignore[no-untyped-call]
    elif arch == "torch-export":
        module = torch.export.load(str(path)).module()
    else:  # pragma: no cover - Manifest's Literal makes this unreachable
        raise ValueError(f"no module builder for architecture {arch!r}")
    module = module.to(device)
    # Exported programs reject .eval(); they are already in inference form.
    if arch != "torch-export":
        module.eval()
    return module


def load_model(model_dir: Path, device: torch.device) -> LoadedModel:
    """Verify the manifest's hashes, then build the handler for its architecture."""
    started = time.perf_counter()
    manifest = read_manifest(model_dir, verify=True)
    handler: Handler
    if manifest.architecture == "custom":
        assert manifest.handler is not None  # read_manifest checked it
        module_name, _, attr = manifest.handler.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        handler = factory(model_dir, manifest, device)
        if not isinstance(handler, Handler):
            raise TypeError(f"{manifest.handler} returned {type(handler)!r}, not a Handler")
    else:
        tokenizer = Tokenizer.from_file(str(model_dir / manifest.tokenizer))
        module = _build_module(model_dir, manifest, device)
        handler = TextClassifierHandler(module, tokenizer, manifest.labels, device, manifest.max_length)
    if list(handler.labels) != list(manifest.labels):
        raise ValueError(f"handler labels {list(handler.labels)} != manifest {manifest.labels}")
    return LoadedModel(manifest, handler, device, time.perf_counter() - started)

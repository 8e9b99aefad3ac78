"""The shipped dataset is exactly what the seeded generator writes."""

from __future__ import annotations

from collections import Counter

from model_services.store import dataset


def test_shipped_file_is_reproducible() -> None:
    assert dataset.DATASET_PATH.read_text(encoding="utf-8") == dataset.dumps(dataset.generate())


def test_balanced_unique_and_split_is_seeded() -> None:
    examples = dataset.load()
    assert len(examples) == dataset.DEFAULT_SIZE
    assert len({e.text for e in examples}) == len(examples)
    assert Counter(e.label for e in examples) == {"negative": 800, "positive": 800}
    train, heldout = dataset.split(examples, seed=0)
    assert (len(train), len(heldout)) == (1280, 320)
    assert dataset.split(examples, seed=0) == (train, heldout)
    assert not {e.text for e in train} & {e.text for e in heldout}

"""The labelled sentiment dataset the example versions are trained on.

The reviews are generated from templates with a fixed seed, so the file that
ships in ``model_services/data/sentiment.jsonl`` can be rebuilt byte for byte
(``python -m model_services.store.dataset``) and no download is ever needed. The
templates deliberately include negations and contrasts ("not bad at all",
"looks nice but broke in a week") that a bag of words cannot read, so the
two example versions genuinely disagree on some inputs.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LABELS: tuple[str, ...] = ("negative", "positive")
DATASET_PATH = Path(__file__).resolve().parents[1] / "data" / "sentiment.jsonl"
DEFAULT_SEED = 20240611
DEFAULT_SIZE = 1600

_PRODUCTS = (
    "headphones",
    "blender",
    "laptop",
    "jacket",
    "novel",
    "coffee maker",
    "phone case",
    "backpack",
    "vacuum",
    "keyboard",
    "monitor",
    "tent",
    "kettle",
    "printer",
    "router",
    "camera",
    "mattress",
    "desk chair",
    "water bottle",
    "toaster",
    "smart watch",
    "running shoes",
    "speaker",
    "drill",
    "frying pan",
)
_ASPECTS = (
    "battery life",
    "sound",
    "build quality",
    "customer service",
    "delivery",
    "price",
    "screen",
    "fit",
    "design",
    "setup",
    "instructions",
    "packaging",
    "performance",
    "material",
    "support team",
    "warranty process",
    "app",
    "noise level",
)
_POS_ADJ = (
    "great",
    "excellent",
    "fantastic",
    "wonderful",
    "superb",
    "reliable",
    "amazing",
    "solid",
    "impressive",
    "lovely",
    "perfect",
    "outstanding",
    "sturdy",
    "brilliant",
)
_NEG_ADJ = (
    "terrible",
    "awful",
    "horrible",
    "useless",
    "flimsy",
    "disappointing",
    "poor",
    "dreadful",
    "cheap",
    "broken",
    "annoying",
    "unreliable",
    "mediocre",
    "faulty",
)
_POS_VERB = (
    "love",
    "adore",
    "recommend",
    "enjoy",
    "appreciate",
    "would buy again",
)
_NEG_VERB = (
    "hate",
    "regret buying",
    "returned",
    "cannot stand",
    "want a refund for",
    "gave up on",
)
_POS_EVENT = (
    "works exactly as described",
    "exceeded my expectations",
    "arrived early",
    "still works perfectly after a year",
    "was worth every penny",
    "made my day easier",
    "feels premium",
    "was easy to set up",
)
_NEG_EVENT = (
    "stopped working after a week",
    "broke on the first day",
    "arrived damaged",
    "was a waste of money",
    "never turned on",
    "fell apart quickly",
    "overheats constantly",
    "was missing parts",
)
_INTENSIFIERS = ("", "", "really ", "very ", "truly ", "absolutely ", "quite ")


@dataclass(frozen=True)
class Example:
    text: str
    label: str


def _sentence(rng: random.Random, positive: bool) -> str:
    """One clause whose sentiment is `positive`, drawn from several templates."""
    product = rng.choice(_PRODUCTS)
    aspect = rng.choice(_ASPECTS)
    adj = rng.choice(_POS_ADJ if positive else _NEG_ADJ)
    other = rng.choice(_NEG_ADJ if positive else _POS_ADJ)
    intensity = rng.choice(_INTENSIFIERS)
    kind = rng.randrange(8)
    if kind == 0:
        return f"The {aspect} of this {product} is {intensity}{adj}"
    if kind == 1:
        return f"I {rng.choice(_POS_VERB if positive else _NEG_VERB)} this {product}"
    if kind == 2:
        return f"This {product} {rng.choice(_POS_EVENT if positive else _NEG_EVENT)}"
    if kind == 3:
        # Negating the opposite word: "not terrible" reads positive, "not great" negative.
        return f"The {aspect} is not {other} at all"
    if kind == 4:
        return f"{intensity.capitalize() or ''}{adj} {product}, {aspect} is {adj} too".strip()
    if kind == 5:
        lead = "Honestly" if positive else "Sadly"
        return f"{lead}, the {product} {rng.choice(_POS_EVENT if positive else _NEG_EVENT)}"
    if kind == 6:
        stars = rng.choice(("Five stars", "Four stars") if positive else ("One star", "Two stars"))
        return f"{stars}, the {aspect} is {adj}"
    verb = "would" if positive else "would never"
    return f"I {verb} recommend this {product} to a friend"


def _review(rng: random.Random, positive: bool) -> str:
    shape = rng.randrange(4)
    if shape == 0:
        # Contrast: the clause after "but" carries the verdict.
        return f"{_sentence(rng, not positive)} but {_sentence(rng, positive).lower()}."
    if shape == 1:
        return f"{_sentence(rng, positive)}. {_sentence(rng, positive)}."
    return f"{_sentence(rng, positive)}."


def generate(seed: int = DEFAULT_SEED, size: int = DEFAULT_SIZE) -> list[Example]:
    """Deterministic, balanced, de-duplicated reviews."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Example] = []
    attempts = 0
    while len(out) < size and attempts < size * 20:
        attempts += 1
        positive = len(out) % 2 == 0
        text = _review(rng, positive)
        if text in seen:
            continue
        seen.add(text)
        out.append(Example(text=text, label=LABELS[int(positive)]))
    return out


def dumps(examples: Sequence[Example]) -> str:
    return "".join(json.dumps({"text": e.text, "label": e.label}, ensure_ascii=False) + "\n" for e in examples)


def load(path: Path = DATASET_PATH) -> list[Example]:
    examples = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("label") not in LABELS or not isinstance(row.get("text"), str):
            raise ValueError(f"{path}:{lineno}: expected text and a label in {LABELS}")
        examples.append(Example(text=row["text"], label=row["label"]))
    return examples


def split(examples: Sequence[Example], seed: int, heldout_fraction: float = 0.2) -> tuple[list[Example], list[Example]]:
    """Seeded shuffle, then (train, held-out)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    cut = round(len(order) * (1.0 - heldout_fraction))
    return [examples[i] for i in order[:cut]], [examples[i] for i in order[cut:]]


if __name__ == "__main__":
    DATASET_PATH.parent.mkdir(parents=True, exist_ok=True)
    DATASET_PATH.write_text(dumps(generate()), encoding="utf-8")
    print(f"wrote {DATASET_PATH}")

"""sentiment-v3: a small, fast EmbeddingBag classifier over word ids."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class BagClassifier(nn.Module):
    """Mean of word embeddings, then a linear layer.

    The mean is a weighted *sum* bag with weight ``mask / length``: padding gets
    weight 0, so a padded row in a batch computes exactly what it computes alone.
    """

    def __init__(self, vocab_size: int, embed_dim: int, num_labels: int) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab_size, embed_dim, mode="sum")
        self.head = nn.Linear(embed_dim, num_labels)

    @staticmethod
    def config_keys() -> tuple[str, ...]:
        return ("vocab_size", "embed_dim", "num_labels")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BagClassifier:
        return cls(int(config["vocab_size"]), int(config["embed_dim"]), int(config["num_labels"]))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.to(torch.float32)
        weights = mask / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        pooled = self.bag(input_ids, per_sample_weights=weights)
        logits: torch.Tensor = self.head(pooled)
        return logits

"""sentiment-v4: all-MiniLM-L6-v2 encoder, mean pooling, a trained head.

The encoder is a plain-torch BERT that reads the Hugging Face weight names
directly, so serving needs neither ``transformers`` nor
``sentence-transformers`` (slow imports, network-minded defaults); only the
``tokenizers`` and ``safetensors`` packages.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Shape of all-MiniLM-L6-v2 (its config.json); kept in the manifest too.
MINILM_CONFIG: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
}


class _Embeddings(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        h = cfg["hidden_size"]
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], h, padding_idx=0)
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], h)
        self.token_type_embeddings = nn.Embedding(cfg["type_vocab_size"], h)
        self.LayerNorm = nn.LayerNorm(h, eps=cfg["layer_norm_eps"])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        # Single-segment input: token type 0 everywhere.
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)[None, :, :]
            + self.token_type_embeddings.weight[0]
        )
        out: torch.Tensor = self.LayerNorm(x)
        return out


class _SelfAttention(nn.Module):
    def __init__(self, h: int) -> None:
        super().__init__()
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)


class _AttentionOutput(nn.Module):
    def __init__(self, h: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(h, h)
        self.LayerNorm = nn.LayerNorm(h, eps=eps)


class _Attention(nn.Module):
    def __init__(self, h: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.self = _SelfAttention(h)
        self.output = _AttentionOutput(h, eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        d = h // self.heads

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, d).transpose(1, 2)

        q, k, v = split(self.self.query(x)), split(self.self.key(x)), split(self.self.value(x))
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0 / math.sqrt(d))
        ctx = ctx.transpose(1, 2).reshape(b, t, h)
        out: torch.Tensor = self.output.LayerNorm(self.output.dense(ctx) + x)
        return out


class _Intermediate(nn.Module):
    def __init__(self, h: int, inner: int) -> None:
        super().__init__()
        self.dense = nn.Linear(h, inner)


class _Output(nn.Module):
    def __init__(self, inner: int, h: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(inner, h)
        self.LayerNorm = nn.LayerNorm(h, eps=eps)


class _Layer(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        h, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.attention = _Attention(h, cfg["num_attention_heads"], eps)
        self.intermediate = _Intermediate(h, cfg["intermediate_size"])
        self.output = _Output(cfg["intermediate_size"], h, eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        a = self.attention(x, bias)
        inner = F.gelu(self.intermediate.dense(a))
        out: torch.Tensor = self.output.LayerNorm(self.output.dense(inner) + a)
        return out


class _Encoder(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(cfg) for _ in range(cfg["num_hidden_layers"]))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, bias)
        return x


class MiniLMEncoder(nn.Module):
    """BERT encoder + masked mean pooling + L2 normalisation, as sentence-transformers
    runs all-MiniLM-L6-v2. Parameter names match the Hugging Face checkpoint."""

    def __init__(self, cfg: dict[str, Any] | None = None) -> None:
        super().__init__()
        cfg = dict(MINILM_CONFIG if cfg is None else cfg)
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Encoder(cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids)
        keep = attention_mask.to(torch.bool)[:, None, None, :]
        # Additive bias rather than a bool mask: a large negative number keeps
        # fully padded rows finite where -inf would give NaN.
        bias = torch.zeros(keep.shape, dtype=x.dtype, device=x.device).masked_fill(~keep, torch.finfo(x.dtype).min)
        x = self.encoder(x, bias)
        mask = attention_mask.to(x.dtype)[:, :, None]
        pooled = (x * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2.0, dim=1)

    def load_hf_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a Hugging Face BertModel checkpoint, ignoring the unused pooler."""
        wanted = {k: v for k, v in state.items() if not k.startswith("pooler.")}
        wanted.pop("embeddings.position_ids", None)
        self.load_state_dict(wanted, strict=True)


class MiniLMClassifier(nn.Module):
    """The served sentiment-v4 module: frozen encoder + a small trained head."""

    def __init__(self, num_labels: int, head_hidden: int, cfg: dict[str, Any] | None = None):
        super().__init__()
        self.encoder = MiniLMEncoder(cfg)
        hidden = int((cfg or MINILM_CONFIG)["hidden_size"])
        self.head = make_head(hidden, head_hidden, num_labels)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MiniLMClassifier:
        encoder_cfg = {k: config[k] for k in MINILM_CONFIG}
        return cls(int(config["num_labels"]), int(config["head_hidden"]), encoder_cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.encoder(input_ids, attention_mask))
        return logits


def make_head(hidden: int, head_hidden: int, num_labels: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, head_hidden), nn.ReLU(), nn.Linear(head_hidden, num_labels))

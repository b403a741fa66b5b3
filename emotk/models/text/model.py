"""The text sentiment classifier of ``emotk pretrain text`` (METHODS.md §2).

A Hugging Face text encoder (RoBERTa-large in the thesis) whose last hidden states are mean-pooled over the
real tokens (padding masked out, :func:`emotk.nn.pooling.masked_mean`) -> dropout -> one linear layer to the
pseudo-classes. Only the encoder is kept as the emotion-aware text model; the head is exported beside it for
inspection and prediction.
"""

from __future__ import annotations

import torch
from torch import nn

from emotk.nn.pooling import masked_mean


class TextSentimentModel(nn.Module):
    """encoder + masked pooling + linear head.

    Args:
        encoder: an HF ``PreTrainedModel`` returning ``last_hidden_state`` (B, T, D).
        num_classes: C. dropout: before the head. pooling: ``mean`` (masked mean, thesis) or ``cls`` (first token).
    """

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.1, pooling: str = "mean"):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be mean or cls, got {pooling!r}")
        self.encoder = encoder
        self.pooling = pooling
        self.dim = int(encoder.config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.dim, num_classes)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) + mask (B, T) -> pooled sentence embeddings (B, D)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        return masked_mean(hidden, attention_mask.bool())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """-> logits (B, C)."""
        return self.head(self.dropout(self.embed(input_ids, attention_mask)))

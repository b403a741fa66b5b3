"""Pooling over time with padding masks: masked mean, mean + std statistics and attentive statistics pooling.

Padding never enters a statistic: every function takes ``lengths`` (B,) or a bool ``mask`` (B, T, True =
valid) and changing padded values never changes the output. An item with no valid frame pools to zeros.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emotk.core.suggest import did_you_mean
from emotk.errors import ConfigError
from emotk.nn.masks import as_mask

_VAR_EPS = 1e-6


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames: x (B, T, D), mask (B, T) bool or 0/1 (an HF ``attention_mask``) -> (B, D) in
    x's dtype (zeros for an empty item)."""
    if mask.dtype != torch.bool:
        mask = mask != 0
    w = mask.to(x.dtype).unsqueeze(-1)
    total = (x.masked_fill(~mask.unsqueeze(-1), 0) * w).sum(dim=1)
    return total / w.sum(dim=1).clamp(min=1.0)


def weighted_mean_std(x: torch.Tensor, weights: torch.Tensor,
                      eps: float = _VAR_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and standard deviation over time.

    x: (B, T, D); weights: (B, T) or (B, T, D), non-negative, summing to 1 over T (0 on padding).
    Returns (mean, std), each (B, D); std = sqrt(max(E[x^2] - mean^2, eps)).
    """
    if weights.ndim == 2:
        weights = weights.unsqueeze(-1)
    safe = x.masked_fill(weights == 0, 0)  # padded values (even inf/nan) never reach the sums
    mean = (weights * safe).sum(dim=1)
    var = (weights * safe * safe).sum(dim=1) - mean * mean
    return mean, var.clamp(min=eps).sqrt()


class MeanPooling(nn.Module):
    """Masked mean over time: (B, T, D) + lengths/mask -> (B, D). ``out_dim = dim``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = int(dim)
        self.out_dim = self.dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        return masked_mean(x, as_mask(x, lengths, mask))


class MeanStdPooling(nn.Module):
    """Masked mean and standard deviation over time (statistics pooling without attention): (B, T, D) +
    lengths/mask -> (B, 2 D) = [mean ; std], std = sqrt(max(E[x^2] - mean^2, 1e-6)); ``out_dim = 2 * dim``.
    An item with no valid frame pools to zeros."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = int(dim)
        self.out_dim = 2 * self.dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = as_mask(x, lengths, mask)
        weights = mask.to(x.dtype)
        weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
        mean, std = weighted_mean_std(x, weights)
        empty = ~mask.any(dim=1, keepdim=True)
        return torch.cat([mean, std], dim=-1).masked_fill(empty, 0)


class AttentiveStatisticsPooling(nn.Module):
    """Attentive statistics pooling: attention-weighted mean and standard deviation over time.

    Scores e_t = v^T tanh(W x_t + b) (one score per frame, or one per channel with ``channel_wise``), a softmax
    over the valid frames only gives the weights a_t, and the output is [sum_t a_t x_t ; sqrt(sum_t a_t x_t^2 -
    mean^2)]. (B, T, D) + lengths/mask -> (B, 2 D); ``out_dim = 2 * dim``.

    dim: D; hidden: width of W; channel_wise: per-channel attention (as in ECAPA-TDNN) instead of per-frame.
    """

    def __init__(self, dim: int, hidden: int = 128, channel_wise: bool = False) -> None:
        super().__init__()
        self.dim = int(dim)
        self.out_dim = 2 * self.dim
        self.attention = nn.Sequential(
            nn.Linear(self.dim, int(hidden)), nn.Tanh(), nn.Linear(int(hidden), self.dim if channel_wise else 1)
        )

    def attention_weights(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Softmax weights over valid frames: x (B, T, D), mask (B, T) -> (B, T, 1 or D), 0 on padding."""
        scores = self.attention(x.masked_fill(~mask.unsqueeze(-1), 0))
        valid = mask.unsqueeze(-1)
        # a finite floor instead of -inf: an item with no valid frame gets zero weights, never NaN gradients
        scores = scores.masked_fill(~valid, torch.finfo(scores.dtype).min)
        return torch.softmax(scores, dim=1) * valid.to(scores.dtype)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = as_mask(x, lengths, mask)
        weights = self.attention_weights(x, mask)
        mean, std = weighted_mean_std(x, weights)
        empty = ~mask.any(dim=1, keepdim=True)
        return torch.cat([mean, std], dim=-1).masked_fill(empty, 0)


POOLINGS: dict[str, type[nn.Module]] = {
    "mean": MeanPooling,
    "mean_std": MeanStdPooling,
    "attentive_stats": AttentiveStatisticsPooling,
}


def build_pooling(name: str, dim: int, **options: Any) -> nn.Module:
    """A pooling module by name (``mean`` | ``mean_std`` | ``attentive_stats``) over D = ``dim`` features; it
    has ``out_dim``."""
    if name not in POOLINGS:
        raise ConfigError(f"unknown pooling '{name}'{did_you_mean(name, POOLINGS)}; "
                          f"choose one of {', '.join(sorted(POOLINGS))}")
    return POOLINGS[name](dim, **options)

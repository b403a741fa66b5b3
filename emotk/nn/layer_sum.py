"""Learnable softmax-weighted sum of the L hidden layers of an upstream (SUPERB / s3prl convention).

Weights start equal (zero logits) and the combination is convex: w = softmax(logits), out = sum_l w_l h_l.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from emotk.errors import UsageError


class WeightedLayerSum(nn.Module):
    """(B, L, T, D) hidden states (or a list of L tensors (B, T, D)) -> (B, T, D).

    num_layers: L (checked on every call). layer_norm: normalise each layer over D (no affine) before the sum,
    as s3prl's featurizer optionally does. With L == 1 the weight is fixed at 1 (no parameter is trained).
    """

    def __init__(self, num_layers: int, layer_norm: bool = False) -> None:
        super().__init__()
        if int(num_layers) < 1:
            raise UsageError(f"WeightedLayerSum needs at least one layer, got {num_layers}")
        self.num_layers = int(num_layers)
        self.layer_norm = bool(layer_norm)
        self.logits = nn.Parameter(torch.zeros(self.num_layers), requires_grad=self.num_layers > 1)

    @property
    def weights(self) -> torch.Tensor:
        """(L,) the convex layer weights (softmax of the logits)."""
        return torch.softmax(self.logits, dim=0)

    def forward(self, hidden: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        if not isinstance(hidden, torch.Tensor):
            hidden = torch.stack(list(hidden), dim=1)
        if hidden.ndim != 4 or hidden.shape[1] != self.num_layers:
            raise UsageError(f"expected hidden states (B, {self.num_layers}, T, D), got {tuple(hidden.shape)}")
        if self.layer_norm:
            hidden = nn.functional.layer_norm(hidden, hidden.shape[-1:])
        w = self.weights.to(hidden.dtype)
        return torch.einsum("bltd,l->btd", hidden, w)

"""The SUPERB downstream for speech emotion recognition (METHODS.md §1, "Downstream").

A frozen upstream gives L hidden layers (B, L, T, D) with valid frame counts; the downstream takes a convex
combination of the layers with learnable softmax weights (:class:`emotk.nn.layer_sum.WeightedLayerSum`), pools
over the valid frames (masked mean by default, attentive statistics optionally) and maps the utterance vector
with a 2-layer MLP (ReLU, hidden 256) to class logits or, for VAD regression, to 3 values (valence, arousal,
dominance) trained with the CCC objective. ``compat="reference"`` drops the head's non-linearity, as the CARE
reference code does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from emotk.errors import UsageError
from emotk.nn.heads import MLPHead
from emotk.nn.layer_sum import WeightedLayerSum
from emotk.nn.pooling import build_pooling


@dataclass
class SuperbDims:
    """What the downstream is built for (probed from the cached features, never hand-written)."""

    num_layers: int  # L
    dim: int  # D
    num_outputs: int  # classes, or regression targets


class SuperbDownstream(nn.Module):
    """(hidden (B, L, T, D), lengths (B,)) -> (B, num_outputs) logits or regression values.

    dims: L, D and the output count; head_hidden: MLP width (256); dropout: after the hidden layer;
    pooling: ``mean`` | ``attentive_stats``; layer_norm: normalise each layer before the weighted sum;
    compat: ``thesis`` | ``reference`` (head without ReLU); feature_norm: standardise the input per layer and
    dim with training-set statistics (buffers ``feature_mean``/``feature_std``, (L, D), saved with the weights).
    """

    def __init__(self, dims: SuperbDims, head_hidden: int = 256, dropout: float = 0.0, pooling: str = "mean",
                 layer_norm: bool = False, compat: str = "thesis", feature_norm: bool = False) -> None:
        super().__init__()
        self.dims = dims
        self.feature_norm = bool(feature_norm)
        if self.feature_norm:  # training-set statistics, set by the task (set_feature_stats); saved with the weights
            self.register_buffer("feature_mean", torch.zeros(dims.num_layers, dims.dim))
            self.register_buffer("feature_std", torch.ones(dims.num_layers, dims.dim))
        self.layer_sum = WeightedLayerSum(dims.num_layers, layer_norm=layer_norm)
        self.pooling = build_pooling(pooling, dims.dim)
        self.head = MLPHead(self.pooling.out_dim, dims.num_outputs, hidden=head_hidden, dropout=dropout,
                            compat=compat)

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if hidden.ndim != 4:
            raise UsageError(f"expected hidden states (B, L, T, D), got shape {tuple(hidden.shape)}")
        if hidden.shape[1] != self.dims.num_layers or hidden.shape[3] != self.dims.dim:
            raise UsageError(f"features have {hidden.shape[1]} layers x {hidden.shape[3]} dims but the model was "
                             f"built for {self.dims.num_layers} x {self.dims.dim} (same upstream and layers?)")
        hidden = hidden.to(self.layer_sum.logits.dtype)  # fp16-cached features -> the model's dtype
        if self.feature_norm:  # padded frames change too, but the pooling never reads them
            hidden = (hidden - self.feature_mean[None, :, None, :]) / self.feature_std[None, :, None, :]
        x = self.layer_sum(hidden)
        return self.head(self.pooling(x, lengths=lengths.to(x.device)))

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-layer, per-dim feature statistics (L, D) used when built with ``feature_norm``."""
        if not self.feature_norm:
            raise UsageError("this model was built without feature_norm")
        self.feature_mean.copy_(mean.to(self.feature_mean))
        self.feature_std.copy_(std.to(self.feature_std).clamp(min=1e-5))

    def layer_weights(self) -> list[float]:
        """The L convex layer weights (for reports: which upstream layers the task relies on)."""
        return [float(w) for w in self.layer_sum.weights.detach().cpu()]

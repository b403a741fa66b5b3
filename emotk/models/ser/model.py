"""The SUPERB downstream for speech emotion recognition (METHODS.md §1, "Downstream").

A frozen upstream gives L hidden layers (B, L, T, D) with valid frame counts; the downstream takes a convex
combination of the layers with learnable softmax weights (:class:`emotk.nn.layer_sum.WeightedLayerSum`), pools
over the valid frames (masked mean by default, attentive statistics optionally) and maps the utterance vector
with a 2-layer MLP (ReLU, hidden 256) to class logits or, for VAD regression, to 3 values (valence, arousal,
dominance) trained with the CCC objective. ``compat="reference"`` drops the head's non-linearity, as the CARE
reference code does.

emotk's strong recipe (configs/ser/*-strong.yaml; not the thesis's) adds, all as options of the same module:
``pooling="mean_std"`` (each layer pooled to its masked mean and standard deviation over time, (L, 2D), then the
layer-weighted sum of those statistics), ``head="linear"`` (one linear layer: a linear probe), ``input_dropout``
on the pooled vector, ``layers`` (which of the cached layers the head combines, e.g. ``[-1]``) and
``layer_combine="concat"`` (every layer's pooled statistics side by side instead of their learned weighted sum).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from emotk.errors import ConfigError, UsageError
from emotk.nn.heads import MLPHead
from emotk.nn.layer_sum import WeightedLayerSum
from emotk.nn.pooling import build_pooling

HEADS = ("mlp", "linear")
COMBINE = ("weighted_sum", "concat")


@dataclass
class SuperbDims:
    """What the downstream is built for (probed from the cached features, never hand-written)."""

    num_layers: int  # L
    dim: int  # D
    num_outputs: int  # classes, or regression targets


def layer_indices(layers: Any, num_layers: int) -> list[int] | None:
    """``"all"``/None -> None (every layer); a list of indices (negative from the end) -> sorted unique
    non-negative indices into ``num_layers`` cached layers; ConfigError naming ``model.layers`` otherwise."""
    if layers in (None, "all"):
        return None
    if not isinstance(layers, (list, tuple)) or not layers or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in layers):
        raise ConfigError(f"model.layers: expected \"all\" or a non-empty list of layer indices, got {layers!r}")
    bad = [i for i in layers if not -num_layers <= i < num_layers]
    if bad:
        raise ConfigError(f"model.layers: index {bad[0]} is out of range for the {num_layers} cached layer(s) "
                          f"(0..{num_layers - 1}, or negative from the end)")
    return sorted({i % num_layers for i in layers})


class SuperbDownstream(nn.Module):
    """(hidden (B, L, T, D), lengths (B,)) -> (B, num_outputs) logits or regression values.

    dims: L, D and the output count; head_hidden: MLP width (256); dropout: after the hidden layer;
    pooling: ``mean`` | ``mean_std`` (per layer, before the layer sum) | ``attentive_stats`` (after it);
    layer_norm: normalise each layer's frames before the weighted sum; compat: ``thesis`` | ``reference`` (head
    without ReLU); feature_norm: standardise the input per layer and dim with training-set statistics (buffers
    ``feature_mean``/``feature_std``, (L, D), saved with the weights); head: ``mlp`` | ``linear`` (one linear
    layer, ``head_hidden`` unused); input_dropout: dropout on the pooled vector; layers: indices of the L cached
    layers to combine (None = all).
    """

    def __init__(self, dims: SuperbDims, head_hidden: int = 256, dropout: float = 0.0, pooling: str = "mean",
                 layer_norm: bool = False, compat: str = "thesis", feature_norm: bool = False, head: str = "mlp",
                 input_dropout: float = 0.0, layers: Sequence[int] | None = None,
                 layer_combine: str = "weighted_sum") -> None:
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"model.head: {head!r} is not one of {', '.join(HEADS)}")
        if layer_combine not in COMBINE:
            raise ConfigError(f"model.layer_combine: {layer_combine!r} is not one of {', '.join(COMBINE)}")
        if layer_combine == "concat" and pooling == "attentive_stats":
            raise ConfigError("model.layer_combine=concat pools each layer on its own: use model.pooling mean or "
                              "mean_std (attentive_stats pools the weighted layer sum)")
        self.dims = dims
        self.feature_norm = bool(feature_norm)
        if self.feature_norm:  # training-set statistics, set by the task (set_feature_stats); saved with the weights
            self.register_buffer("feature_mean", torch.zeros(dims.num_layers, dims.dim))
            self.register_buffer("feature_std", torch.ones(dims.num_layers, dims.dim))
        self.layers = layer_indices(list(layers) if layers is not None else None, dims.num_layers)
        used = len(self.layers) if self.layers is not None else dims.num_layers
        # statistics per layer, then their weighted sum (or, concat, all layers' statistics side by side)
        self.concat = layer_combine == "concat"
        self.layerwise = pooling == "mean_std" or self.concat
        self.layer_norm = bool(layer_norm)
        self.layer_sum = WeightedLayerSum(used, layer_norm=layer_norm and not self.layerwise)
        self.pooling = build_pooling(pooling, dims.dim)
        in_dim = self.pooling.out_dim * (used if self.concat else 1)
        self.head = MLPHead(in_dim, dims.num_outputs, hidden=0 if head == "linear" else head_hidden,
                            dropout=dropout, compat=compat, input_dropout=input_dropout)

    @classmethod
    def from_config(cls, dims: SuperbDims, model: Any) -> "SuperbDownstream":
        """Build from a :class:`~emotk.models.ser.config.SerModel` or its dict (an export's ``model``; keys added
        after format 1 take their defaults)."""
        m = model if isinstance(model, Mapping) else vars(model)
        layers = m.get("layers", "all")
        return cls(dims, head_hidden=m["head_hidden"], dropout=m["dropout"], pooling=m["pooling"],
                   layer_norm=m["layer_norm"], compat=m["compat"], feature_norm=m.get("feature_norm", False),
                   head=m.get("head", "mlp"), input_dropout=m.get("input_dropout", 0.0),
                   layers=None if layers == "all" else layers, layer_combine=m.get("layer_combine", "weighted_sum"))

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if hidden.ndim != 4:
            raise UsageError(f"expected hidden states (B, L, T, D), got shape {tuple(hidden.shape)}")
        if hidden.shape[1] != self.dims.num_layers or hidden.shape[3] != self.dims.dim:
            raise UsageError(f"features have {hidden.shape[1]} layers x {hidden.shape[3]} dims but the model was "
                             f"built for {self.dims.num_layers} x {self.dims.dim} (same upstream and layers?)")
        hidden = hidden.to(self.layer_sum.logits.dtype)  # fp16-cached features -> the model's dtype
        if self.feature_norm:  # padded frames change too, but the pooling never reads them
            hidden = (hidden - self.feature_mean[None, :, None, :]) / self.feature_std[None, :, None, :]
        if self.layers is not None:
            hidden = hidden[:, self.layers]
        lengths = lengths.to(hidden.device)
        if self.layerwise:
            b, n, t, d = hidden.shape
            if self.layer_norm:
                hidden = nn.functional.layer_norm(hidden, hidden.shape[-1:])
            stats = self.pooling(hidden.reshape(b * n, t, d), lengths=lengths.repeat_interleave(n))
            x = stats.reshape(b, -1) if self.concat else self.layer_sum(stats.reshape(b, n, 1, -1))[:, 0]
        else:
            x = self.layer_sum(hidden)
            x = self.pooling(x, lengths=lengths)
        return self.head(x)

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-layer, per-dim feature statistics (L, D) used when built with ``feature_norm``."""
        if not self.feature_norm:
            raise UsageError("this model was built without feature_norm")
        self.feature_mean.copy_(mean.to(self.feature_mean))
        self.feature_std.copy_(std.to(self.feature_std).clamp(min=1e-5))

    def layer_weights(self) -> list[float]:
        """The convex weights of the combined layers (for reports: which upstream layers the task relies on)."""
        return [float(w) for w in self.layer_sum.weights.detach().cpu()]

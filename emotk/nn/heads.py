"""Prediction heads on pooled utterance vectors.

:class:`MLPHead` is the SUPERB downstream head of the thesis (METHODS.md §1): a 2-layer feed-forward
network with ReLU, hidden 256 by default. ``compat="reference"`` is the CARE reference code's head: the same
two linear layers without the non-linearity (so the head is linear overall).
"""

from __future__ import annotations

import torch
from torch import nn

from emotk.errors import ConfigError

COMPAT = ("thesis", "reference")


class MLPHead(nn.Module):
    """(B, in_dim) -> (B, out_dim): Linear(in, hidden) -> ReLU -> Dropout -> Linear(hidden, out).

    in_dim: input width; out_dim: classes (logits) or regression targets; hidden: 256 (thesis);
    dropout: applied after the hidden layer (and after the input with ``input_dropout``);
    compat: ``thesis`` (ReLU) or ``reference`` (no non-linearity, as in the CARE reference code).
    hidden = 0 gives a single linear layer.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, dropout: float = 0.0,
                 compat: str = "thesis", input_dropout: float = 0.0) -> None:
        super().__init__()
        if compat not in COMPAT:
            raise ConfigError(f"head compat {compat!r} is not one of {', '.join(map(repr, COMPAT))}")
        if in_dim < 1 or out_dim < 1 or hidden < 0:
            raise ConfigError(f"head sizes must be positive: in_dim={in_dim}, out_dim={out_dim}, hidden={hidden}")
        if not 0.0 <= dropout < 1.0 or not 0.0 <= input_dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout} / {input_dropout}")
        self.in_dim, self.out_dim, self.hidden, self.compat = int(in_dim), int(out_dim), int(hidden), compat
        layers: list[nn.Module] = [nn.Dropout(input_dropout)] if input_dropout > 0 else []
        if hidden == 0:
            layers.append(nn.Linear(in_dim, out_dim))
        else:
            layers.append(nn.Linear(in_dim, hidden))
            if compat == "thesis":
                layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(nn.Linear(hidden, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

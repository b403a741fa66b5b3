"""Gradient reversal (Ganin & Lempitsky, 2015) with the coefficient schedule of the reference code.

Forward is the identity; backward multiplies the incoming gradient by ``-coefficient``. Put it between an
embedding and an adversarial classifier: the classifier learns to predict the nuisance label while the
embedding learns to remove it. S2S-ZEST trains the speaker embedding with ``L = CE_spk - λ·CE_emo`` this way
(λ = 10 thesis, 1 in A2A-ZEST) and the emotion embedding with ``L = CE_emo - λ·CE_spk`` (λ = 1).
The reference code ramps the coefficient with :func:`grl_coefficient` over training progress.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from emotk.errors import ConfigError


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coefficient: float) -> torch.Tensor:  # type: ignore[override]
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return -ctx.coefficient * grad, None


def gradient_reversal(x: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
    """Identity on ``x`` (any shape); the gradient flowing back through it is scaled by ``-coefficient``."""
    return _ReverseGrad.apply(x, float(coefficient))


def grl_coefficient(progress: float, gamma: float = 10.0) -> float:
    """Reference schedule ``2 / (1 + exp(-gamma·p)) - 1`` for training progress ``p`` in [0, 1].

    Returns 0 at p = 0, ~0.987 at p = 0.5 and ~0.99991 at p = 1 (gamma = 10). ``p`` outside [0, 1] is
    clipped, so a run resumed past its planned length keeps the final coefficient.
    """
    p = float(progress)
    if math.isnan(p):
        raise ConfigError("grl_coefficient: progress is NaN")
    p = min(max(p, 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


class GradientReversal(nn.Module):
    """Gradient-reversal layer with a settable coefficient.

    ``coefficient`` (λ) is a plain attribute: set it directly, or call :meth:`set_progress` each step to
    follow ``scale · grl_coefficient(progress)``. Input and output: any tensor shape, unchanged.
    """

    def __init__(self, coefficient: float = 1.0) -> None:
        super().__init__()
        self.coefficient = float(coefficient)

    def set_progress(self, progress: float, scale: float = 1.0, gamma: float = 10.0) -> float:
        """Set ``coefficient = scale · grl_coefficient(progress, gamma)`` and return it."""
        self.coefficient = float(scale) * grl_coefficient(progress, gamma)
        return self.coefficient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gradient_reversal(x, self.coefficient)

    def extra_repr(self) -> str:
        return f"coefficient={self.coefficient:g}"

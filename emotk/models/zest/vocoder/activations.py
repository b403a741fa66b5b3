"""Periodic activations of BigVGAN: Snake and SnakeBeta, per-channel parameters in log scale.

SnakeBeta(x) = x + 1/β · sin²(α·x), α (frequency) and β (magnitude) learnt per channel. With log-scale
parameters (the default) the module stores log α and log β, initialised at 0 (α = β = 1).
"""

from __future__ import annotations

import torch
from torch import nn

_EPS = 1e-9


class SnakeBeta(nn.Module):
    """SnakeBeta over (B, C, T) inputs; returns the same shape.

    ``channels``: C; ``logscale``: store log α / log β (True, BigVGAN v2) or α / β directly (init 1);
    ``separate_beta``: False gives plain Snake (β tied to α).
    """

    def __init__(self, channels: int, logscale: bool = True, separate_beta: bool = True):
        super().__init__()
        self.logscale = logscale
        self.separate_beta = separate_beta
        init = torch.zeros(channels) if logscale else torch.ones(channels)
        self.alpha = nn.Parameter(init.clone())
        self.beta = nn.Parameter(init.clone()) if separate_beta else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.view(1, -1, 1)
        beta = (self.beta if self.beta is not None else self.alpha).view(1, -1, 1)
        if self.logscale:
            alpha, beta = alpha.exp(), beta.exp()
        inv_beta = 1.0 / (beta + _EPS)
        if torch.is_grad_enabled() and (x.requires_grad or alpha.requires_grad):
            return x + inv_beta * torch.sin(x * alpha).pow(2)
        # inference: the same value with in-place steps on one temporary (fewer passes over memory)
        return torch.sin(x * alpha).square_().mul_(inv_beta).add_(x)


def make_activation(name: str, channels: int, logscale: bool = True) -> nn.Module:
    """``snakebeta`` or ``snake`` over ``channels`` channels."""
    if name == "snakebeta":
        return SnakeBeta(channels, logscale=logscale, separate_beta=True)
    if name == "snake":
        return SnakeBeta(channels, logscale=logscale, separate_beta=False)
    from emotk.errors import ConfigError

    raise ConfigError(f"config key 'generator.activation': {name!r} is not one of snakebeta, snake")

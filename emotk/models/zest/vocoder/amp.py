"""Anti-aliased multi-periodicity (AMP) residual blocks of the BigVGAN generator."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from emotk.models.zest.vocoder.activations import make_activation
from emotk.models.zest.vocoder.resample import AntiAliasedActivation


def same_padding(kernel: int, dilation: int = 1) -> int:
    """Padding that keeps the length of a stride-1 conv with odd ``kernel`` and ``dilation``."""
    return (kernel * dilation - dilation) // 2


class AMPBlock(nn.Module):
    """One AMP block over (B, C, T) -> (B, C, T).

    For each dilation d: x += conv_1(act(conv_d(act(x)))), kernel ``kernel`` (dilation d, then 1), each
    activation anti-aliased (x2 up, periodic activation, x2 down). Convolutions are weight-normalised.
    """

    def __init__(self, channels: int, kernel: int, dilations: list[int], activation: str = "snakebeta",
                 logscale: bool = True, antialias_kernel: int = 12):
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, dilation=d, padding=same_padding(kernel, d)))
            for d in dilations)
        self.convs2 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, dilation=1, padding=same_padding(kernel)))
            for _ in dilations)
        for conv in [*self.convs1, *self.convs2]:
            _init_conv(conv)
        self.acts = nn.ModuleList(
            AntiAliasedActivation(make_activation(activation, channels, logscale), 2, antialias_kernel)
            for _ in range(2 * len(dilations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            xt = c1(self.acts[2 * i](x))
            xt = c2(self.acts[2 * i + 1](xt))
            x = x + xt
        return x


def _init_conv(conv: nn.Module, std: float = 0.01) -> None:
    """BigVGAN's N(0, 0.01) initialisation, applied to the direction of a weight-normalised conv."""
    param = conv.parametrizations.weight if hasattr(conv, "parametrizations") else None
    if param is not None:
        with torch.no_grad():
            param.original1.normal_(0.0, std)
            dims = tuple(range(1, param.original1.dim()))
            param.original0.copy_(param.original1.norm(dim=dims, keepdim=True))
    else:
        nn.init.normal_(conv.weight, 0.0, std)

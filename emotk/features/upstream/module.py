"""Any ``nn.Module`` that follows :class:`~emotk.features.upstream.base.LayeredSpeechEncoder` (CARE, ...)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emotk.errors import UsageError
from emotk.features.upstream.base import LayeredSpeechEncoder, Upstream, pad_batch, register_upstream


@register_upstream
class ModuleUpstream(Upstream):
    """Any ``nn.Module`` following :class:`LayeredSpeechEncoder` (``forward_layers`` + ``output_lengths``)."""

    kinds = ("module",)

    def __init__(self, module: nn.Module, *, trainable: bool = False) -> None:
        super().__init__(trainable=trainable)
        if not isinstance(module, LayeredSpeechEncoder):
            raise UsageError(f"{type(module).__name__} does not follow LayeredSpeechEncoder: it needs "
                             "forward_layers(wavs, lengths) -> (layers, frame_lengths) and output_lengths(num_samples)")
        self.module = module
        self.set_trainable(trainable)
        self._probe()

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return isinstance(model, nn.Module) and isinstance(model, LayeredSpeechEncoder)

    def output_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        out = self.module.output_lengths(torch.as_tensor(num_samples, dtype=torch.long))
        return torch.as_tensor(out, dtype=torch.long)

    def _names(self, num_layers: int) -> list[str]:
        names = getattr(self.module, "layer_names", None)
        return list(names) if names is not None else [f"layer_{i}" for i in range(num_layers)]

    def _encode(self, wavs: list[torch.Tensor], lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        padded = pad_batch(wavs)
        layers, frames = self.module.forward_layers(padded, lengths.to(padded.device))
        if isinstance(layers, torch.Tensor):
            if layers.ndim != 4:
                raise UsageError(f"{type(self.module).__name__}.forward_layers returned a tensor of shape "
                                 f"{tuple(layers.shape)}; expected (B, L, T, D) or a list of (B, T, D)")
            layers = list(layers.unbind(1))
        return list(layers), torch.as_tensor(frames, dtype=torch.long)

"""emotk's soft-HuBERT as an upstream (every item encoded at its own length: the model has no padding mask)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emotk.features.encoders.soft_hubert import PAD
from emotk.features.upstream.base import Upstream, register_upstream


@register_upstream
class SoftHubertUpstream(Upstream):
    """emotk's soft-HuBERT (:mod:`emotk.features.encoders.soft_hubert`): its transformer's hidden states,
    "input" and one per layer (num_layers + 1, hidden_size wide; the 256-d soft units are ``model.units``).

    The input is padded by the model's 40 samples on each side, so N samples give N // 320 frames
    (:mod:`emotk.features.frames`). The model has no padding mask (its group norm, positional convolution and
    attention all see padding), so items of different lengths are encoded separately (equal lengths share a
    call): every item gets exactly its single-item output.
    """

    kinds = ("soft-hubert",)

    def __init__(self, model: nn.Module, *, trainable: bool = False) -> None:
        super().__init__(trainable=trainable)
        self.model = model
        self.pad = int(PAD)
        self._convs = [(int(m.kernel_size[0]), int(m.stride[0]))
                       for m in model.feature_extractor.modules() if isinstance(m, nn.Conv1d)]
        self.set_trainable(trainable)
        self._probe()

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return (type(model).__name__ == "SoftHubert" and type(model).__module__.startswith("emotk.")
                and hasattr(model, "encode") and hasattr(model, "feature_extractor"))

    def output_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        n = torch.as_tensor(num_samples, dtype=torch.long) + 2 * self.pad
        for kernel, stride in self._convs:
            n = torch.where(n >= kernel, (n - kernel) // stride + 1, torch.zeros_like(n))
        return n

    def _encode(self, wavs: list[torch.Tensor], lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        groups: dict[int, list[int]] = {}
        for b, w in enumerate(wavs):
            groups.setdefault(int(w.shape[0]), []).append(b)
        frames = self.output_lengths(lengths)
        t_max = int(frames.max())
        result: list[torch.Tensor] | None = None
        for idx in groups.values():
            x = nn.functional.pad(torch.stack([wavs[b] for b in idx]), (self.pad, self.pad))
            _, hidden = self.model.encode(x, output_hidden_states=True)
            if result is None:
                result = [h.new_zeros((len(wavs), t_max, h.shape[-1])) for h in hidden]
            rows = torch.tensor(idx, device=hidden[0].device)
            for layer, h in enumerate(hidden):
                result[layer] = result[layer].index_copy(0, rows, nn.functional.pad(h, (0, 0, 0, t_max - h.shape[1])))
        return result, frames  # type: ignore[return-value]

"""Duration predictor of S2S-ZEST and the transfer-time duration clamp.

The embedding of each de-duplicated token t'_u is concatenated with the speaker embedding s and the
utterance emotion embedding e-bar, then a 1D-CNN (kernel 3, hidden 256) predicts its duration d_u in frames
(MSE, thesis Eq. 5.6). ``target="log"`` predicts log(d + 1) instead (reference code).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class DurationPredictor(nn.Module):
    """units (B, U), mask (B, U), s (B, S), e-bar (B, E) -> raw predictions (B, U) (frames or log(d+1)).

    num_tokens: K; speaker_dim / emotion_dim: widths of s and e-bar; hidden 256; kernel 3; layers: conv layers.
    """

    def __init__(self, num_tokens: int, speaker_dim: int = 128, emotion_dim: int = 128, hidden: int = 256,
                 kernel: int = 3, layers: int = 2, dropout: float = 0.1, target: str = "frames") -> None:
        super().__init__()
        self.target = target
        self.token_embedding = nn.Embedding(num_tokens, hidden)
        blocks: list[nn.Module] = []
        width = hidden + speaker_dim + emotion_dim
        for _ in range(layers):
            blocks += [nn.Conv1d(width, hidden, kernel, padding=kernel // 2), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.convs = nn.Sequential(*blocks)
        self.out = nn.Conv1d(hidden, 1, 1)

    def forward(self, units: torch.Tensor, mask: torch.Tensor, speaker: torch.Tensor,
                emotion: torch.Tensor) -> torch.Tensor:
        """Raw predictions (B, U) in the target domain; zero on padded units."""
        x = self.token_embedding(units)
        u = x.shape[1]
        x = torch.cat([x, speaker[:, None].expand(-1, u, -1), emotion[:, None].expand(-1, u, -1)], dim=-1)
        m = mask[:, None].to(x.dtype)
        h = x.transpose(1, 2) * m
        for layer in self.convs:  # re-mask after each conv so padding never leaks into valid units
            h = layer(h)
            if isinstance(layer, nn.Conv1d):
                h = h * m
        return self.out(h)[:, 0] * m[:, 0]

    def encode_target(self, durations: torch.Tensor) -> torch.Tensor:
        """Durations in frames -> the regression target (identity, or log(d + 1))."""
        d = durations.to(torch.float32)
        return torch.log1p(d) if self.target == "log" else d

    def to_frames(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw predictions -> durations in (fractional) frames."""
        return torch.expm1(raw) if self.target == "log" else raw


def clamp_durations(predicted: np.ndarray, source: np.ndarray, mode: str = "relative",
                    ratio: float = 0.4) -> np.ndarray:
    """Round predicted durations to whole frames within the allowed range; returns (U,) int64, every entry >= 1.

    predicted: (U,) fractional frames; source: (U,) source durations. ``relative`` (thesis): within
    [ (1 - ratio) d, (1 + ratio) d ] of the source duration d (bounds rounded inwards, then at least 1);
    ``min1`` (reference): only at least 1.
    """
    pred = np.asarray(predicted, dtype=np.float64)
    src = np.asarray(source, dtype=np.float64)
    if pred.shape != src.shape:
        raise ValueError(f"clamp_durations: {pred.shape} predictions for {src.shape} source durations")
    pred = np.nan_to_num(pred, nan=1.0, posinf=1.0, neginf=1.0)
    out = np.rint(pred)
    if mode == "relative":
        lo = np.maximum(np.ceil(src * (1.0 - ratio) - 1e-9), 1.0)
        hi = np.maximum(np.floor(src * (1.0 + ratio) + 1e-9), lo)
        out = np.clip(out, lo, hi)
    elif mode != "min1":
        raise ValueError(f"clamp_durations: unknown mode {mode!r} (relative or min1)")
    return np.maximum(out, 1.0).astype(np.int64)

"""F0 predictor of S2S-ZEST: f-hat = 1D-CNN(Attn(Q = token embeddings C, K = V = s + E)) (thesis Eq. 5.3-5.4).

Content tokens (B, T) are embedded to ``hidden``; the keys/values are the speaker embedding added to every
emotion frame (B, T_e, 128), projected to ``hidden``; multi-head attention (4 heads) masks padded key frames;
the head is Conv1d(k3) -> LeakyReLU -> Conv1d(k1) (reference) giving one value per token frame. With
``target="hz"`` (thesis) the output is F0 in Hz (times ``scale``: an emotk option, 1 = thesis; a larger scale
lets a small or briefly trained predictor reach speech F0 without huge output weights); with ``"log"`` (reference)
it is log(F0 + 1) and :meth:`F0Predictor.to_hz` maps it back, so the L1 loss is in Hz either way. Unvoiced frames
have target 0 and count in the loss (thesis).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, dim) sine/cosine position table (Vaswani et al.)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return table


class F0Predictor(nn.Module):
    """tokens (B, T), token mask (B, T), conditioning s + E (B, T_e, cond_dim), cond mask (B, T_e) -> (B, T).

    num_tokens: K; cond_dim: width of s and E (128); hidden 256; heads 4; kernel 3; positional "none" or
    "sinusoidal" (adds positions to queries and keys); target "hz" or "log"; scale: Hz per output unit (hz target).
    """

    def __init__(self, num_tokens: int, cond_dim: int = 128, hidden: int = 256, heads: int = 4, kernel: int = 3,
                 positional: str = "none", target: str = "hz", scale: float = 1.0) -> None:
        super().__init__()
        self.num_tokens, self.target, self.positional = int(num_tokens), target, positional
        self.scale = float(scale)
        self.token_embedding = nn.Embedding(num_tokens, hidden)
        self.cond_proj = nn.Linear(cond_dim, hidden)
        self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.head = nn.Sequential(nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2), nn.LeakyReLU(0.1),
                                  nn.Conv1d(hidden, 1, 1))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, cond: torch.Tensor,
                cond_mask: torch.Tensor) -> torch.Tensor:
        """Raw predictions (B, T) in the target domain (Hz or log(F0+1)); zero on padded frames."""
        q = self.token_embedding(tokens)
        kv = self.cond_proj(cond)
        if self.positional == "sinusoidal":
            q = q + sinusoidal_positions(q.shape[1], q.shape[2], q.device)
            kv = kv + sinusoidal_positions(kv.shape[1], kv.shape[2], kv.device)
        att, _ = self.attention(q, kv, kv, key_padding_mask=~cond_mask, need_weights=False)
        att = att * mask[..., None].to(att.dtype)
        return self.head(att.transpose(1, 2))[:, 0] * mask.to(att.dtype)

    def to_hz(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw output -> F0 in Hz (B, T), >= 0 when ``target == "log"``."""
        return torch.expm1(raw) if self.target == "log" else raw * self.scale

    def predict_hz(self, tokens: torch.Tensor, mask: torch.Tensor, cond: torch.Tensor,
                   cond_mask: torch.Tensor) -> torch.Tensor:
        """F0 in Hz (B, T) for synthesis: negative values (unvoiced) clipped to 0."""
        return self.to_hz(self(tokens, mask, cond, cond_mask)).clamp(min=0.0) * mask.to(cond.dtype)

"""The attention block of HCAM (thesis Eq. 4.1–4.3), multi-head, with (B, T, T) boolean masks.

One implementation, used for self-attention (stage II, the self-attention after each cross-attention of stage III)
and cross-attention (stage III co-attention):

    Q = X_q W_q,  K = X_kv W_k,  V = X_kv W_v                         (Eq. 4.1)
    A = softmax(Q Kᵀ / √d_h + mask) V   per head, heads concatenated  (Eq. 4.2)
    O = LayerNorm(Q + A)                                              (Eq. 4.3)

d_h is the width of one head (dim / heads). As in the equations, there is no output projection: the residual
is the projected query. Masked keys get weight exactly 0 (:func:`masked_softmax`), so padding never enters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from emotk.errors import ConfigError, UsageError


def masked_softmax(scores: torch.Tensor, allowed: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax of ``scores`` over ``dim`` where ``allowed`` (bool, broadcastable) is True; 0 elsewhere.

    A row where nothing is allowed gives all-zero weights (not NaN) and zero gradients: the scores are filled
    with the dtype's finite minimum instead of -inf, then multiplied by the mask.
    """
    filled = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=dim) * allowed.to(scores.dtype)


class AttentionBlock(nn.Module):
    """Multi-head attention block ``O = LayerNorm(Q + softmax(QKᵀ/√d_h) V)`` (Eq. 4.1–4.3).

    query_dim: width of X_q; key_dim: width of X_kv (default query_dim: self-attention); dim: the projected width
    (output width, a multiple of ``heads``); heads: number of heads; dropout: on the attention weights.

    forward(query (B, Tq, query_dim), key_value (B, Tk, key_dim) or None = self-attention,
    allowed (B, Tq, Tk) bool or None = all) -> (B, Tq, dim). Rows of padded queries come out as
    LayerNorm(Q) of whatever the query held; callers zero them (the HCAM modules do).
    """

    def __init__(self, query_dim: int, dim: int, heads: int = 1, key_dim: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if dim < 1 or heads < 1 or dim % heads:
            raise ConfigError(f"attention width {dim} must be a positive multiple of heads={heads}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"attention dropout must be in [0, 1), got {dropout}")
        key_dim = query_dim if key_dim is None else key_dim
        self.dim, self.heads, self.head_dim = int(dim), int(heads), int(dim) // int(heads)
        self.q = nn.Linear(query_dim, dim)
        self.k = nn.Linear(key_dim, dim)
        self.v = nn.Linear(key_dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, dim) -> (B, heads, T, head_dim)
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, query: torch.Tensor, key_value: torch.Tensor | None = None,
                allowed: torch.Tensor | None = None) -> torch.Tensor:
        key_value = query if key_value is None else key_value
        q = self.q(query)
        k, v = self._split(self.k(key_value)), self._split(self.v(key_value))
        qh = self._split(q)
        scores = qh @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, H, Tq, Tk)
        if allowed is None:
            weights = torch.softmax(scores, dim=-1)
        else:
            if tuple(allowed.shape) != (query.shape[0], query.shape[1], key_value.shape[1]):
                raise UsageError(f"attention mask {tuple(allowed.shape)} does not match (B, Tq, Tk) = "
                                 f"{(query.shape[0], query.shape[1], key_value.shape[1])}")
            # zero the keys' values too: a masked key's value (even NaN) must not reach the output via 0 * NaN
            key_ok = allowed.any(dim=1)  # (B, Tk)
            v = v.masked_fill(~key_ok[:, None, :, None], 0.0)
            weights = masked_softmax(scores, allowed[:, None])
        attended = self.dropout(weights) @ v  # (B, H, Tq, head_dim)
        attended = attended.transpose(1, 2).reshape(q.shape)
        return self.norm(q + attended)

"""Padding masks: lengths <-> boolean masks, and padding of variable-length sequences.

Convention everywhere in emotk: a mask is a bool tensor (B, T) that is **True on valid frames** and False
on padding; ``lengths`` is a (B,) long tensor of valid frames per item, valid frames come first.
"""

from __future__ import annotations

from typing import Sequence

import torch

from emotk.errors import UsageError


def lengths_to_mask(lengths: torch.Tensor | Sequence[int], max_len: int | None = None) -> torch.Tensor:
    """(B,) valid lengths -> (B, T) bool mask, True where ``t < lengths[b]``.

    max_len: T (default: the largest length). A length above ``max_len`` is an error (it would silently
    drop frames).
    """
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    if lengths.ndim != 1:
        raise UsageError(f"lengths must be 1-D (B,), got shape {tuple(lengths.shape)}")
    if bool((lengths < 0).any()):
        raise UsageError(f"lengths must be >= 0, got {lengths.tolist()}")
    longest = int(lengths.max()) if lengths.numel() else 0
    t = longest if max_len is None else int(max_len)
    if longest > t:
        raise UsageError(f"a length of {longest} does not fit max_len={t}")
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


def mask_to_lengths(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) bool mask (valid frames first) -> (B,) long lengths."""
    if mask.ndim != 2:
        raise UsageError(f"mask must be (B, T), got shape {tuple(mask.shape)}")
    return mask.to(torch.long).sum(dim=1)


def as_mask(x: torch.Tensor, lengths: torch.Tensor | None = None, mask: torch.Tensor | None = None,
            time_dim: int = 1) -> torch.Tensor:
    """The (B, T) bool mask for ``x`` from either ``lengths`` or ``mask`` (all frames valid when both None).

    x: a tensor whose dim 0 is B and dim ``time_dim`` is T. Checks that the mask matches (B, T).
    """
    b, t = int(x.shape[0]), int(x.shape[time_dim])
    if mask is not None and lengths is not None:
        raise UsageError("give either lengths or mask, not both")
    if mask is None:
        if lengths is None:
            return torch.ones(b, t, dtype=torch.bool, device=x.device)
        mask = lengths_to_mask(torch.as_tensor(lengths, device=x.device), t)
    mask = mask.to(device=x.device, dtype=torch.bool)
    if tuple(mask.shape) != (b, t):
        raise UsageError(f"mask shape {tuple(mask.shape)} does not match (B, T) = ({b}, {t})")
    return mask


def pad_sequences(
    items: Sequence[torch.Tensor], value: float = 0.0, time_dim: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """B tensors that differ only in their ``time_dim`` size -> (padded batch, lengths).

    items: tensors of shape (..., T_i, ...) with T_i at ``time_dim``. Returns (B, ..., T_max, ...) with the
    padding filled with ``value`` (the time axis moves to ``time_dim + 1``) and lengths (B,) long.
    """
    if not items:
        raise UsageError("pad_sequences: no items")
    first = items[0]
    lengths = torch.tensor([int(x.shape[time_dim]) for x in items], dtype=torch.long)
    t_max = int(lengths.max())
    shape = list(first.shape)
    shape[time_dim] = t_max
    out = first.new_full((len(items), *shape), value)
    for b, x in enumerate(items):
        if x.ndim != first.ndim or any(x.shape[d] != first.shape[d] for d in range(x.ndim) if d != time_dim):
            raise UsageError(f"pad_sequences: item {b} has shape {tuple(x.shape)}, incompatible with "
                             f"{tuple(first.shape)} outside dim {time_dim}")
        index = [b] + [slice(None)] * x.ndim
        index[1 + time_dim] = slice(0, int(x.shape[time_dim]))
        out[tuple(index)] = x
    return out, lengths

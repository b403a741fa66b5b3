"""Padding masks: lengths <-> boolean masks, padding of variable-length sequences, and the turn-to-turn
attention masks of conversation models (HCAM, MiSTER-E).

Convention everywhere in emotk: a mask is a bool tensor (B, T) that is **True on valid frames** and False
on padding; ``lengths`` is a (B,) long tensor of valid frames per item, valid frames come first.
An attention mask is a bool tensor (B, T, T): ``allowed[b, t, s]`` is True when query turn ``t`` may attend
key turn ``s``. Padding is never a key, and a padded query attends nothing.
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


ATTENTION_KINDS = ("global", "local", "speaker", "listener")


def turn_attention_mask(mask: torch.Tensor, speaker: torch.Tensor | None = None, kind: str = "global",
                        window: int | None = None, causal: bool = False) -> torch.Tensor:
    """(B, T) valid-turn mask [+ (B, T) speaker index] -> (B, T, T) bool attention mask, True = may attend.

    kind (DialogXL-style dialogue masks, used by HCAM's reference stage II):

    * ``global``   -- every valid turn within ``|t - s| <= window`` (``window=None``: the whole dialogue);
    * ``local``    -- the neighbours ``|t - s| <= window``, ``window`` 1 by default (the HCAM reference: ±1);
    * ``speaker``  -- turns of the same speaker as turn t (t itself included);
    * ``listener`` -- turns of the *other* speakers (t itself excluded), so a monologue's rows are empty.

    ``window`` also limits ``speaker``/``listener`` when given. ``causal``: only keys ``s <= t`` (past and
    present turns), the mask of online ERC. Rows that allow nothing (a padded query, a listener row of a
    monologue, the first turn under ``causal`` + ``listener``) are legal: :func:`emotk.nn.attention.masked_softmax`
    gives them zero weights, never NaN. ``speaker`` is required for the speaker/listener kinds (its padded
    entries, -1 by the dataset's convention, are never read).
    """
    if kind not in ATTENTION_KINDS:
        from emotk.core.suggest import did_you_mean

        raise UsageError(f"unknown attention mask kind {kind!r}{did_you_mean(kind, ATTENTION_KINDS)}; "
                         f"choose one of {', '.join(ATTENTION_KINDS)}")
    if mask.ndim != 2:
        raise UsageError(f"mask must be (B, T), got shape {tuple(mask.shape)}")
    mask = mask.to(torch.bool)
    t = mask.shape[1]
    allowed = mask[:, :, None] & mask[:, None, :]
    if kind == "local" and window is None:
        window = 1
    pos = torch.arange(t, device=mask.device)
    offset = pos[None, :] - pos[:, None]  # [t, s] = s - t
    if window is not None:
        if int(window) < 0:
            raise UsageError(f"attention window must be >= 0, got {window}")
        allowed = allowed & (offset.abs() <= int(window))[None]
    if causal:
        allowed = allowed & (offset <= 0)[None]
    if kind in ("speaker", "listener"):
        if speaker is None:
            raise UsageError(f"the {kind!r} attention mask needs the speaker of every turn")
        if tuple(speaker.shape) != tuple(mask.shape):
            raise UsageError(f"speaker shape {tuple(speaker.shape)} does not match mask shape {tuple(mask.shape)}")
        same = speaker[:, :, None] == speaker[:, None, :]
        allowed = allowed & (same if kind == "speaker" else ~same)
    return allowed

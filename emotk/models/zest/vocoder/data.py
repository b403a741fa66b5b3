"""Vocoder training data: items ``{"tokens": (T,) int, "f0": (T,) Hz, "speaker": (S,), "emotion": (E,),
"wav": (T·320,)}`` (numpy arrays or tensors, produced by the S2S-ZEST analysis models:
:func:`emotk.models.zest.infer.export_vocoder_items`), checked (:func:`check_item`), loaded from a list, a
``{"train", "valid"}`` dict or a folder of ``.npz`` files (:func:`load_items`) and cut into fixed-length
segments on the 50 Hz grid (:class:`SegmentDataset`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from emotk.core.audio import HOP
from emotk.errors import DataError

ITEM_KEYS = ("tokens", "f0", "speaker", "emotion", "wav")


def check_item(item: Any, where: str, speaker_dim: int, emotion_dim: int) -> dict[str, torch.Tensor]:
    """Validate one training item and return it as tensors; DataError names ``where`` and the bad key.

    ``wav`` longer than ``T·320`` by less than one hop is cut (the last partial frame has no token).
    """
    if not isinstance(item, dict):
        raise DataError(f"{where}: a vocoder item must be a dict with keys {', '.join(ITEM_KEYS)}")
    missing = [k for k in ITEM_KEYS if k not in item]
    if missing:
        raise DataError(f"{where}: missing key '{missing[0]}' (a vocoder item holds {', '.join(ITEM_KEYS)})")
    out = {k: torch.as_tensor(np.asarray(item[k])) for k in ITEM_KEYS}
    tokens, f0, wav = out["tokens"].reshape(-1).long(), out["f0"].reshape(-1).float(), out["wav"].reshape(-1).float()
    t = tokens.numel()
    if t == 0:
        raise DataError(f"{where}: 'tokens' is empty")
    if f0.numel() != t:
        raise DataError(f"{where}: 'f0' has {f0.numel()} frames, 'tokens' {t} (one F0 value per 50 Hz token)")
    if not (t * HOP <= wav.numel() < (t + 1) * HOP):
        raise DataError(f"{where}: 'wav' has {wav.numel()} samples, expected {t * HOP} ({t} frames x {HOP})")
    for key, dim in (("speaker", speaker_dim), ("emotion", emotion_dim)):
        if out[key].numel() != dim:
            raise DataError(f"{where}: '{key}' has {out[key].numel()} values, the generator expects {dim}")
    for key, v in (("f0", f0), ("wav", wav), ("speaker", out["speaker"]), ("emotion", out["emotion"])):
        if not torch.isfinite(v.float()).all():
            raise DataError(f"{where}: '{key}' holds NaN or infinite values")
    return {"tokens": tokens, "f0": f0, "speaker": out["speaker"].reshape(-1).float(),
            "emotion": out["emotion"].reshape(-1).float(), "wav": wav[: t * HOP]}


def _crop(item: dict[str, torch.Tensor], start: int, frames: int) -> dict[str, torch.Tensor]:
    """Frames ``[start, start+frames)`` of an item, padded (last token, F0 0, silence) when it is shorter."""
    t = item["tokens"].numel()
    stop = min(start + frames, t)
    tokens, f0 = item["tokens"][start:stop], item["f0"][start:stop]
    wav = item["wav"][start * HOP: stop * HOP]
    pad = frames - (stop - start)
    if pad:
        tokens = torch.cat([tokens, tokens[-1:].expand(pad)])
        f0 = torch.cat([f0, f0.new_zeros(pad)])
        wav = torch.cat([wav, wav.new_zeros(pad * HOP)])
    return {"tokens": tokens, "f0": f0, "speaker": item["speaker"], "emotion": item["emotion"], "wav": wav}


class SegmentDataset:
    """Random ``frames``-frame segments of validated items (the crop uses torch's global RNG, which the
    trainer seeds and restores on resume). ``random=False``: the first ``frames`` frames (validation).
    ``repeats``: each item is listed that many times (one epoch = that many crops of every utterance)."""

    def __init__(self, items: Sequence[dict[str, torch.Tensor]], frames: int, random: bool = True, repeats: int = 1):
        self.items = list(items)
        self.frames = int(frames)
        self.random = random
        self.repeats = int(repeats)

    def __len__(self) -> int:
        return len(self.items) * self.repeats

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = self.items[i % len(self.items)]
        t = item["tokens"].numel()
        start = 0
        if self.random and t > self.frames:
            start = int(torch.randint(0, t - self.frames + 1, ()).item())
        return _crop(item, start, self.frames)


def load_items(source: Any, speaker_dim: int, emotion_dim: int) -> tuple[list[dict], list[dict] | None]:
    """(train items, valid items or None) from a list of dicts, ``{"train", "valid"}`` or a folder of .npz."""
    valid_src = None
    if isinstance(source, dict) and "train" in source:
        source, valid_src = source["train"], source.get("valid")
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise DataError(f"{folder}: expected a folder of .npz vocoder items (keys {', '.join(ITEM_KEYS)}) "
                            "or a list of item dicts")
        files = sorted(folder.glob("*.npz"))
        if not files:
            raise DataError(f"{folder}: no .npz vocoder items found")
        named = []
        for f in files:
            try:
                with np.load(f, allow_pickle=False) as z:
                    named.append((str(f), {k: z[k] for k in z.files}))
            except (OSError, ValueError) as e:
                raise DataError(f"{f}: unreadable .npz ({e})") from None
    else:
        named = [(f"item {i}", item) for i, item in enumerate(source)]
    train = [check_item(item, where, speaker_dim, emotion_dim) for where, item in named]
    valid = None
    if valid_src is not None:
        valid = [check_item(item, f"valid item {i}", speaker_dim, emotion_dim) for i, item in enumerate(valid_src)]
    return train, valid

"""Transductive per-speaker normalisation of SER input features (``data.speaker_norm: per-speaker``).

Each utterance's cached upstream features (L, T, D) are standardised per layer and dim with the mean and standard
deviation over every frame of every utterance of its speaker *within the same evaluated split*: training speakers
from their training utterances, validation and test speakers from their own (unlabelled) utterances. Only the
features and the ``speaker`` field are read, never a label. Padding never enters the statistics: they are built
from per-utterance summaries over the utterance's own T frames.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from emotk.errors import DataError

NAME = "transductive per-speaker normalisation"
STD_FLOOR = 1e-5
MODES = ("none", "per-speaker")


def summarize(hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(L, T, D) features -> ``(mean, mean_square, T)`` over time, (L, D) each (float64 sums)."""
    h = np.asarray(hidden, dtype=np.float64)
    return h.mean(axis=1), np.square(h).mean(axis=1), int(h.shape[1])


def speaker_stats_from_summaries(groups: Mapping[Any, Iterable[tuple[np.ndarray, np.ndarray, int]]],
                                 floor: float = STD_FLOOR) -> dict[Any, tuple[np.ndarray, np.ndarray]]:
    """``{speaker: [(mean, mean_square, frames) per utterance]}`` -> ``{speaker: (mean, std)}``, (L, D) float32;
    mean and std over all frames of all the speaker's utterances (frame-weighted), std at least ``floor``."""
    out = {}
    for spk, summaries in groups.items():
        total = sq = None
        frames = 0
        for mean, mean_sq, n in summaries:
            s, q = np.asarray(mean, np.float64) * n, np.asarray(mean_sq, np.float64) * n
            total, sq = (s, q) if total is None else (total + s, sq + q)
            frames += int(n)
        if total is None or frames == 0:
            raise DataError(f"speaker {spk!r}: no frames to compute per-speaker statistics from")
        mu = total / frames
        std = np.sqrt(np.maximum(sq / frames - mu * mu, 0.0))
        out[spk] = (mu.astype(np.float32), np.maximum(std, floor).astype(np.float32))
    return out


def speaker_stats(groups: Mapping[Any, Sequence[np.ndarray]],
                  floor: float = STD_FLOOR) -> dict[Any, tuple[np.ndarray, np.ndarray]]:
    """``{speaker: [(L, T, D) features per utterance, unpadded]}`` -> ``{speaker: (mean, std)}`` (L, D)."""
    return speaker_stats_from_summaries({s: [summarize(h) for h in hs] for s, hs in groups.items()}, floor)


def normalize(hidden: np.ndarray, stats: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(L, T, D) features standardised with a speaker's ``(mean, std)`` (L, D) -> float32."""
    mean, std = stats
    return ((np.asarray(hidden, dtype=np.float32) - mean[:, None, :]) / std[:, None, :]).astype(np.float32)


def normalize_summary(summary: tuple[np.ndarray, np.ndarray, int],
                      stats: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """The ``(mean, mean_square, frames)`` summary of the standardised features (exact: both are moments)."""
    m, q, n = summary
    mu, sd = (np.asarray(a, np.float64) for a in stats)
    m64, q64 = np.asarray(m, np.float64), np.asarray(q, np.float64)
    mean = (m64 - mu) / sd
    mean_sq = (q64 - 2 * mu * m64 + mu * mu) / (sd * sd)
    return mean.astype(np.float32), mean_sq.astype(np.float32), n


def speaker_map(manifest: Any, ids: Iterable[str] | None = None) -> dict[str, str]:
    """``{id: speaker}`` of the manifest's records (only ``ids`` when given); a record without a ``speaker``
    field is a :class:`DataError` naming the first one."""
    wanted = None if ids is None else set(ids)
    out = {}
    for i, rec in enumerate(manifest.records):
        if wanted is not None and rec["id"] not in wanted:
            continue
        spk = rec.get("speaker")
        if spk is None or spk == "":
            line = manifest.lineno(i) if hasattr(manifest, "lineno") else i + 1
            raise DataError(f"{manifest.path}:{line}: record '{rec['id']}' has no 'speaker' field, which "
                            "data.speaker_norm=per-speaker needs (add speakers or set data.speaker_norm=none)")
        out[rec["id"]] = str(spk)
    return out

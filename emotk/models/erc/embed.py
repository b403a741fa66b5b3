"""Stage-I utterance vectors for ERC (``emotk erc embed``): one vector per utterance, from the feature cache.

Each modality's ``embed`` entry names a ``features extract`` kind and its config; :func:`ensure_embeddings` runs
:func:`emotk.features.extract.run_extraction` (sharded, resumable, cached under ``<cache root>/<kind>-<hash12>/``,
shared by every run and seed) and pools what it stores to one (D,) vector per utterance:

==================  ==============================  =============================================================
kind                stored                          vector
==================  ==============================  =============================================================
text                embedding (D,)                  as stored (a sentence-encoder mean; MiniLM ships offline)
upstream            hidden (L, T, D)                mean of ``layers`` -> time ``pool`` (mean, or mean + std)
acoustic            acoustic (T, D)                 time ``pool`` (lld functionals)
whisper-encoder     frames (T, D)                   time ``pool``
==================  ==============================  =============================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from emotk.errors import ConfigError, DataError

ARRAYS = {"text": "embedding", "upstream": "hidden", "acoustic": "acoustic", "whisper-encoder": "frames"}


def embed_config(entry: Any) -> Any:
    """The extractor config of an ``embed.<modality>`` entry (its kind's schema, checked)."""
    from emotk.features.extract import make_config

    if entry.kind not in ARRAYS:
        from emotk.core.suggest import did_you_mean

        raise ConfigError(f"embed.kind: '{entry.kind}'{did_you_mean(entry.kind, ARRAYS)} is not one of "
                          f"{', '.join(ARRAYS)}")
    return make_config(entry.kind, dict(entry.config))


def pool(entry: Any, array: np.ndarray) -> np.ndarray:
    """One stored array -> the utterance's (D,) float32 vector (see the module table)."""
    a = np.asarray(array, dtype=np.float32)
    if entry.kind == "text":
        return a.reshape(-1)
    if entry.kind == "upstream":
        layers = entry.layers
        a = a.mean(axis=0) if layers == "all" else a[list(layers)].mean(axis=0)
    if a.ndim != 2 or a.shape[0] == 0:
        raise DataError(f"embed {entry.kind}: expected (T, D) frames with T >= 1, got shape {a.shape}")
    if entry.pool == "mean_std":
        return np.concatenate([a.mean(axis=0), a.std(axis=0)]).astype(np.float32)
    return a.mean(axis=0).astype(np.float32)


def ensure_embeddings(cfg: Any, manifest: Any, cache_root: str | os.PathLike, *, device: str = "cpu",
                      modalities: list[str] | None = None, shard: tuple[int, int] | None = None,
                      skip_bad: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Extract (or reuse) the stage-I arrays of every record of ``manifest`` for each modality of ``cfg.model``
    (or ``modalities``) under ``cache_root``; returns ``{modality: extraction summary}`` (cache path, counts)."""
    from emotk.features.extract import run_extraction

    out = {}
    for mod in modalities or list(cfg.model.modalities):
        entry = cfg.embed.get(mod)
        if entry is None:
            raise ConfigError(f"embed.{mod}: no stage-I source for modality '{mod}'")
        if mod == "speech":
            manifest.require_audio("erc speech embeddings")
        out[mod] = run_extraction(entry.kind, manifest, Path(cache_root), embed_config(entry), shard=shard,
                                  resume=True, skip_bad=skip_bad, progress=progress, device=device)
    return out


def load_vectors(cfg: Any, summaries: dict[str, Any], ids: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """``{modality: {utterance id: (D,) vector}}`` for ``ids`` from the caches of :func:`ensure_embeddings`."""
    from emotk.features.cache import FeatureCache

    out: dict[str, dict[str, np.ndarray]] = {}
    for mod, summary in summaries.items():
        entry = cfg.embed.get(mod)
        cache = FeatureCache(summary["cache"])
        name = ARRAYS[entry.kind]
        vectors = {}
        for uid in ids:
            if uid in cache:
                vectors[uid] = pool(entry, cache.get(uid, name))
        out[mod] = vectors
    return out

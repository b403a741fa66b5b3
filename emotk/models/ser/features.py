"""SER input features: a frozen upstream run ONCE per utterance into the feature cache; the head trains from it.

An "upstream" here is either a registered speech encoder (``Upstream.from_hub(name)``: WavLM, HuBERT, CARE,
the bundled ``whisper-tiny.en-ct2`` which gives its last layer only, ``tiny-wavlm`` for tests, ...) or ``lld``,
emotk's non-learned 50 Hz acoustic descriptors (:func:`emotk.features.acoustic.acoustic_targets`), which count
as an upstream with one layer. Before encoding, every waveform is cropped to its first ``max_seconds`` and
zero-padded to ``min_seconds`` (thesis: 30 s / 1 s), so the features depend only on :class:`SerFeatures`.

The extractor is registered as feature kind ``ser-input`` (:mod:`emotk.features.extract`), so the cache folder
is ``<root>/ser-input-<hash12>`` with ``hash12`` taken over :class:`SerFeatures`; each utterance stores
``hidden`` (L, T, D) (float16 by default: half the disk, and the head sees the same rounding at predict time).
:func:`build_feature_fn` is used by both extraction and ``ser predict``, so training and inference features
are computed by the same code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Sequence

import numpy as np

from emotk.core.audio import SAMPLE_RATE
from emotk.errors import ConfigError

KIND = "ser-input"
LLD = "lld"


@dataclass
class SerFeatures:
    """Everything that decides the cached SER features (hashed into the cache folder name)."""

    upstream: str = "wavlm-base-plus"  # registry name, or "lld"
    path: Optional[str] = None  # explicit local copy of the upstream
    layers: Optional[list[int]] = None  # stored layers; None = all
    dtype: Literal["float32", "float16"] = "float16"  # storage precision
    max_seconds: float = 30.0  # crop: only the first max_seconds are encoded (0 = no crop)
    min_seconds: float = 1.0  # pad: shorter audio is zero-padded to min_seconds
    lld: Optional[dict[str, Any]] = None  # emotk.features.acoustic.AcousticConfig fields (upstream "lld" only)

    def validate(self) -> None:
        if self.max_seconds < 0 or self.min_seconds < 0:
            raise ConfigError("ser features: max_seconds and min_seconds must be >= 0")
        if self.max_seconds and self.min_seconds > self.max_seconds:
            raise ConfigError(f"ser features: min_seconds {self.min_seconds} > max_seconds {self.max_seconds}")
        if self.upstream != LLD and self.lld is not None:
            raise ConfigError("ser features: 'lld' settings only apply to upstream 'lld'")
        if self.upstream == LLD:
            if self.layers not in (None, [0], [-1]):
                raise ConfigError(f"upstream 'lld' has one layer; layers {self.layers} do not exist")
            self.acoustic_config().check()

    def acoustic_config(self) -> Any:
        """The :class:`emotk.features.acoustic.AcousticConfig` of upstream ``lld``."""
        from emotk.core.config import from_dict
        from emotk.features.acoustic import AcousticConfig

        return from_dict(AcousticConfig, dict(self.lld or {}), prefix="upstream.lld.")


def crop_pad(wav: np.ndarray, max_seconds: float, min_seconds: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """(S,) float waveform -> its first ``max_seconds`` (0 = all), zero-padded at the end to ``min_seconds``."""
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    if max_seconds and wav.shape[0] > int(round(max_seconds * sr)):
        wav = wav[: int(round(max_seconds * sr))]
    need = int(round(min_seconds * sr))
    if wav.shape[0] < need:
        wav = np.pad(wav, (0, need - wav.shape[0]))
    return wav


def build_feature_fn(cfg: SerFeatures,
                     device: str = "cpu") -> Callable[[Sequence[np.ndarray]], list[dict[str, np.ndarray]]]:
    """``fn(wavs) -> [{"hidden": (L, T, D) array}]`` for N 16 kHz mono waveforms (cropped/padded here).

    Loads the upstream once (``Upstream.from_hub``; nothing for ``lld``). Output dtype: ``cfg.dtype``.
    """
    cfg.validate()
    dtype = np.float16 if cfg.dtype == "float16" else np.float32
    if cfg.upstream == LLD:
        from emotk.features.acoustic import acoustic_targets

        acoustic = cfg.acoustic_config()

        def lld_fn(wavs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
            out = []
            for w in wavs:
                feats = acoustic_targets(crop_pad(w, cfg.max_seconds, cfg.min_seconds), SAMPLE_RATE, acoustic)
                out.append({"hidden": feats[None].astype(dtype)})
            return out

        return lld_fn

    from emotk.features.upstream import Upstream, extract

    up = Upstream.from_hub(cfg.upstream, path=cfg.path, device=device)

    def upstream_fn(wavs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        items = [crop_pad(w, cfg.max_seconds, cfg.min_seconds) for w in wavs]
        return [{"hidden": h} for h in extract(up, items, layers=cfg.layers, dtype=dtype)]

    return upstream_fn


def _build(cfg: SerFeatures, device: str) -> Callable[[Sequence[np.ndarray]], list[dict[str, np.ndarray]]]:
    return build_feature_fn(cfg, device)


def register() -> None:
    """Make ``ser-input`` a feature kind of :mod:`emotk.features.extract` (idempotent)."""
    from emotk.features.extract import EXTRACTORS, ExtractorSpec, register_extractor

    if KIND not in EXTRACTORS:
        register_extractor(ExtractorSpec(KIND, SerFeatures, "audio", _build,
                                         "SER upstream layers (or lld) of audio cropped/padded for the SUPERB head"))


def ensure_features(manifest: Any, cfg: SerFeatures, cache_root: str | os.PathLike, device: str = "cpu",
                    skip_bad: bool = False, progress: bool | None = None,
                    batch_size: int = 8) -> tuple[Any, dict[str, Any]]:
    """Extract (or reuse) the features of every record of ``manifest`` and return ``(FeatureCache, summary)``.

    The cache lives in ``cache_root/set-<ids12>/ser-input-<hash12>/`` where ``ids12`` hashes the sorted ids, so
    manifests with other utterance sets never collide and every fold/seed of one manifest shares one cache.
    Complete shards are reused (resume); ``skip_bad`` records unreadable audio as skipped instead of failing.
    """
    from emotk.features.cache import FeatureCache, ids_sha256
    from emotk.features.extract import run_extraction

    register()
    root = Path(cache_root) / f"set-{ids_sha256(manifest.ids)[:12]}"
    summary = run_extraction(KIND, manifest, root, cfg, resume=True, skip_bad=skip_bad, progress=progress,
                             batch_size=batch_size, device=device)
    return FeatureCache(summary["cache"]), summary

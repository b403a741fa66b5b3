"""SER input features: a frozen upstream run ONCE per utterance into the feature cache; the head trains from it.

An "upstream" here is either a registered speech encoder (``Upstream.from_hub(name)``: WavLM, HuBERT, CARE,
the bundled ``whisper-tiny.en-ct2`` which gives its last layer only, ``tiny-wavlm`` for tests, ...) or ``lld``,
emotk's non-learned 50 Hz acoustic descriptors (:func:`emotk.features.acoustic.acoustic_targets`), which count
as an upstream with one layer. Before encoding, every waveform is cropped to its first ``max_seconds`` and
zero-padded to ``min_seconds`` (thesis: 30 s / 1 s), so the features depend only on :class:`SerFeatures`.

The extractor is registered as feature kind ``ser-input`` (:mod:`emotk.features.extract`). :func:`ensure_features`
keeps the features per utterance in ``<root>/ser-input-<hash12>/`` (an :class:`emotk.features.cache.UtteranceCache`,
``hash12`` taken over :class:`SerFeatures`): any manifest -- a subset of classes, a filtered target, another fold, a
superset -- reuses every utterance already stored (matched by id and file stat, else by the audio's sha256) and
encodes only the missing ones; ``ser evaluate`` and ``ser predict`` read the same cache. Each utterance stores
``hidden`` (L, T, D) (float16 by default: half the disk, and the head sees the same rounding at predict time).
Caches of emotk before this format (``<root>/set-<ids12>/ser-input-<hash12>/``, one folder per utterance set) are
not read: their utterances are simply extracted again (delete the ``set-*`` folders to reclaim the space).
:func:`build_feature_fn` is used by both extraction and ``ser predict``, so training and inference features
are computed by the same code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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


def check_upstream(cfg: SerFeatures) -> None:
    """Fail fast, loading nothing, when ``cfg.upstream`` names a registry model that cannot be loaded (unknown
    name, no local copy) or an emotk-trained upstream whose folder holds no export (``care:RUN``): ``ser train``
    checks this before it creates its output folder."""
    if cfg.upstream == LLD:
        return
    from emotk.features.upstream.base import UPSTREAM_PREFIXES, check_prefixed_upstream

    if ":" in cfg.upstream and cfg.upstream.partition(":")[0] in UPSTREAM_PREFIXES:
        check_prefixed_upstream(cfg.upstream)
        return
    from emotk.hub.load import check_available

    check_available(cfg.upstream, path=cfg.path)


def _build(cfg: SerFeatures, device: str) -> Callable[[Sequence[np.ndarray]], list[dict[str, np.ndarray]]]:
    return build_feature_fn(cfg, device)


def register() -> None:
    """Make ``ser-input`` a feature kind of :mod:`emotk.features.extract` (idempotent)."""
    from emotk.features.extract import EXTRACTORS, ExtractorSpec, register_extractor

    if KIND not in EXTRACTORS:
        register_extractor(ExtractorSpec(KIND, SerFeatures, "audio", _build,
                                         "SER upstream layers (or lld) of audio cropped/padded for the SUPERB head"))


def ensure_features(manifest: Any, cfg: SerFeatures, cache_root: str | os.PathLike, device: str = "cpu",
                    skip_bad: bool = False, progress: bool | None = None, batch_size: int = 8,
                    extractor: Callable[[Sequence[np.ndarray]], list[dict[str, np.ndarray]]] | None = None,
                    chunk_size: int | None = None) -> tuple[Any, dict[str, Any]]:
    """The features of every record of ``manifest``: reuse what ``cache_root/ser-input-<hash12>/`` holds, encode
    and store only the missing utterances; returns ``(CacheView, summary)``.

    The cache is per utterance (:class:`emotk.features.cache.UtteranceCache`): a subset, a superset or another
    manifest of the same audio reuses every stored utterance; an edited audio file is encoded again. Stored every
    ``chunk_size`` (64) utterances, so an interrupted extraction resumes where it stopped. ``skip_bad``: unreadable
    audio (or audio the upstream rejects) is skipped and listed in ``summary["skipped"]``, and retried by the next
    call. ``extractor``: a ready ``fn(wavs)`` used instead of building the upstream (tests). The summary has
    ``count`` (encoded now), ``reused`` (found in the cache), ``skipped``, timings and throughput.
    """
    import time

    from emotk.core.log import Progress, get_logger
    from emotk.data.audio import load_audio
    from emotk.errors import AudioError, DataError
    from emotk.features.cache import AudioSource, UtteranceCache
    from emotk.features.extract import _call_extractor, _hashed, make_config

    register()
    log = get_logger("features")
    cfg = make_config(KIND, cfg)
    if not len(manifest):
        raise DataError(f"{manifest.path}: the manifest has no utterances")
    cache = UtteranceCache.create(cache_root, KIND, _hashed(KIND, cfg), **({"chunk_size": chunk_size}
                                                                           if chunk_size else {}))
    t0 = time.perf_counter()
    found: dict[str, dict[str, Any]] = {}
    missing: list[tuple[str, AudioSource]] = []
    for rec in manifest:
        src = AudioSource(manifest.resolve_path(rec), rec.get("start"), rec.get("end"))
        entry = cache.lookup(rec["id"], src)
        if entry is None:
            missing.append((rec["id"], src))
        else:
            found[rec["id"]] = entry
    reused = len(found)
    if missing:
        log.info(f"features {KIND}: {reused} of {len(manifest)} utterance(s) cached in {cache.path}; "
                 f"encoding {len(missing)}")
    count, audio_seconds, skipped = 0, 0.0, {}
    fn = extractor
    with Progress(len(missing), f"features {KIND}", enabled=progress) as bar, \
            cache.writer(chunk_size) as writer:
        step = max(1, batch_size)
        for s in range(0, len(missing), step):
            batch = missing[s: s + step]
            ids, srcs, wavs = [], [], []
            for uid, src in batch:
                try:
                    wav = load_audio(src.path, sr=SAMPLE_RATE, start=src.start, end=src.end)
                except AudioError as e:
                    if not skip_bad:
                        raise
                    log.warning(f"skipping {uid}: {e}")
                    skipped[uid] = str(e)
                    continue
                ids.append(uid)
                srcs.append(src)
                wavs.append(wav)
            if wavs and fn is None:
                fn = build_feature_fn(cfg, device)
            outs = _call_extractor(lambda items, _ids: fn(items), wavs, ids, [x.path for x in srcs], skip_bad,
                                   skipped) if wavs else []
            if len(outs) != len(wavs):
                raise DataError(f"extractor '{KIND}' returned {len(outs)} results for {len(wavs)} inputs")
            for uid, src, wav, out in zip(ids, srcs, wavs, outs):
                if out is None:
                    continue
                writer.add(uid, src, out)
                count += 1
                audio_seconds += len(wav) / SAMPLE_RATE
            bar.advance(len(batch))
    if count:
        cache.refresh()
        for uid, src in missing:
            if uid not in skipped:
                entry = cache.lookup(uid, src)
                if entry is None:
                    raise DataError(f"{cache.path}: features of '{uid}' were written but cannot be found")
                found[uid] = entry
    seconds = time.perf_counter() - t0
    summary = {
        "kind": KIND, "cache": str(cache.path), "config_hash": cache.meta["config_hash"],
        "manifest_sha256": manifest.sha256, "utterances": len(manifest), "reused": reused, "count": count,
        "skipped": sorted(skipped), "audio_seconds": round(audio_seconds, 3), "seconds": round(seconds, 3),
        "throughput": {
            "audio_seconds_per_second": round(audio_seconds / seconds, 3) if seconds > 0 and audio_seconds else None,
            "utterances_per_second": round(count / seconds, 3) if seconds > 0 and count else None,
        },
        "complete": len(found) == len(manifest),
    }
    return cache.view(found), summary

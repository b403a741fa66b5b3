"""Feature extraction over a manifest into the sharded cache (:mod:`emotk.features.cache`).

Extractor registry: KIND -> (config schema, input type, builder). A builder takes the resolved config and
a device and returns ``fn(items) -> [{name: array}, ...]`` (``fn(items, ids)`` for specs with ``pass_ids``),
one dict per item, where items are 16 kHz waveforms (input ``audio``) or manifest records (input ``records``).

=================  ==============================================  =========================================
kind               config (``-c`` file / ``--set``)                arrays stored per utterance
=================  ==============================================  =========================================
upstream           model, path, layers (None = all), dtype         hidden (L, T, D)
f0                 :class:`emotk.features.f0.F0Config`            f0 (T,) Hz, 0 = unvoiced
acoustic           :mod:`emotk.features.acoustic`'s config         acoustic (T, D)
tokens             tokenizer (file), dedup                         tokens (T,), units (U,), durations (U,)
text               model, field, layer, max_length                 embedding (D,)
whisper-encoder    model, path, dtype                              frames (T, D)
=================  ==============================================  =========================================

All 50 Hz streams have ``emotk.features.frames.num_frames(samples)`` frames, except ``upstream`` which
keeps the model's own frame count (its length function). :func:`run_extraction` decodes audio with
:func:`emotk.data.audio.load_audio` (``start``/``end`` segments honoured), runs the extractor in batches,
writes through the cache (resumable, ``--shard i/N``) and returns a summary.
"""

from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Sequence

import numpy as np

from emotk.core.audio import SAMPLE_RATE
from emotk.errors import AudioError, ConfigError, UsageError

ExtractFn = Callable[[Sequence[Any]], list[dict[str, np.ndarray]]]


# ---------------------------------------------------------------------------------------------
# config schemas (hashed: they decide the cache folder)
# ---------------------------------------------------------------------------------------------
@dataclass
class UpstreamFeatures:
    """All (or chosen) hidden layers of an SSL upstream (:mod:`emotk.features.upstream`)."""

    model: str = "wavlm-base-plus"  # registry name (tiny-wavlm for tests)
    path: Optional[str] = None  # explicit local copy of the model
    layers: Optional[list[int]] = None  # None = all layers
    dtype: Literal["float32", "float16"] = "float32"  # storage precision


@dataclass
class TokensFeatures:
    """Content tokens from a trained k-means tokenizer file (its feature space is in the file)."""

    tokenizer: str = ""  # path of the .safetensors tokenizer (emotk features train-tokenizer)
    dedup: bool = True  # also store unique tokens and durations

    def validate(self) -> None:
        if not self.tokenizer:
            raise ConfigError("features.tokens: set the tokenizer file, e.g. --set tokenizer=tok.safetensors")


@dataclass
class TextFeatures:
    """Masked mean-pooled token states of a text encoder over each record's transcript (:mod:`.text`)."""

    model: str = "minilm"  # registry name or local HF folder (minilm ships offline)
    field: Literal["auto", "text", "asr_text"] = "auto"  # auto: text, else asr_text
    layer: Optional[int] = None  # hidden-state index; None = last layer
    max_length: int = 512


@dataclass
class WhisperEncoderFeatures:
    """50 Hz Whisper-encoder frames of a CTranslate2 model (default: the bundled tiny.en)."""

    model: str = "whisper-tiny.en-ct2"
    path: Optional[str] = None
    dtype: Literal["float32", "float16"] = "float32"


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------
@dataclass
class ExtractorSpec:
    """One extractor: ``schema`` is a dataclass or ``'module:Class'`` (imported when needed)."""

    kind: str
    schema: Any
    input: Literal["audio", "records"]
    build: Callable[[Any, str], ExtractFn]
    description: str = ""
    identity: Callable[[Any], dict[str, Any]] | None = None  # extra hashed facts (e.g. tokenizer sha256)
    uses_device: bool = True
    pass_ids: bool = False  # the built fn is called as fn(items, ids)

    def schema_class(self) -> type:
        if isinstance(self.schema, str):
            module, name = self.schema.split(":")
            return getattr(importlib.import_module(module), name)
        return self.schema


EXTRACTORS: dict[str, ExtractorSpec] = {}


def register_extractor(spec: ExtractorSpec) -> ExtractorSpec:
    """Add (or replace) an extractor kind."""
    EXTRACTORS[spec.kind] = spec
    return spec


def get_extractor(kind: str) -> ExtractorSpec:
    if kind not in EXTRACTORS:
        from emotk.core.suggest import did_you_mean

        raise UsageError(f"unknown feature kind '{kind}'{did_you_mean(kind, EXTRACTORS)}; choose one of "
                         f"{', '.join(sorted(EXTRACTORS))}")
    return EXTRACTORS[kind]


def make_config(kind: str, cfg: Any = None) -> Any:
    """A config instance for ``kind`` from None (defaults), a mapping (strict) or an instance; validated."""
    from emotk.core.config import from_dict

    schema = get_extractor(kind).schema_class()
    if cfg is None:
        cfg = schema()
    elif isinstance(cfg, dict):
        cfg = from_dict(schema, cfg, prefix="")
    elif not isinstance(cfg, schema):
        raise UsageError(f"features {kind}: config must be a {schema.__name__}, a mapping or None")
    for check in ("validate", "check"):
        if hasattr(cfg, check):
            getattr(cfg, check)()
    return cfg


def _np_dtype(name: str):
    return np.float16 if name == "float16" else np.float32


# ---- builders ----------------------------------------------------------------------------------
def _build_upstream(cfg: UpstreamFeatures, device: str) -> ExtractFn:
    from emotk.features.upstream import Upstream, extract

    up = Upstream.from_hub(cfg.model, path=cfg.path, device=device)
    dtype = _np_dtype(cfg.dtype)

    def fn(wavs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return [{"hidden": h} for h in extract(up, list(wavs), layers=cfg.layers, dtype=dtype)]

    return fn


def _build_f0(cfg: Any, device: str) -> ExtractFn:
    from emotk.features.f0 import extract_f0

    def fn(wavs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return [{"f0": extract_f0(w, SAMPLE_RATE, cfg)} for w in wavs]

    return fn


def _build_acoustic(cfg: Any, device: str) -> Callable[..., list[dict[str, np.ndarray]]]:
    from emotk.features.acoustic import acoustic_targets

    def fn(wavs: Sequence[np.ndarray], ids: Sequence[str]) -> list[dict[str, np.ndarray]]:
        # ids: "precomputed" targets are looked up by utterance id
        return [{"acoustic": acoustic_targets(w, SAMPLE_RATE, cfg, utt_id=u)} for w, u in zip(wavs, ids)]

    return fn


def _tokens_identity(cfg: TokensFeatures) -> dict[str, Any]:
    from emotk.core.io import sha256_file

    path = Path(cfg.tokenizer)
    if not path.is_file():
        from emotk.errors import DataError

        raise DataError(f"tokenizer file not found: {path}")
    return {"tokenizer_sha256": sha256_file(path)}


def _build_tokens(cfg: TokensFeatures, device: str) -> ExtractFn:
    from emotk.features.tokens import ContentFrames, KMeansTokenizer, dedup

    tok = KMeansTokenizer.load(cfg.tokenizer)
    frames = ContentFrames(tok.space, device=device)

    def fn(wavs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        out = []
        for t in tok.tokenize_batch(frames(list(wavs)), space=frames.space):
            item = {"tokens": t}
            if cfg.dedup:
                item["units"], item["durations"] = dedup(t)
            out.append(item)
        return out

    return fn


def _build_text(cfg: TextFeatures, device: str) -> ExtractFn:
    from emotk.features.text import TextEncoder, record_text

    enc = TextEncoder(cfg.model, layer=cfg.layer, max_length=cfg.max_length, device=device)

    def fn(records: Sequence[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
        emb = enc.encode([record_text(r, cfg.field) for r in records])
        return [{"embedding": e} for e in emb]

    return fn


def _build_whisper_encoder(cfg: WhisperEncoderFeatures, device: str) -> ExtractFn:
    from emotk.features.frames import fit_frames, num_frames
    from emotk.features.upstream import Upstream, extract

    up = Upstream.from_hub(cfg.model, path=cfg.path, device=device)
    dtype = _np_dtype(cfg.dtype)

    def fn(wavs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        layers = extract(up, list(wavs), layers=[-1])
        return [{"frames": fit_frames(h[0], num_frames(len(w)), pad_value=None).astype(dtype)}
                for h, w in zip(layers, wavs)]

    return fn


register_extractor(ExtractorSpec("upstream", UpstreamFeatures, "audio", _build_upstream,
                                 "hidden layers of an SSL upstream (WavLM/HuBERT/wav2vec2/Whisper/soft-HuBERT)"))
register_extractor(ExtractorSpec("f0", "emotk.features.f0:F0Config", "audio", _build_f0,
                                 "50 Hz F0 (YAAPT / WORLD), 0 where unvoiced", uses_device=False))
register_extractor(ExtractorSpec("acoustic", "emotk.features.acoustic:AcousticConfig", "audio", _build_acoustic,
                                 "50 Hz frame-level acoustic targets (CARE)", uses_device=False, pass_ids=True))
register_extractor(ExtractorSpec("tokens", TokensFeatures, "audio", _build_tokens,
                                 "k-means content tokens (+ de-duplicated units and durations)", _tokens_identity))
register_extractor(ExtractorSpec("text", TextFeatures, "records", _build_text,
                                 "mean-pooled text-encoder embedding of text / asr_text (CARE y_text)"))
register_extractor(ExtractorSpec("whisper-encoder", WhisperEncoderFeatures, "audio", _build_whisper_encoder,
                                 "50 Hz Whisper-encoder frames (CTranslate2)"))


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
def _hashed(kind: str, cfg: Any) -> dict[str, Any]:
    """What the cache key is taken over: the config, plus the extractor's identity facts if any."""
    from emotk.core.config import to_dict

    spec = get_extractor(kind)
    data = to_dict(cfg) if is_dataclass(cfg) else dict(cfg)
    if spec.identity is not None:
        data = {**data, "_identity": spec.identity(cfg)}
    return data


def cache_path(kind: str, out_dir: str | os.PathLike, cfg: Any = None) -> Path:
    """The cache folder ``out_dir/<kind>-<hash12>`` that :func:`run_extraction` writes for this config."""
    from emotk.features.cache import cache_dir_name

    cfg = make_config(kind, cfg)
    return Path(out_dir) / cache_dir_name(kind, _hashed(kind, cfg))[0]


def run_extraction(
    kind: str,
    manifest: Any,
    out_dir: str | os.PathLike,
    cfg: Any = None,
    shard: tuple[int, int] | None = None,
    resume: bool = False,
    progress: bool | None = None,
    *,
    overwrite: bool = False,
    skip_bad: bool = False,
    batch_size: int = 8,
    shard_size: int | None = None,
    device: str | None = "cpu",
    roots: dict[str, str] | None = None,
    extractor: ExtractFn | None = None,
) -> dict[str, Any]:
    """Extract ``kind`` features for every utterance of ``manifest`` into ``out_dir/<kind>-<hash12>/``.

    Args:
        kind: a registered extractor (see :data:`EXTRACTORS`).
        manifest: a manifest path or :class:`emotk.data.manifest.Manifest`.
        cfg: the extractor config (dataclass instance, mapping, or None for defaults).
        shard: ``(i, N)``: process only the storage shards ``j % N == i`` (see :mod:`.cache`); None: all.
        resume: skip complete shards; overwrite: recompute this worker's shards.
        progress: progress bar on stderr (None: only on a terminal).
        skip_bad: unreadable audio / missing text is skipped and listed instead of failing the run.
        batch_size: utterances per extractor call; shard_size: utterances per storage shard (default 64).
        device: torch device ("cpu", "cuda", "auto"); roots: ``${NAME}`` roots for manifest paths.
        extractor: a ready ``fn(items) -> [{name: array}]`` used instead of building ``kind``'s extractor
            (the cache key is still ``kind`` + ``cfg``).
    Returns a summary: kind, cache path, config hash, shard, counts (processed now / already cached /
    skipped ids), audio seconds, wall seconds and throughput (audio seconds per second, utterances per second).
    """
    from emotk.core.log import Progress, get_logger
    from emotk.core.runtime import device_name
    from emotk.core.shard import owned, parse_shard
    from emotk.data.audio import load_audio
    from emotk.data.manifest import Manifest
    from emotk.errors import DataError
    from emotk.features.cache import DEFAULT_SHARD_SIZE, FeatureCache

    log = get_logger("features")
    spec = get_extractor(kind)
    cfg = make_config(kind, cfg)
    shard_t = parse_shard(shard)
    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest, roots=roots)
    if not len(m):
        raise DataError(f"{m.path}: the manifest has no utterances")
    if spec.input == "audio":  # record extractors (text) work on text-only records
        m.require_audio(f"features extract {kind}")
    cache = FeatureCache.create(out_dir, kind, _hashed(kind, cfg), m.ids, manifest_sha256=m.sha256,
                                shard_size=shard_size or DEFAULT_SHARD_SIZE, shard=shard_t, resume=resume,
                                overwrite=overwrite)
    blocks = cache.blocks()
    mine = owned(len(blocks), shard_t)
    todo = [j for j in mine if not cache.is_complete(j)]
    by_id = m.by_id()
    summary: dict[str, Any] = {
        "kind": kind, "cache": str(cache.path), "config_hash": cache.meta["config_hash"],
        "manifest_sha256": m.sha256, "shard": f"{shard_t[0]}/{shard_t[1]}" if shard_t else None,
        "shards_owned": len(mine), "shards_already_complete": len(mine) - len(todo), "shards_written": 0,
        "utterances_cached_before": sum(len(blocks[j]) for j in mine if j not in todo),
    }
    t0 = time.perf_counter()
    count, audio_seconds, skipped = 0, 0.0, {}
    fn = extractor
    if fn is None and todo:
        fn = spec.build(cfg, device_name(device) if spec.uses_device else "cpu")
    with_ids = spec.pass_ids and extractor is None

    def call(items: list[Any], ids: list[str]) -> list[dict[str, np.ndarray]]:
        return fn(items, ids) if with_ids else fn(items)  # type: ignore[misc, call-arg]

    total = sum(len(blocks[j]) for j in todo)
    if total:
        log.info(f"features {kind}: extracting {total} utterance(s) into {cache.path}"
                 + (f" ({summary['utterances_cached_before']} already cached)"
                    if summary["utterances_cached_before"] else ""))
    with Progress(total, f"features {kind}", enabled=progress, unit="utterances") as bar:
        for j in todo:
            results: dict[str, dict[str, np.ndarray]] = {}
            shard_skipped: dict[str, str] = {}
            ids = blocks[j]
            step = max(1, batch_size)
            for s in range(0, len(ids), step):
                batch_ids, items = [], []
                for uid in ids[s : s + step]:
                    rec = by_id[uid]
                    if spec.input == "records":
                        batch_ids.append(uid)
                        items.append(rec)
                        continue
                    try:
                        wav = load_audio(m.resolve_path(rec), sr=SAMPLE_RATE, start=rec.get("start"),
                                         end=rec.get("end"))
                    except AudioError as e:
                        if not skip_bad:
                            raise
                        log.warning(f"skipping {uid}: {e}")
                        shard_skipped[uid] = str(e)
                        continue
                    batch_ids.append(uid)
                    items.append(wav)
                outs = _call_extractor(call, items, batch_ids, [_where(m, by_id[u]) for u in batch_ids],
                                       skip_bad, shard_skipped) if items else []
                if len(outs) != len(items):
                    raise DataError(f"extractor '{kind}' returned {len(outs)} results for {len(items)} inputs")
                for uid, item, out in zip(batch_ids, items, outs):
                    if out is None:
                        continue
                    results[uid] = out
                    count += 1
                    if spec.input == "audio":
                        audio_seconds += len(item) / SAMPLE_RATE
                bar.advance(len(ids[s : s + step]))
            cache.write_shard(j, results, shard_skipped)
            skipped.update(shard_skipped)
            summary["shards_written"] += 1
    seconds = time.perf_counter() - t0
    summary.update({
        "count": count, "skipped": sorted(skipped), "audio_seconds": round(audio_seconds, 3),
        "seconds": round(seconds, 3),
        "throughput": {
            "audio_seconds_per_second": round(audio_seconds / seconds, 3) if seconds > 0 and audio_seconds else None,
            "utterances_per_second": round(count / seconds, 3) if seconds > 0 and count else None,
        },
        "complete": len(cache.complete_shards()) == int(cache.meta["num_shards"]),
        "shards_recomputed": {str(j): why for j, why in sorted(cache.bad_shards.items())},
    })
    return summary


def _where(m: Any, rec: dict[str, Any]) -> str:
    """The record's audio path for messages (unresolved when its root is not set)."""
    from emotk.errors import DataError

    try:
        return str(m.resolve_path(rec))
    except DataError:
        return str(rec.get("path"))


def _call_extractor(fn: Callable[[list[Any], list[str]], list[dict[str, np.ndarray]]], items: list[Any], ids: list[str],
                    paths: list[str], skip_bad: bool, skipped: dict[str, str]) -> list[dict[str, np.ndarray] | None]:
    """Run ``fn(items, ids)`` on a batch; when it fails on bad input, find the culprit item by item.

    A bad item is skipped (``skipped[id] = reason``, result None) with ``skip_bad``; otherwise the error
    is re-raised with the utterance id and file in a one-line message.
    """
    from emotk.core.log import get_logger
    from emotk.errors import DataError

    try:
        return list(fn(items, ids))
    except DataError as e:  # AudioError is a DataError
        if len(items) > 1:
            out: list[dict[str, np.ndarray] | None] = []
            for item, uid, path in zip(items, ids, paths):
                out.extend(_call_extractor(fn, [item], [uid], [path], skip_bad, skipped))
            return out
        if not skip_bad:
            raise type(e)(f"{paths[0]} (id {ids[0]}): {e}") from None
        get_logger("features").warning(f"skipping {ids[0]}: {e}")
        skipped[ids[0]] = str(e)
        return [None]


def describe_extractors() -> list[dict[str, Any]]:
    """kind, input and description of every registered extractor (sorted by kind)."""
    return [{"kind": k, "input": s.input, "description": s.description} for k, s in sorted(EXTRACTORS.items())]


__all__ = [
    "EXTRACTORS", "ExtractorSpec", "TextFeatures", "TokensFeatures", "UpstreamFeatures", "WhisperEncoderFeatures",
    "cache_path", "describe_extractors", "get_extractor", "make_config", "register_extractor", "run_extraction",
]

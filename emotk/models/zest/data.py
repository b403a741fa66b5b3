"""S2S-ZEST corpus preparation (METHODS.md §6): manifest -> per-utterance content tokens (a trained
KMeansTokenizer), YAAPT F0 and ECAPA x-vectors, cached in ``<run>/cache/analysis.npz`` (keyed by the manifest,
tokenizer and F0 settings).

Every 50 Hz stream follows :mod:`emotk.features.frames`: an utterance of N samples has N // 320 token, F0 and
emotion frames.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from emotk.core.audio import HOP, SAMPLE_RATE
from emotk.errors import DataError, UsageError

log = logging.getLogger("emotk.zest")

SPLIT_ALIASES = {"train": "train", "valid": "valid", "dev": "valid", "val": "valid", "validation": "valid",
                 "test": "test"}
CACHE_FORMAT = 1


@dataclass
class Utterance:
    """One prepared utterance: waveform (N,) float32 16 kHz, tokens (T,) int64, f0 (T,) Hz, x-vector (D,),
    speaker / emotion class indices and the split; T = N // 320."""

    id: str
    wav: np.ndarray
    tokens: np.ndarray
    f0: np.ndarray
    xvector: np.ndarray
    speaker: int
    emotion: int
    split: str


@dataclass
class Corpus:
    """Prepared utterances plus the sorted label lists they index."""

    items: list[Utterance]
    speakers: list[str]
    emotions: list[str]
    manifest_sha256: str
    xvector_dim: int

    def split(self, name: str) -> list[Utterance]:
        return [u for u in self.items if u.split == name]


def _split_of(rec: dict[str, Any], where: str, valid_ids: set[str]) -> str:
    raw = rec.get("split")
    if raw is None:
        return "valid" if rec["id"] in valid_ids else "train"
    key = str(raw).lower()
    if key not in SPLIT_ALIASES:
        raise DataError(f"{where}: key 'split': {raw!r} is not one of train, valid, test")
    return SPLIT_ALIASES[key]


def content_tokens(wavs: Sequence[np.ndarray], tokenizer: Any, frames_fn: Any) -> list[np.ndarray]:
    """16 kHz waveforms -> content tokens (N_i // 320,) int64 with ``frames_fn`` (a ContentFrames)."""
    return [tokenizer.tokenize(f, tokenizer.space) for f in frames_fn(list(wavs))]


def prepare_corpus(cfg: Any, manifest: Any, cache_dir: str | os.PathLike, device: str = "cpu",
                   tokenizer: Any = None, xvectors: Any = None) -> Corpus:
    """Load, tokenize and analyse every utterance of ``manifest`` (a path or Manifest) for ``cfg`` (ZestConfig).

    Records need ``cfg.data.speaker_field`` and ``cfg.data.emotion_field``; ``split`` (train/valid/test;
    absent = train, or valid for the seeded ``data.valid_fraction``). Tokens, F0 (YAAPT, thesis settings) and
    x-vectors are cached in ``cache_dir/analysis.npz``; the cache is reused only when its key matches.
    Raises DataError naming file:line:key for a missing label, or when the training split is empty.
    """
    from emotk.core.io import atomic_path, sha256_json
    from emotk.data.audio import load_audio
    from emotk.data.manifest import Manifest
    from emotk.features.f0 import F0Config, extract_f0
    from emotk.features.frames import num_frames
    from emotk.features.tokens import ContentFrames
    from emotk.models.zest.speaker import XVectorExtractor

    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    m.require_audio("transfer train")
    d = cfg.data
    tok = tokenizer or load_tokenizer(cfg.tokens.tokenizer, cfg.tokens.n_clusters)
    where, splits, train = _corpus_plan(cfg, m)
    speakers = sorted({str(r[d.speaker_field]) for r in train})
    emotions = sorted({str(r[d.emotion_field]) for r in train})
    f0_cfg = F0Config(backend=cfg.f0.backend, alignment=cfg.f0.alignment)
    key = sha256_json({"format": CACHE_FORMAT, "manifest": m.sha256, "tokenizer": tok.meta,
                       "f0": dataclasses.asdict(f0_cfg), "ecapa": [cfg.speaker.ecapa, cfg.speaker.ecapa_path],
                       "max_seconds": d.max_seconds})
    cache = Path(cache_dir) / "analysis.npz"
    stored = _read_cache(cache, key)
    items: list[Utterance] = []
    new: dict[str, np.ndarray] = {}
    frames_fn = None
    for r in m:
        uid = r["id"]
        spk, emo = str(r[d.speaker_field]), str(r[d.emotion_field])
        split = splits[uid]
        if spk not in speakers or emo not in emotions:  # labels never seen in training cannot be classified
            if split == "train":
                raise DataError(f"{where[uid]}: unknown label")  # pragma: no cover - train defines the labels
            log.warning("%s: %s '%s' / %s '%s' not in the training split; skipped", where[uid], d.speaker_field, spk,
                        d.emotion_field, emo)
            continue
        try:
            wav = load_audio(m.resolve_path(r), start=r.get("start"), end=r.get("end"))
        except DataError as e:  # AudioError is a DataError
            raise type(e)(f"{where[uid]}: {e}") from None
        if d.max_seconds:
            wav = wav[: int(d.max_seconds * SAMPLE_RATE)]
        if num_frames(len(wav)) < 2:
            raise DataError(f"{where[uid]}: audio too short for 50 Hz analysis ({len(wav)} samples)")
        wav = wav[: num_frames(len(wav)) * HOP]
        if stored is not None and f"tokens/{uid}" in stored:
            tokens, f0, xvec = stored[f"tokens/{uid}"], stored[f"f0/{uid}"], stored[f"xvector/{uid}"]
        else:
            if frames_fn is None:
                frames_fn = ContentFrames(tok.space, device=device)
                xvectors = xvectors or XVectorExtractor(cfg.speaker.ecapa, cfg.speaker.ecapa_path, device=device)
            tokens = content_tokens([wav], tok, frames_fn)[0]
            f0 = extract_f0(wav, SAMPLE_RATE, f0_cfg)
            xvec = xvectors.batch([wav])[0]
        new[f"tokens/{uid}"], new[f"f0/{uid}"], new[f"xvector/{uid}"] = tokens, f0, xvec
        n = num_frames(len(wav))
        if len(tokens) != n or len(f0) != n:
            raise DataError(f"{where[uid]}: {len(tokens)} tokens and {len(f0)} F0 frames for {n} frames")
        items.append(Utterance(uid, wav, tokens.astype(np.int64), f0.astype(np.float32), xvec.astype(np.float32),
                               speakers.index(spk), emotions.index(emo), split))
    if stored is None or any(k not in stored for k in new):
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, __key__=np.array(key), **{k.replace("/", "|"): v for k, v in new.items()})
    dim = int(items[0].xvector.shape[0])
    return Corpus(items, speakers, emotions, m.sha256, dim)


def _read_cache(path: Path, key: str) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["__key__"]) != key:
                return None
            return {k.replace("|", "/"): z[k] for k in z.files if k != "__key__"}
    except Exception:  # a broken cache is rebuilt
        return None


def check_corpus(cfg: Any, manifest: Any) -> tuple[Any, Any]:
    """What :func:`prepare_corpus` checks before reading audio, reading no audio: the manifest loads, every
    record has its labels and a valid split, the training split is not empty, the tokenizer file fits.
    Returns ``(Manifest, tokenizer)`` to pass on to :func:`prepare_corpus`. Commands call it before they
    create their output folder."""
    from emotk.data.manifest import Manifest

    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    tok = load_tokenizer(cfg.tokens.tokenizer, cfg.tokens.n_clusters)
    _corpus_plan(cfg, m)
    return m, tok


def _corpus_plan(cfg: Any, m: Any) -> tuple[dict[str, str], dict[str, str], list[dict[str, Any]]]:
    """({id: "file:line"}, {id: split}, training records) of manifest ``m``; DataError naming file:line:key
    for a missing label or a bad split, or when the training split is empty."""
    from emotk.features.tokens import select_training_ids

    d = cfg.data
    valid_ids: set[str] = set()
    if d.valid_fraction > 0:
        unsplit = sorted(r["id"] for r in m if r.get("split") is None)
        if unsplit:
            valid_ids = set(select_training_ids(unsplit, d.valid_fraction, cfg.train.seed))
    where = {r["id"]: f"{m.path or 'manifest'}:{m.line_numbers[i] if m.line_numbers else i + 1}"
             for i, r in enumerate(m)}
    for r in m:
        for key in (d.speaker_field, d.emotion_field):
            if r.get(key) in (None, ""):
                raise DataError(f"{where[r['id']]}: key '{key}' is missing (S2S-ZEST needs speaker and emotion labels)")
    splits = {r["id"]: _split_of(r, where[r["id"]], valid_ids) for r in m}
    train = [r for r in m if splits[r["id"]] == "train"]
    if not train:
        raise DataError(f"{m.path or 'manifest'}: no training utterances (check the 'split' field)")
    return where, splits, train


def load_tokenizer(path: str, n_clusters: int | None = None) -> Any:
    """Read the KMeansTokenizer file; DataError when absent or when its K differs from ``n_clusters``."""
    from emotk.features.tokens import KMeansTokenizer

    if not path:
        raise UsageError("tokens.tokenizer: no tokenizer file given (train one with `emotk features train-tokenizer` "
                         "and pass --set tokens.tokenizer=FILE)")
    tok = KMeansTokenizer.load(path)
    if n_clusters is not None and tok.n_clusters != n_clusters:
        raise DataError(f"{path}: tokenizer has K={tok.n_clusters} but tokens.n_clusters is {n_clusters}")
    return tok



"""Emotion-transfer data augmentation for SER (thesis §5.3.4): ``emotk transfer augment``.

For every chosen target class, S2S-ZEST converts source utterances of the manifest's training part (any other
class, or ``source_classes``) to the emotion of references of the target class (also from the training part,
another speaker where possible). Each candidate is scored by emotion similarity: the cosine between the bundle
emotion encoder's utterance embedding e-bar of the converted audio and that of its reference. The ``per_class``
best candidates of each class are written as WAV files plus a manifest whose records carry ``emotion`` = the target
class, ``augmented: true``, ``source`` / ``reference`` ids, ``score`` and ``split: train``, ready for
``emotk ser train`` (merge it with the original training manifest).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from emotk.errors import DataError, UsageError

log = logging.getLogger("emotk.zest")

TRAIN_SPLITS = (None, "", "train")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (0 when either is all zeros)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def plan_candidates(sources: list[dict[str, Any]], references: list[dict[str, Any]], n: int,
                    rng: np.random.Generator) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Up to ``n`` distinct (source, reference) record pairs: sources cycle through a seeded permutation, each
    gets a seeded reference of another speaker when one exists (else any). Deterministic for a given rng."""
    out: list[tuple[dict[str, Any], dict[str, Any]]] = []
    seen: set[tuple[str, str]] = set()
    limit = min(n, len(sources) * len(references))
    order = rng.permutation(len(sources))
    attempts = 0
    while len(out) < limit and attempts < 20 * max(limit, 1):
        src = sources[order[attempts % len(sources)]]
        attempts += 1
        others = [r for r in references if r.get("speaker") != src.get("speaker")] or references
        ref = others[int(rng.integers(len(others)))]
        key = (src["id"], ref["id"])
        if key in seen:
            continue
        seen.add(key)
        out.append((src, ref))
    return out


def augment(bundle: Any, manifest: Any, classes: Sequence[str], out_dir: str | os.PathLike, per_class: int = 100,
            *, oversample: float = 2.0, source_classes: Sequence[str] | None = None, synth: str | None = None,
            seed: int = 0, emotion_field: str = "emotion", overwrite: bool = False) -> dict[str, Any]:
    """Generate, score and select emotion-converted utterances for SER data augmentation.

    Args:
        bundle: a loaded :class:`~emotk.models.zest.export.ZestBundle` or its folder.
        manifest: path or Manifest; only its training part (``split`` absent or ``train``) is used.
        classes: target emotion classes (each needs references in the training part).
        out_dir: output folder: ``wavs/<id>.wav`` and ``manifest.jsonl``.
        per_class: utterances kept per class (top-k by score).
        oversample: candidates generated per kept utterance (ceil(per_class * oversample) per class).
        source_classes: classes the sources are drawn from (default: every class but the target).
        synth: ``world`` or ``bigvgan`` (default: the bundle's ``transfer.synth``).
        seed: seeds the pairing.
        overwrite: replace an existing ``manifest.jsonl`` (else OutputExistsError).

    Returns: JSON-ready summary: per class candidates / kept / mean score of all and of the kept, the manifest path.
    Raises UsageError for bad counts, DataError when a class has no references or no sources.
    """
    from emotk.core.io import check_writable
    from emotk.data.audio import load_audio, save_audio
    from emotk.data.manifest import Manifest
    from emotk.models.zest import infer
    from emotk.models.zest.export import load_bundle

    if per_class < 1 or oversample < 1:
        raise UsageError(f"per_class must be >= 1 and oversample >= 1 (got {per_class}, {oversample})")
    classes = list(dict.fromkeys(str(c) for c in classes))
    if not classes:
        raise UsageError("no target classes given (e.g. --classes happy,sad)")
    if not hasattr(bundle, "analysis"):
        bundle = load_bundle(bundle)
    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    m.require_audio("transfer augment")
    synth = synth or bundle.config.transfer.synth
    out_dir = Path(out_dir)
    out_manifest = out_dir / "manifest.jsonl"
    check_writable(out_manifest, overwrite)
    train = sorted((r for r in m if r.get("split") in TRAIN_SPLITS and r.get(emotion_field) not in (None, "")),
                   key=lambda r: r["id"])
    known = sorted({str(r[emotion_field]) for r in train})
    for c in classes:
        if c not in known:
            raise DataError(f"{m.path or 'manifest'}: class '{c}' has no training utterances to use as references "
                            f"(classes: {', '.join(known)})")
    sources_cache: dict[str, Any] = {}
    emb_cache: dict[str, np.ndarray] = {}

    def load(rec: dict[str, Any]) -> np.ndarray:
        return infer.check_input(load_audio(m.resolve_path(rec), start=rec.get("start"), end=rec.get("end")),
                                    str(rec["id"]))

    records, per = [], {}
    for k, c in enumerate(classes):
        refs = [r for r in train if str(r[emotion_field]) == c]
        allowed = set(source_classes) if source_classes else None
        srcs = [r for r in train if str(r[emotion_field]) != c and (allowed is None or r[emotion_field] in allowed)]
        if not srcs:
            raise DataError(f"{m.path or 'manifest'}: no source utterances for target class '{c}'")
        rng = np.random.default_rng([seed, k])
        cands = plan_candidates(srcs, refs, math.ceil(per_class * oversample), rng)
        scored = []
        for src_rec, ref_rec in cands:
            sid, rid = src_rec["id"], ref_rec["id"]
            if sid not in sources_cache:
                sources_cache[sid] = infer.analyse_source(bundle, load(src_rec), f0=synth != "world")
            if rid not in emb_cache:
                emb_cache[rid] = infer.analyse_reference(bundle, load(ref_rec))
            src, ref = sources_cache[sid], emb_cache[rid]
            conv = infer.convert(bundle, src, ref)
            wav = infer.synthesise(bundle, src, ref, conv, synth)
            if wav.size < infer.MIN_SECONDS * infer.SAMPLE_RATE:
                continue
            score = cosine(infer.analyse_reference(bundle, wav).emotion_embedding, ref.emotion_embedding)
            scored.append((score, sid, rid, src_rec, wav))
        scored.sort(key=lambda x: (-x[0], x[1], x[2]))
        kept = scored[:per_class]
        for rank, (score, sid, rid, src_rec, wav) in enumerate(kept):
            uid = f"aug-{c}-{rank:05d}"
            rel = f"wavs/{uid}.wav"
            save_audio(out_dir / rel, wav, infer.SAMPLE_RATE)
            rec = {"id": uid, "path": rel, "dataset": "augmented", "sr": infer.SAMPLE_RATE,
                   "duration": round(wav.size / infer.SAMPLE_RATE, 3), emotion_field: c, "split": "train",
                   "augmented": True, "source": sid, "reference": rid, "score": round(score, 5)}
            for key in ("speaker", "gender", "language", "text", "sentence"):
                if src_rec.get(key) is not None:
                    rec[key] = src_rec[key]
            records.append(rec)
        per[c] = {"candidates": len(scored), "kept": len(kept),
                  "mean_score_all": round(float(np.mean([s[0] for s in scored])), 4) if scored else None,
                  "mean_score_kept": round(float(np.mean([s[0] for s in kept])), 4) if kept else None}
        log.info("augment %s: kept %d of %d candidates", c, len(kept), len(scored))
    Manifest.from_records(records).save(out_manifest)
    return {"manifest": str(out_manifest), "utterances": len(records), "classes": per, "synth": synth,
            "out_dir": str(out_dir)}

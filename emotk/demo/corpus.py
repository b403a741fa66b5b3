"""The data stages of ``emotk demo``: corpus (synthesise or reuse the demo corpus), validate, split."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from emotk.core.log import get_logger

log = get_logger("demo")

SUMMARY_KEYS = ("utterances", "speakers", "styles", "hours", "config_hash")


def corpus_stage(synth: Any, corpus: Path) -> dict[str, Any]:
    """Build (or reuse) the demo corpus of :class:`emotk.data.synth.SynthConfig` ``synth`` in folder ``corpus``.

    Returns its utterance / speaker / style counts, hours, config hash, the manifest path and seconds.
    """
    from emotk.data.synth import synthesize

    t0 = time.perf_counter()
    log.info(f"demo: corpus -> {corpus}")
    synth_summary = synthesize(corpus, synth, overwrite=False)
    return {**{k: synth_summary[k] for k in SUMMARY_KEYS if k in synth_summary},
            "manifest": str(corpus / "manifest.jsonl"), "seconds": round(time.perf_counter() - t0, 2)}


def validate_stage(manifest_path: Path) -> dict[str, Any]:
    """Validate the corpus manifest (with the ``label_map.json`` beside it); DataError naming the first error."""
    from emotk.data.labels import LabelMap
    from emotk.data.validate import validate_manifest
    from emotk.errors import DataError

    t0 = time.perf_counter()
    lm_path = Path(manifest_path).parent / "label_map.json"
    report = validate_manifest(manifest_path, label_map=LabelMap.load(lm_path) if lm_path.exists() else None)
    result = {"ok": report.ok, "errors": len(report.errors), "warnings": len(report.warnings),
              "seconds": round(time.perf_counter() - t0, 2)}
    if not report.ok:
        raise DataError(f"demo corpus failed validation: {report.errors[0].format(manifest_path)}")
    return result


def split_stage(manifest_path: Path, protocol_path: Path, folds: int, seed: int) -> dict[str, Any]:
    """Speaker-independent folds (one validation speaker each) saved as ``protocol_path``; returns the protocol
    hash, the utterances per split of every fold and seconds."""
    from emotk.data.manifest import Manifest
    from emotk.data.protocols import make_folds

    t0 = time.perf_counter()
    m = Manifest.load(manifest_path)
    proto = make_folds(m, n_folds=folds, unit="speaker", seed=seed, n_valid=1, name="demo-speaker-folds",
                       dataset="demo")
    proto.save(protocol_path)
    per_fold = {f: {k: len(v) for k, v in proto.assign(m, f).items()} for f in proto.fold_names}
    return {"protocol_sha256": proto.sha256, "folds": per_fold, "seconds": round(time.perf_counter() - t0, 2)}

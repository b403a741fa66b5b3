"""The care stage of ``emotk demo``: pre-train a tiny CARE on the demo corpus, then probe it with SUPERB SER.

What it shows: the same SUPERB SER head (configs/ser/demo.yaml, every speaker fold of the demo protocol) on the
layers of (a) the tiny CARE after ``steps`` pre-training steps and (b) the very same architecture and initial
weights before any step. The untrained export is the model the trainer starts from: the trainer seeds with
``train.seed`` and then calls ``CareTask.build_model``; :func:`emotk.models.care.task.initial_model` does the
same and this stage writes that model as an export, so "untrained" differs from "care" only by the
pre-training steps.

Pre-training recipe: configs/pretrain/care-tiny.yaml (random tiny-wavlm trunk + tiny-roberta layers, y_text from
the bundled MiniLM on the demo's ``text``, 32-d lld acoustic targets, 1 s crops, batch 8) with ``train.max_steps``
= ``steps``. Output folders under ``out_dir``: ``pretrain/`` (the CARE run), ``untrained/`` (export of the initial
weights), ``ser-care/`` and ``ser-untrained/`` (the SER runs), ``features/`` (the target cache).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from emotk.core.log import get_logger
from emotk.errors import DataError

log = get_logger("demo")

PRETRAIN_CONFIG = "pretrain/care-tiny"
SER_CONFIG = "ser/demo"


def care_demo_stage(manifest_path: Path, protocol_path: Path, out_dir: Path, seed: int, steps: int = 300,
                    threads: int | None = None) -> dict[str, Any]:
    """Pre-train the tiny CARE for ``steps`` steps on ``manifest_path`` and run SUPERB SER on every fold of
    ``protocol_path`` with the trained and with the untrained (initial-weight) model.

    manifest_path: demo manifest (records with audio, ``text`` and ``emotion``); protocol_path: its speaker folds;
    out_dir: stage folder (replaced run by run); seed: pre-training and SER seed; steps: optimiser steps (>= 1);
    threads: torch threads for pre-training and SER (None = the configs' ``runtime.threads``).
    Returns {"care": {"upstream", "folds", "test": {metric: {"mean", "std"}}}, "untrained": {same},
    "pretrain": {"steps", "semantic_loss": {"first", "last"}, "acoustic_loss": {"first", "last"}, "seconds"},
    "seconds"}; loss "first"/"last" are the first and last logged training means (``train.log_every_steps``).
    """
    import torch

    from emotk.core.config import resolve
    from emotk.core.runtime import keep_threads
    from emotk.data.manifest import Manifest
    from emotk.demo.ser import ser_stage
    from emotk.models.care.export import write_export
    from emotk.models.care.task import initial_model
    from emotk.recipes import find_config, task_spec

    if steps < 1:
        raise DataError(f"care demo: steps must be >= 1, got {steps}")
    manifest_path, protocol_path, out_dir = Path(manifest_path), Path(protocol_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    overrides = [f"data.manifest={manifest_path}", f"train.seed={seed}", f"train.max_steps={steps}",
                 "train.epochs=1000000", "train.log_every_steps=10", "train.eval_every_epochs=1000000",
                 f"features.cache_dir={out_dir / 'features'}", "runtime.device=cpu"]
    if threads is not None:
        overrides.append(f"runtime.threads={threads}")
    spec = task_spec("pretrain.care")
    resolved = resolve(spec.schema_class(), spec.name, find_config(PRETRAIN_CONFIG), overrides)

    # the untrained export: the trainer's own initialisation, built from the same targets (one extraction)
    with keep_threads():
        if threads is not None:
            torch.set_num_threads(threads)
        model = initial_model(resolved, out_dir / "pretrain")
    write_export(out_dir / "untrained", model, {"source_run": None, "config_hash": resolved.hash, "steps": 0,
                                                "manifest": str(manifest_path),
                                                "manifest_sha256": Manifest.load(manifest_path).sha256})

    t0 = time.perf_counter()
    result = spec.train_fn()(resolved, out_dir / "pretrain", overwrite=True, argv=["emotk", "demo"])
    pre_seconds = time.perf_counter() - t0
    pre = {"steps": result.get("steps"), **_loss_curve(out_dir / "pretrain" / "metrics.jsonl"),
           "seconds": round(pre_seconds, 2)}

    out: dict[str, Any] = {"pretrain": pre}
    for name, upstream in (("care", f"care:{out_dir / 'pretrain'}"), ("untrained", f"care:{out_dir / 'untrained'}")):
        ser = ser_stage(manifest_path, protocol_path, out_dir / f"ser-{name}", seed, config=SER_CONFIG,
                        upstream=upstream, threads=threads)
        out[name] = {k: v for k, v in ser.items() if k != "classes"}
    out["seconds"] = round(time.perf_counter() - t_all, 2)
    log.info(f"demo: care stage {out['seconds']} s (pre-training {pre['seconds']} s, {pre['steps']} steps)")
    return out


def _loss_curve(metrics_path: Path) -> dict[str, dict[str, float]]:
    """metrics.jsonl of a CARE run -> {"semantic_loss": {"first", "last"}, "acoustic_loss": {...}} of the logged
    training means (DataError when the run logged none)."""
    lines = [json.loads(x) for x in metrics_path.read_text(encoding="utf-8").splitlines() if x.strip()]
    train = [x for x in lines if x.get("split") == "train" and "semantic_loss" in x and "acoustic_loss" in x]
    if not train:
        raise DataError(f"{metrics_path}: no training losses were logged (too few steps for train.log_every_steps?)")
    return {k: {"first": round(float(train[0][k]), 6), "last": round(float(train[-1][k]), 6)}
            for k in ("semantic_loss", "acoustic_loss")}


__all__ = ["care_demo_stage"]

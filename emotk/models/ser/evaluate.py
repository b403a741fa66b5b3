"""``ser evaluate``: score the selected checkpoint of every run of a finished ``ser train`` folder again.

Reports land beside each run (``<run>/eval/<name>/``: report.json, predictions.jsonl, confusion matrix), where
``name`` is the split, or the split plus the other manifest's name and hash; the aggregate over runs is returned
(and, for an experiment folder, written as ``OUT/evaluate-<name>.json``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from emotk.core.io import atomic_write_json
from emotk.errors import DataError, UsageError


def find_runs(run_dir: str | os.PathLike) -> list[Path]:
    """The training runs under ``run_dir``: its ``runs/*`` folders, or ``run_dir`` itself when it is one run."""
    run_dir = Path(run_dir)
    if (run_dir / "runs").is_dir():
        found = sorted(p for p in (run_dir / "runs").iterdir() if (p / "run.json").is_file())
        if found:
            return found
    if (run_dir / "run.json").is_file() and (run_dir / "ckpt").is_dir():
        return [run_dir]
    raise DataError(f"{run_dir}: no SER training runs here (expected runs/*/run.json from `emotk ser train`)")


def evaluate(run_dir: str | os.PathLike, *, manifest: str | None = None, split: str = "test",
             roots: dict[str, str] | None = None, device: str | None = None) -> dict[str, Any]:
    """Score the selected checkpoint of every run under ``run_dir`` on ``split`` (``train``/``valid``/``test``, or
    ``all`` = every usable utterance), optionally of another ``manifest``; writes ``<run>/eval/<name>/`` reports
    and returns ``{"runs": [...], "aggregate": {metric: {mean, std, values}}, ...}``."""
    from emotk.core.config import from_dict
    from emotk.core.io import sha256_file
    from emotk.core.runtime import device_name
    from emotk.metrics import aggregate
    from emotk.models.ser.config import SerConfig
    from emotk.models.ser.data import SerItem, prepare
    from emotk.models.ser.task import FeatureStore, SerTask, drop_skipped, run_outputs, write_eval
    from emotk.train.checkpoint import load_model_weights

    if split not in ("train", "valid", "test", "all"):
        raise UsageError(f"--split {split!r}: choose train, valid, test or all")
    if manifest is not None and not Path(manifest).is_file():
        raise DataError(f"manifest not found: {manifest}")
    runs = find_runs(run_dir)
    device = device_name(device)
    root = Path(run_dir)
    reports, entries = [], []
    cache_store: dict[str, Any] = {}
    name = split if manifest is None else f"{split}-{Path(manifest).stem}-{sha256_file(manifest)[:8]}"
    for sub in runs:
        meta = json.loads((sub / "run.json").read_text(encoding="utf-8"))
        data = {k: v for k, v in meta["config"].items() if k not in ("task", "runtime")}
        cfg = from_dict(SerConfig, data)
        if manifest is not None:
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, manifest=str(manifest)))
        try:
            prepared = prepare(cfg, cfg.data.manifest, roots=roots)
        except DataError as e:
            if manifest is None or "is for dataset" not in str(e):
                raise
            # another corpus: the run's protocol does not apply; use the records' own split (or --split all)
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, protocol="", fold=""))
            prepared = prepare(cfg, cfg.data.manifest, roots=roots)
        run_classes = meta.get("classes") or _parent_meta(sub).get("classes")
        if cfg.task_type == "classification" and run_classes and prepared.classes != run_classes:
            unknown = sorted(set(prepared.targets.values()) - set(run_classes))
            if unknown:
                raise DataError(f"labels {unknown} of {cfg.data.manifest} are not classes of the model "
                                f"({', '.join(run_classes)})")
            prepared.classes = list(run_classes)
        if split == "all":
            index = {c: i for i, c in enumerate(prepared.classes or [])}
            items = [SerItem(r["id"], index[prepared.targets[r["id"]]] if cfg.task_type == "classification"
                             else prepared.targets[r["id"]]) for r in prepared.manifest]
            splits = {"train": items, "valid": [], "test": [], "all": items}
        else:
            splits = prepared.splits(cfg.data.fold or None)
        key = str(cfg.feature_config()) + prepared.manifest.sha256
        if key not in cache_store:
            parent = _parent_dir(sub)
            cache_root = Path(cfg.upstream.cache_dir) if cfg.upstream.cache_dir else parent / "features"
            from emotk.models.ser.features import ensure_features

            cache, _ = ensure_features(prepared.manifest, cfg.feature_config(), cache_root, device=device)
            cache_store[key] = FeatureStore(cache)
        store = cache_store[key]
        splits = drop_skipped(splits, store)
        if not splits.get(split):
            raise DataError(f"{sub.name}: the {split} split is empty for {cfg.data.manifest}")
        counts = meta.get("class_counts")
        if counts and SerTask.needs_class_counts(cfg.loss.name) and len(counts) == len(prepared.classes or []):
            # the training split's counts, so a weighted loss is reported as during training
            cfg = dataclasses.replace(cfg, loss=dataclasses.replace(
                cfg.loss, options={**cfg.loss.options, "class_counts": counts}))
        task = SerTask(cfg, {**splits, "train": splits["train"] or splits[split]}, store,
                       classes=prepared.classes, target_names=prepared.target_names)
        model = task.make_model(stats=False)  # statistics and weights come from the checkpoint
        weights = load_model_weights(sub, model)
        outputs = run_outputs(task, model, task.dataset(split), device, cfg.train.batch_size)
        info = {"run": sub.name, "split": split, "fold": cfg.data.fold or None, "seed": cfg.train.seed,
                "checkpoint": str(weights.parent.relative_to(sub)), **prepared.inputs(),
                "config_hash": meta.get("config_hash")}
        report = write_eval(sub / "eval" / name, task, outputs, info)
        reports.append(report["metrics"])
        entries.append({"run": sub.name, "report": str((sub / "eval" / name / "report.json").relative_to(root))
                        if sub != root else str(Path("eval") / name / "report.json"), "metrics": report["metrics"]})
    result = {"run_dir": str(run_dir), "split": split, "manifest": str(manifest) if manifest else None,
              "runs": entries, "aggregate": aggregate(reports, keys=sorted(reports[0]))}
    if runs[0] != root:  # an experiment folder: also keep the aggregate beside summary.json
        atomic_write_json(root / f"evaluate-{name}.json", result)
    return result


def _parent_dir(sub: Path) -> Path:
    return sub.parent.parent if sub.parent.name == "runs" else sub


def _parent_meta(sub: Path) -> dict[str, Any]:
    p = _parent_dir(sub) / "run.json"
    try:
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() and p.parent != sub else {}
    except json.JSONDecodeError:
        return {}

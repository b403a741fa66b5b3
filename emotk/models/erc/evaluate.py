"""``emotk erc evaluate``: score the exported run(s) of an ``erc train`` folder on a split, or on another corpus.

The runs' own config says how turns are embedded (vectors come from the experiment's feature cache, made when
missing) and which protocol and labels apply; ``--data OTHER`` scores another conversation manifest with its own
``split`` field (or ``--protocol``). Each run gets ``runs/<run>/eval/<name>/`` (report.json, predictions.jsonl,
confusion matrix; ``name`` = the split, or ``<manifest stem>-<split>``): the training's own split reports are
rescored in place, an earlier ``erc evaluate`` is never replaced without ``overwrite``; the result aggregates the
runs (mean ± sample std).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from emotk.core.runs import report_written_by
from emotk.errors import DataError, OutputExistsError, UsageError

SPLITS = ("train", "valid", "test", "all")
WRITTEN_BY = "emotk erc evaluate"  # report.json's written_by: what an evaluation without overwrite may not replace


def _runs(folder: Path) -> list[Path]:
    if (folder / "runs").is_dir():
        runs = sorted(p for p in (folder / "runs").iterdir() if (p / "export").is_dir())
        if runs:
            return runs
    if (folder / "export").is_dir() and (folder / "run.json").is_file():
        return [folder]
    raise DataError(f"{folder}: no ERC runs here (expected runs/*/export or export/ from `emotk erc train`)")


def evaluate(run_dir: str | os.PathLike, manifest: str | os.PathLike | None = None, split: str = "test",
             protocol: str | None = None, device: str = "cpu", overwrite: bool = False,
             roots: dict[str, str] | None = None) -> dict[str, Any]:
    """Score every run of ``run_dir`` on ``split`` of its own data or of ``manifest``; returns the aggregate."""
    import torch

    from emotk.core.config import from_dict
    from emotk.metrics import aggregate
    from emotk.models.erc.config import ErcConfig, finetuned
    from emotk.models.erc.embed import ensure_embeddings, load_vectors
    from emotk.models.erc.export import load_export
    from emotk.models.erc.scoring import Scorer, write_eval
    from emotk.models.erc.task import ErcTask, prepare

    if split not in SPLITS:
        raise UsageError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    folder = Path(run_dir)
    runs = _runs(folder)
    top = folder if (folder / "runs").is_dir() else folder.parent.parent
    meta = json.loads((runs[0] / "run.json").read_text(encoding="utf-8"))
    raw = {k: v for k, v in meta["config"].items() if k not in ("task", "runtime")}
    cfg = from_dict(ErcConfig, raw)
    name = split if manifest is None else f"{Path(manifest).stem}-{split}"
    targets = [r / "eval" / name for r in runs]
    # training's own reports are rescored; an earlier evaluation, or a report that cannot be read, is kept
    existing = [t for t in targets if t.exists() and report_written_by(t) in (WRITTEN_BY, None)]
    if existing and not overwrite:
        raise OutputExistsError(f"{existing[0]} already holds an `erc evaluate` report; pass --overwrite to "
                                "replace it")
    classes = json.loads((runs[0] / "export" / "config.json").read_text(encoding="utf-8"))["classes"]
    if manifest is not None:  # the model's classes, whatever the other corpus's training split holds
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(
            cfg.data, manifest=str(manifest), protocol=protocol or "manifest-split", fold="",
            classes=None if cfg.data.label_map else classes))
    prepared = prepare(cfg, cfg.data.manifest, roots, need_train=False)
    splits = prepared["splits"]
    if split == "all":
        convs = [c for s in ("train", "valid", "test") for c in splits[s]]
        splits = {**splits, "all": dataclasses.replace(splits["train"], conversations=convs)}
    if not len(splits[split]):
        raise DataError(f"{cfg.data.manifest}: no {split} conversation to score (protocol {cfg.data.protocol})")
    cache_root = Path(cfg.embed.cache_dir) if cfg.embed.cache_dir else top / "features"
    stage1 = finetuned(cfg)  # a fine-tuned stage I: each run's own utterance outputs (cached per export)
    vectors: dict[str, Any] = {}
    if stage1 is None:
        summaries = ensure_embeddings(cfg, prepared["manifest"], cache_root, device=device)
        vectors = load_vectors(cfg, summaries, splits[split].ids)
    dialogues = {u: c.name for c in splits[split] for u in c.ids}
    reports = []
    for run, target in zip(runs, targets):
        export_meta = json.loads((run / "export" / "config.json").read_text(encoding="utf-8"))
        classes = export_meta["classes"]
        if classes != prepared["classes"]:
            raise DataError(f"{run}: the model's classes {classes} differ from the data's {prepared['classes']} "
                            "(another label map?)")
        outputs: dict[str, list] = {"outputs": [], "target": [], "ids": []}
        convs = list(splits[split])
        if stage1 is not None:
            task: Any = Scorer(classes)
            outputs = _stage1_outputs(run / "export", prepared["manifest"], convs, cache_root, device)
            convs = []
        else:
            model, export_meta, _ = load_export(run / "export", device)
            task = ErcTask(cfg, {split: splits[split]}, vectors, classes)
        with torch.no_grad():
            for start in range(0, len(convs), 16):
                batch = task.collate(convs[start:start + 16])
                feats = {m: t.to(device) for m, t in batch["features"].items()}
                step = task.validation_step(model, {**batch, "features": feats, "mask": batch["mask"].to(device),
                                                    "speaker": batch["speaker"].to(device)})
                for key in outputs:
                    outputs[key].extend(step[key])
        if target.exists():
            shutil.rmtree(target)
        info = {"run": run.name, "split": split, "data": str(cfg.data.manifest), **prepared["inputs"],
                "config_hash": export_meta.get("config_hash"), "written_by": WRITTEN_BY}
        report = write_eval(target, task, outputs, info, dialogues)
        reports.append({"run": run.name, "report": str(target.relative_to(folder) if target.is_relative_to(folder)
                                                        else target), "metrics": report["metrics"]})
    metrics = [r["metrics"] for r in reports]
    agg = aggregate(metrics, keys=sorted(metrics[0]), ddof=1 if len(metrics) > 1 else 0)
    return {"run_dir": str(folder), "split": split, "data": str(cfg.data.manifest), "name": name,
            "std_kind": "sample std (ddof 1) over runs" if len(metrics) > 1 else "one run",
            "runs": reports, "aggregate": agg}


def _stage1_outputs(export: Path, manifest: Any, convs: list[Any], cache_root: Path, device: str) -> dict[str, list]:
    """A fine-tuned stage-I export's logits of every turn of ``convs`` (each turn a group of one, as in training's
    reports), from the feature cache (:func:`emotk.models.erc.finetune.stage1_cache`, made when missing)."""
    import torch

    from emotk.features.cache import FeatureCache
    from emotk.models.erc.stage1 import stage1_cache

    cache = FeatureCache(stage1_cache(export, manifest, cache_root, device=device)["cache"])
    outputs: dict[str, list] = {"outputs": [], "target": [], "ids": []}
    for conv in convs:
        for uid, label in zip(conv.ids, conv.labels):
            outputs["outputs"].append(torch.as_tensor(cache.get(uid, "logits")).float()[None])
            outputs["target"].append(torch.tensor([label], dtype=torch.long))
            outputs["ids"].append([uid])
    return outputs

"""``ser train`` / ``ser evaluate``: folds x seeds of SUPERB SER runs, test reports and the aggregated summary.

Layout of an output folder ``OUT`` (``emotk ser train -o OUT``)::

    OUT/run.json, config.yaml, log.txt        the whole experiment (resolved config, inputs' hashes, plan)
    OUT/features/set-<ids12>/ser-input-<h12>/ frozen-upstream features, extracted once, shared by every run
    OUT/runs/<fold>-seed<S>/                  one training run per (fold, seed): run.json, metrics.jsonl,
                                              ckpt/ (step-N + best), export/, eval/test/ (report.json,
                                              predictions.jsonl, confusion_matrix.json + .png), result.json
    OUT/summary.json                          test (and best-validation) metrics: mean ± std over all runs,
                                              the values per run and per fold, with protocol/manifest hashes
    OUT/export/                               the inference bundle of the run with the best validation score

Model selection uses the validation split only (``train.select_metric``); test numbers are computed once,
with the selected checkpoint. ``--resume`` skips finished runs (``result.json``) and continues an interrupted
one from its last checkpoint; the result is the same as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from emotk.core.io import atomic_write_json, atomic_write_text
from emotk.core.log import get_logger
from emotk.errors import DataError, UsageError

log = get_logger("ser")

RESULT = "result.json"
SUMMARY = "summary.json"


# ---- helpers ----------------------------------------------------------------------------------------------------
def resolve_device(device: str | None) -> str:
    """``auto``/None -> ``cuda`` when available else ``cpu``; anything else unchanged."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def _set_threads(threads: int, local_world_size: int = 1) -> None:
    """Apply ``runtime.threads`` (0 = the cores this process may use) to torch before any extraction."""
    import torch

    from emotk.train.trainer import resolve_threads

    n = resolve_threads(threads, local_world_size)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def fold_plan(prepared: Any, fold: str) -> list[str | None]:
    """Folds to run for ``data.fold``: ``all`` -> every fold, "" -> the only fold, else that fold (name)."""
    proto = prepared.protocol
    if proto is None:
        if fold not in ("", None):
            raise UsageError(f"data.fold={fold!r} needs a protocol (--protocol NAME|FILE)")
        return [None]
    if fold == "all":
        return list(proto.fold_names)
    key: str | int | None = None if fold in ("", None) else (int(fold) if str(fold).isdigit() else str(fold))
    return [proto.fold(key).name]


def run_name(fold: str | None, seed: int) -> str:
    return f"{fold or 'split'}-seed{seed}"


def _sub_config(cfg: Any, fold: str | None, seed: int) -> Any:
    return dataclasses.replace(cfg, seeds=1, data=dataclasses.replace(cfg.data, fold=fold or ""),
                               train=dataclasses.replace(cfg.train, seed=seed))


def _features(cfg: Any, prepared: Any, cache_root: Path, device: str, skip_bad: bool) -> tuple[Any, dict]:
    """Extract once (rank 0; the others wait) and open the cache on every process."""
    from emotk.models.ser.features import ensure_features
    from emotk.train import distributed as dist

    summary: dict[str, Any] = {}
    if dist.is_main():
        cache, summary = ensure_features(prepared.manifest, cfg.feature_config(), cache_root, device=device,
                                         skip_bad=skip_bad)
    dist.barrier()
    if not dist.is_main():
        cache, summary = ensure_features(prepared.manifest, cfg.feature_config(), cache_root, device=device,
                                         skip_bad=skip_bad)
    return cache, summary


def _drop_skipped(splits: dict[str, list], store: Any) -> dict[str, list]:
    out = {}
    for name, items in splits.items():
        kept = [it for it in items if it.id in store]
        if len(kept) < len(items):
            log.warning(f"ser: {len(items) - len(kept)} {name} utterance(s) have no features (skipped audio)")
        out[name] = kept
    return out


def run_outputs(task: Any, model: Any, dataset: Any, device: str, batch_size: int = 32) -> dict[str, Any]:
    """Model outputs over a whole dataset, in dataset order: ``{"outputs": (N, K), "target": (N, ...), "ids"}``."""
    import torch

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=task.collate)
    model.to(device).eval()
    outs, targets, ids = [], [], []
    with torch.no_grad():
        for batch in loader:
            out = model(batch["hidden"].to(device), batch["lengths"].to(device))
            outs.append(out.float().cpu())
            targets.append(batch["target"])
            ids.extend(batch["ids"])
    return {"outputs": torch.cat(outs), "target": torch.cat(targets), "ids": ids}


def write_eval(folder: Path, task: Any, outputs: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """Write ``report.json``, ``predictions.jsonl`` and (classification) ``confusion_matrix.json`` + ``.png``.

    info: provenance fields copied into the report (split, fold, seed, hashes, checkpoint). Returns the report.
    """
    import torch

    from emotk.metrics import confusion_matrix_png

    folder.mkdir(parents=True, exist_ok=True)
    scored = task.metrics(outputs)
    out, target = outputs["outputs"], outputs["target"]
    lines = []
    if task.regression:
        for uid, o, t in zip(outputs["ids"], out.tolist(), target.tolist()):
            lines.append({"id": uid, "target": dict(zip(task.target_names, t)),
                          "prediction": {n: round(v, 6) for n, v in zip(task.target_names, o)}})
    else:
        probs = torch.softmax(out, dim=-1)
        for uid, p, t in zip(outputs["ids"], probs.tolist(), target.tolist()):
            best = max(range(len(p)), key=lambda i: p[i])
            lines.append({"id": uid, "label": task.classes[t], "prediction": task.classes[best],
                          "probabilities": {c: round(v, 6) for c, v in zip(task.classes, p)}})
    atomic_write_text(folder / "predictions.jsonl", "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    report = {**info, "num_samples": len(outputs["ids"]), "metrics": scored["metrics"], "report": scored["report"]}
    if not task.regression:
        cm = scored["report"]["confusion_matrix"]
        atomic_write_json(folder / "confusion_matrix.json",
                          {"classes": task.classes, "rows": "true", "columns": "predicted", "matrix": cm,
                           "support": scored["report"]["support"]})
        confusion_matrix_png(cm, task.classes, folder / "confusion_matrix.png",
                             title=f"{info.get('split', '')} {info.get('run', '')}".strip())
        report["confusion_matrix"] = "confusion_matrix.json"
    atomic_write_json(folder / "report.json", report)
    return report


# ---- training -------------------------------------------------------------------------------------------------------
def train(resolved: Any, out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
          skip_bad: bool = False, roots: dict[str, str] | None = None, device: str | None = None,
          argv: list[str] | None = None) -> dict[str, Any]:
    """Train every (fold, seed) run of SerConfig ``resolved.config`` under ``out``; returns the summary.

    resolved: :class:`emotk.core.config.Resolved` (its ``data.manifest`` must be set). resume: continue (see the
    module docstring); overwrite: replace an existing ``out``. skip_bad: unreadable audio is skipped (listed)
    instead of failing the extraction. device: overrides ``runtime.device``.
    Raises :class:`emotk.train.signals.Interrupted` (exit code 3) when a signal stops a run.
    """
    import torch

    threads = torch.get_num_threads()
    try:
        return _train(resolved, out, resume=resume, overwrite=overwrite, skip_bad=skip_bad, roots=roots,
                      device=device, argv=argv)
    finally:  # runtime.threads applies to this call only (library users keep their setting)
        torch.set_num_threads(threads)


def _train(resolved: Any, out: str | os.PathLike, *, resume: bool, overwrite: bool, skip_bad: bool,
           roots: dict[str, str] | None, device: str | None, argv: list[str] | None) -> dict[str, Any]:
    from emotk.core.runs import RunDir
    from emotk.models.ser.data import prepare
    from emotk.models.ser.task import FeatureStore
    from emotk.train import distributed as dist

    cfg = resolved.config
    if not cfg.data.manifest:
        raise UsageError("no manifest: pass --data MANIFEST.jsonl (or set data.manifest)")
    device = resolve_device(device or resolved.runtime.device)
    runtime = dataclasses.replace(resolved.runtime, device=device)
    info = dist.init(device)
    _set_threads(runtime.threads, info.local_world_size)  # extraction too, not only the trainer
    out = Path(out)
    prepared = prepare(cfg, cfg.data.manifest, roots=roots)
    folds = fold_plan(prepared, cfg.data.fold)
    seeds = [cfg.train.seed + k for k in range(cfg.seeds)]
    plan = [(f, s) for f in folds for s in seeds]
    inputs = prepared.inputs()
    if dist.is_main():
        parent = RunDir.create(out, resolved, overwrite=overwrite, resume=resume, inputs=inputs, device=device,
                               argv=argv)
        parent.update(plan=[{"fold": f, "seed": s, "run": f"runs/{run_name(f, s)}"} for f, s in plan],
                      classes=prepared.classes, target_names=prepared.target_names, dropped=prepared.dropped)
    dist.barrier()
    cache_root = Path(cfg.upstream.cache_dir) if cfg.upstream.cache_dir else out / "features"
    cache, extraction = _features(cfg, prepared, cache_root, device, skip_bad)
    store = FeatureStore(cache)
    if dist.is_main():
        RunDir.open(out).update(features={"cache": str(cache.path), "config_hash": cache.meta["config_hash"],
                                          "skipped": extraction.get("skipped", [])})

    results = []
    for fold, seed in plan:
        name = run_name(fold, seed)
        sub = out / "runs" / name
        if resume and (sub / RESULT).is_file():
            results.append(json.loads((sub / RESULT).read_text(encoding="utf-8")))
            log.info(f"ser: {name} already finished; skipped")
            continue
        results.append(_train_one(resolved, _sub_config(cfg, fold, seed), prepared, store, sub, fold, seed,
                                  runtime, resume, inputs, argv))
    summary = summarise(cfg, prepared, results, resolved.hash)
    if dist.is_main():
        best = summary.get("export", {}).get("from")
        if best:
            target = out / "export"
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(out / "runs" / best / "export", target)
        atomic_write_json(out / SUMMARY, summary)
    dist.barrier()
    return summary


def _train_one(resolved: Any, cfg: Any, prepared: Any, store: Any, sub: Path, fold: str | None, seed: int,
               runtime: Any, resume: bool, inputs: dict[str, str], argv: list[str] | None) -> dict[str, Any]:
    from emotk.core.config import Resolved
    from emotk.core.runs import RunDir
    from emotk.models.ser.infer import write_export
    from emotk.models.ser.task import SerTask
    from emotk.train import distributed as dist
    from emotk.train.trainer import Trainer

    name = run_name(fold, seed)
    sub_resolved = Resolved(task=resolved.task, config=cfg, runtime=resolved.runtime,
                            sources=[*resolved.sources, f"run {name}: data.fold={fold or ''}, train.seed={seed}"])
    continuing = resume and (sub / "run.json").is_file()
    if dist.is_main():
        run = RunDir.create(sub, sub_resolved, resume=continuing, overwrite=not continuing, inputs=inputs, seed=seed,
                            device=runtime.device, argv=argv)
    dist.barrier()
    if not dist.is_main():
        run = RunDir.open(sub)
    splits = _drop_skipped(prepared.splits(fold), store)
    task = SerTask(cfg, splits, store, classes=prepared.classes, target_names=prepared.target_names)
    log.info(f"ser: run {name}: {len(splits['train'])} train / {len(splits['valid'])} valid / "
             f"{len(splits['test'])} test utterances, {task.dims.num_layers} layers x {task.dims.dim}")
    if dist.is_main() and not task.regression:
        run.update(class_counts=task.class_counts(), classes=prepared.classes)
    trainer = Trainer(cfg.train, task, run, runtime)
    fit = trainer.fit(resume=continuing)  # holds the best (validation-selected) weights afterwards
    best = fit.get("best")
    chosen = "ckpt/best" if best is not None else (
        str(Path(fit["last"]["checkpoint"]).relative_to(sub)) if fit["last"].get("checkpoint") else None)
    result: dict[str, Any] = {"run": name, "fold": fold, "seed": seed, "stopped": fit.get("stopped"),
                              "steps": fit.get("steps"), "best": _jsonable(best), "checkpoint": chosen,
                              "valid": None, "test": None}
    info = {"run": name, "fold": fold, "seed": seed, "checkpoint": chosen, **inputs, "config_hash": sub_resolved.hash}
    for split in ("valid", "test"):
        dataset = task.dataset(split)
        if dataset is None:
            continue
        evaluated = trainer.evaluate(dataset, split=split)  # every process takes part; rank 0 writes
        if dist.is_main():
            report = write_eval(sub / "eval" / split, task, evaluated["outputs"], {**info, "split": split})
            result[split] = report["metrics"]
    if dist.is_main():
        write_export(sub / "export", trainer.model, cfg, prepared.classes, prepared.target_names,
                     extra={"source_run": name, "fold": fold, "seed": seed, "config_hash": sub_resolved.hash,
                            "checkpoint": chosen, "valid": result["valid"], "test": result["test"], **inputs})
        atomic_write_json(sub / RESULT, result)
    dist.barrier()
    return result


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str)) if obj is not None else None


def summarise(cfg: Any, prepared: Any, results: list[dict[str, Any]], config_hash: str) -> dict[str, Any]:
    """Mean ± std (population) of the test and validation metrics over ``results``, per run and per fold."""
    from emotk.metrics import aggregate

    select, mode = cfg.train.select_metric, cfg.train.select_mode
    summary: dict[str, Any] = {
        "task": "ser.superb", "task_type": cfg.task_type, "config_hash": config_hash,
        **prepared.inputs(), "classes": prepared.classes, "target_names": prepared.target_names,
        "upstream": cfg.upstream.name, "select_metric": select, "runs_total": len(results),
        "folds": sorted({r["fold"] or "split" for r in results}), "seeds": sorted({r["seed"] for r in results}),
    }
    for split in ("test", "valid"):
        reports = [r[split] for r in results if r.get(split)]
        if reports:
            summary[split] = aggregate(reports, keys=sorted(reports[0]))
    per_fold: dict[str, Any] = {}
    for fold in summary["folds"]:
        reports = [r["test"] for r in results if (r["fold"] or "split") == fold and r.get("test")]
        if reports:
            per_fold[fold] = aggregate(reports, keys=sorted(reports[0]))
    summary["per_fold"] = per_fold
    summary["runs"] = [{k: r.get(k) for k in ("run", "fold", "seed", "stopped", "checkpoint", "valid", "test")}
                       for r in results]
    ranked = [r for r in results if r.get("valid") and select in r["valid"]]
    if ranked:
        best = (max if mode == "max" else min)(ranked, key=lambda r: r["valid"][select])
    else:
        best = results[0] if results else None
    if best is not None:
        summary["export"] = {"path": "export", "from": best["run"],
                             "chosen_by": f"validation {select}" if ranked else "first run (no validation split)"}
    return summary


# ---- evaluation -------------------------------------------------------------------------------------------------------
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
    from emotk.metrics import aggregate
    from emotk.models.ser.config import SerConfig
    from emotk.models.ser.data import SerItem, prepare
    from emotk.models.ser.task import FeatureStore, SerTask
    from emotk.train.checkpoint import load_model_weights

    if split not in ("train", "valid", "test", "all"):
        raise UsageError(f"--split {split!r}: choose train, valid, test or all")
    if manifest is not None and not Path(manifest).is_file():
        raise DataError(f"manifest not found: {manifest}")
    runs = find_runs(run_dir)
    device = resolve_device(device)
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
        splits = _drop_skipped(splits, store)
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

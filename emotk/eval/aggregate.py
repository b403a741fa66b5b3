"""``emotk evaluate ser|erc RUN_DIR...``: SER/ERC run folders -> one table of mean ± std over (fold, seed) runs.

Folder contract (what ``emotk ser train`` writes, see :mod:`emotk.models.ser.pipeline`; ERC runs follow the same)::

    RUN_DIR/run.json                       "task" (e.g. "ser.superb"), "config_hash", "inputs" (manifest/protocol/
                                           label-map hashes), "config_sources", "emotk_version"
    RUN_DIR/summary.json                   "task", "runs": [{"run", "fold", "seed", "valid", "test"}], and per split
                                           {metric: {"mean", "std", "values"}}
    RUN_DIR/runs/<fold>-seed<S>/result.json    {"run", "fold", "seed", ..., "valid": {metric: v}, "test": {...}}
    RUN_DIR/runs/<fold>-seed<S>/eval/<split>/report.json   {..., "metrics": {metric: v}}

A single run folder (``result.json`` / ``eval/<split>/report.json`` beside its ``run.json``) is valid too. The
metrics of one run for a split come from ``result.json[split]`` (or a ``result.json`` "metrics" dict), else from
``eval/<split>/report.json`` (also the reports ``emotk ser evaluate`` writes), else from ``summary.json``. Metric
names are kept as the reports write them (``accuracy``, ``balanced_accuracy``, ``weighted_f1``, ``macro_f1``,
``ccc``...); the spread is the population standard deviation (ddof 0), as in ``summary.json``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from emotk.errors import DataError, UsageError
from emotk.eval.report import MISSING, csv_text, markdown_table, write_tables

TASKS = ("ser", "erc")
CSV_HEADER = ("run", "metric", "mean", "std", "n", "path")
#: provenance fields copied from run.json ("inputs" included) / summary.json into each row
PROVENANCE_KEYS = ("task", "config", "config_hash", "manifest_sha256", "protocol", "protocol_sha256", "label_map",
                   "label_map_sha256", "upstream", "emotk_version", "git_revision")


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when the file does not exist; DataError naming file and line when broken."""
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _numbers(metrics: Any) -> dict[str, float]:
    """The numeric (non-bool) entries of a flat metrics dict, in their order."""
    if not isinstance(metrics, Mapping):
        return {}
    return {str(k): float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _config_name(meta: Mapping[str, Any]) -> str | None:
    """The stem of the YAML config a run was resolved from (``configs/ser/ravdess.yaml`` -> ``ravdess``)."""
    for source in meta.get("config_sources") or []:
        if isinstance(source, str) and source.endswith((".yaml", ".yml")):
            return Path(source).stem
    return None


def _task_of(folder: Path, task: str) -> tuple[str | None, dict[str, Any], dict[str, Any] | None]:
    """(task name found, run.json, summary.json) of ``folder``; DataError when it names another task family."""
    meta = _read_json(folder / "run.json") or {}
    summary = _read_json(folder / "summary.json")
    found = meta.get("task") or (summary or {}).get("task")
    if found is not None:
        family = str(found).split(".")[0]
        if family != task:
            source = "run.json" if meta.get("task") else "summary.json"
            raise DataError(f"{folder}: a {found} run, not an {task.upper()} run ({source} says task '{found}')")
    return found, meta, summary


def _run_metrics(sub: Path, split: str) -> tuple[dict[str, Any], dict[str, float]]:
    """(identity {"run", "fold", "seed"}, metrics) of one run folder for ``split`` (metrics empty when absent)."""
    result = _read_json(sub / "result.json") or {}
    metrics = _numbers(result.get(split))
    if not metrics and isinstance(result.get("metrics"), Mapping) and result.get("split", split) == split:
        metrics = _numbers(result["metrics"])
    report = None
    if not metrics:
        report = _read_json(sub / "eval" / split / "report.json")
        metrics = _numbers((report or {}).get("metrics"))
    meta = _read_json(sub / "run.json") or {}
    ident = {"run": result.get("run") or (report or {}).get("run") or sub.name,
             "fold": result.get("fold", (report or {}).get("fold")),
             "seed": result.get("seed", (report or {}).get("seed", meta.get("seed")))}
    return ident, metrics


def _summary_runs(summary: Mapping[str, Any], split: str) -> list[tuple[dict[str, Any], dict[str, float]]]:
    """Per-run metrics recovered from a summary.json: its "runs" list, else the per-split ``values`` lists."""
    runs = []
    for entry in summary.get("runs") or []:
        if isinstance(entry, Mapping) and _numbers(entry.get(split)):
            runs.append(({"run": entry.get("run"), "fold": entry.get("fold"), "seed": entry.get("seed")},
                         _numbers(entry[split])))
    if runs:
        return runs
    block = summary.get(split) if isinstance(summary.get(split), Mapping) else summary.get("metrics")
    if not isinstance(block, Mapping):
        return []
    columns = {k: v["values"] for k, v in block.items() if isinstance(v, Mapping) and isinstance(v.get("values"), list)}
    if columns:
        count = max(len(v) for v in columns.values())
        return [({"run": f"run{i}", "fold": None, "seed": None},
                 _numbers({k: v[i] for k, v in columns.items() if i < len(v)})) for i in range(count)]
    flat = _numbers(block)
    return [({"run": "run0", "fold": None, "seed": None}, flat)] if flat else []


def _read_folder(path: Path, task: str, split: str) -> dict[str, Any]:
    """One table row (before aggregation) from an experiment or single-run folder."""
    if not path.is_dir():
        raise DataError(f"{path}: no such run folder")
    found, meta, summary = _task_of(path, task)
    runs: list[tuple[dict[str, Any], dict[str, float]]] = []
    incomplete: list[str] = []
    subs = sorted(p for p in (path / "runs").iterdir()
                  if p.is_dir() and ((p / "run.json").is_file() or (p / "result.json").is_file())
                  ) if (path / "runs").is_dir() else []
    single = (path / "result.json").is_file() or (path / "eval" / split / "report.json").is_file()
    if subs:
        for sub in subs:
            sub_task, sub_meta, _ = _task_of(sub, task)
            found = found or sub_task
            meta = meta or sub_meta
            ident, metrics = _run_metrics(sub, split)
            if metrics:
                runs.append((ident, metrics))
            else:
                incomplete.append(sub.name)
    elif single:
        ident, metrics = _run_metrics(path, split)
        if metrics:
            runs.append((ident, metrics))
    if not runs and summary is not None:
        runs = _summary_runs(summary, split)
    if found is None:
        raise DataError(f"{path}: not a {task.upper()} run folder (no run.json or summary.json naming its task, "
                        f"as `emotk {task} train` writes)")
    if not runs:
        raise DataError(f"{path}: no '{split}' metrics for this {task.upper()} run (looked for "
                        f"runs/*/result.json, result.json, eval/{split}/report.json and summary.json)")
    prov = {**(meta.get("inputs") or {}), **{k: v for k, v in meta.items() if k in PROVENANCE_KEYS}}
    for k in PROVENANCE_KEYS:
        if k not in prov and summary is not None and summary.get(k) is not None:
            prov[k] = summary[k]
    prov["task"] = found
    if _config_name(meta):
        prov["config"] = _config_name(meta)
    return {"path": str(path), "provenance": {k: prov[k] for k in PROVENANCE_KEYS if prov.get(k) is not None},
            "runs": [{**ident, "metrics": m} for ident, m in runs], "incomplete": incomplete}


def _labels(paths: Sequence[Path]) -> list[str]:
    """Folder names; where two are equal, those are widened with parent folders (``a/out``, ``b/out``)."""
    parts = [p.resolve().parts[1:] or ("/",) for p in paths]
    depth = [1] * len(parts)
    while True:
        labels = ["/".join(x[-d:]) for x, d in zip(parts, depth)]
        clash = {i for i, lab in enumerate(labels) if labels.count(lab) > 1}
        if not clash:
            return labels
        if all(depth[i] >= len(parts[i]) for i in clash):  # the same folder given twice
            return [f"{parts[i][-1]}#{i + 1}" if i in clash else lab for i, lab in enumerate(labels)]
        for i in clash:
            depth[i] = min(depth[i] + 1, len(parts[i]))


STAGES = {1: "I", 2: "II", 3: "III"}


def erc_labels(paths: Sequence[Path]) -> list[str] | None:
    """Thesis Table 4.1 row names for ERC folders -- modality and stage, e.g. ``text II``, ``speech+text III``
    (``(joint)`` for the II+III ablation, ``, causal`` for online models) -- from each ``summary.json``; None when
    a folder has none or two rows would get the same name."""
    labels = []
    for path in paths:
        try:
            s = json.loads((Path(path) / "summary.json").read_text(encoding="utf-8"))
            mods = "+".join(sorted(s["modalities"], key=lambda m: m != "speech"))
            label = f"{mods} {STAGES.get(int(s['stage']), s['stage'])}"
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if s.get("joint"):
            label += " (joint)"
        if s.get("context") == "causal":
            label += ", causal"
        labels.append(label)
    return labels if len(set(labels)) == len(labels) else None


def aggregate_runs(paths: Sequence[str | os.PathLike], task: str, split: str = "test",
                   labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Mean ± std of every metric of ``split`` over the (fold, seed) runs of each folder in ``paths``.

    paths: experiment folders (``emotk ser train -o OUT``) or single run folders, one table row each, in the given
    order. task: ``"ser"`` or ``"erc"`` (a folder whose run.json/summary.json names another task is a DataError).
    labels: row labels (default: ERC -- modality and stage as in thesis Table 4.1 (:func:`erc_labels`); else the
    folder names, widened with parents when two are equal). Returns
    ``{"task", "split", "metrics": [names, first-seen order], "rows": [{"label", "path", "n", "provenance",
    "runs": [{"run", "fold", "seed", "metrics"}], "incomplete": [run names without metrics],
    "metrics": {name: {"mean", "std", "n", "values"}}}]}``; NaN values are left out of a mean (``n`` counts the
    values used; mean/std None when there are none).
    """
    from emotk.metrics import aggregate

    if task not in TASKS:
        raise UsageError(f"unknown task {task!r}: choose {' or '.join(TASKS)}")
    if not paths:
        raise UsageError(f"no run folders given: pass one or more RUN_DIR of `emotk {task} train`")
    folders = [Path(p) for p in paths]
    if labels is not None and len(labels) != len(folders):
        raise UsageError(f"{len(labels)} labels for {len(folders)} run folders")
    names = list(labels) if labels is not None else ((task == "erc" and erc_labels(folders)) or _labels(folders))
    rows, order = [], {}
    for folder, label in zip(folders, names):
        row = _read_folder(folder, task, split)
        stats: dict[str, Any] = {}
        for run in row["runs"]:
            for metric in run["metrics"]:
                order.setdefault(metric, len(order))
        for metric in sorted({m for r in row["runs"] for m in r["metrics"]}, key=order.__getitem__):
            values = [r["metrics"][metric] for r in row["runs"] if metric in r["metrics"]]
            finite = [v for v in values if math.isfinite(v)]
            if finite:
                agg = aggregate([{metric: v} for v in finite], keys=[metric])[metric]
                stats[metric] = {"mean": agg["mean"], "std": agg["std"], "n": len(finite), "values": finite}
            else:
                stats[metric] = {"mean": None, "std": None, "n": 0, "values": []}
        rows.append({"label": label, **row, "n": len(row["runs"]), "metrics": stats})
    return {"task": task, "split": split, "metrics": sorted(order, key=order.__getitem__), "rows": rows}


def format_mean_std(stat: Mapping[str, Any] | None, row_n: int, digits: int = 4) -> str:
    """``"0.6512 ± 0.0123"`` (with `` (n=k)`` when fewer runs than the row's ``row_n`` have it); ``–`` if missing."""
    if not stat or stat.get("mean") is None:
        return MISSING
    std = stat.get("std")
    text = f"{stat['mean']:.{digits}f} ± {std:.{digits}f}" if std is not None and math.isfinite(std) \
        else f"{stat['mean']:.{digits}f}"
    return text if stat.get("n") == row_n else f"{text} (n={stat.get('n')})"


def render_aggregate_markdown(table: Mapping[str, Any]) -> str:
    """The Markdown report of :func:`aggregate_runs`: provenance per row, then rows = run folders, columns =
    ``n`` and every metric (mean ± std over runs)."""
    task, split = str(table["task"]).upper(), table["split"]
    out = [f"# {task} runs: {split} split, mean ± std over (fold, seed) runs", ""]
    for row in table["rows"]:
        prov = row["provenance"]
        folds = sorted({str(r["fold"]) for r in row["runs"] if r.get("fold") is not None})
        seeds = sorted({r["seed"] for r in row["runs"] if isinstance(r.get("seed"), int)})
        bits = [f"{row['n']} run(s)"]
        if folds:
            bits.append("folds " + ", ".join(folds))
        if seeds:
            bits.append("seeds " + ", ".join(map(str, seeds)))
        bits += [f"{k} {prov[k]}" for k in PROVENANCE_KEYS if k in prov]
        if row.get("incomplete"):
            bits.append("without metrics: " + ", ".join(row["incomplete"]))
        out.append(f"- {row['label']}: `{row['path']}`; " + "; ".join(bits))
    metrics = list(table["metrics"])
    body = [[row["label"], str(row["n"]), *(format_mean_std(row["metrics"].get(m), row["n"]) for m in metrics)]
            for row in table["rows"]]
    out += ["", markdown_table(["Run", "n", *metrics], body)]
    return "\n".join(out).rstrip("\n") + "\n"


def aggregate_rows(table: Mapping[str, Any]) -> list[list[Any]]:
    """Long-format CSV rows ``[run label, metric, mean, std, n, path]`` of :func:`aggregate_runs`'s table."""
    return [[row["label"], metric, row["metrics"][metric]["mean"], row["metrics"][metric]["std"],
             row["metrics"][metric]["n"], row["path"]]
            for row in table["rows"] for metric in table["metrics"] if metric in row["metrics"]]


def write_aggregate_report(table: Mapping[str, Any], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``results.json`` (the table, sorted keys), ``results.csv`` (:func:`aggregate_rows`) and ``table.md``
    (:func:`render_aggregate_markdown`) under ``out_dir``, atomically; returns ``{"json", "csv", "markdown"}``."""
    if not isinstance(table, Mapping) or not {"task", "split", "metrics", "rows"} <= set(table):
        raise DataError("aggregate table: expected the dict of aggregate_runs (task, split, metrics, rows)")
    body = csv_text(CSV_HEADER, aggregate_rows(table))
    return write_tables(out_dir, table, body, render_aggregate_markdown(table))

"""The ser stage of ``emotk demo``: SUPERB SER on every speaker fold of the demo corpus (``ser train``'s API)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SER_CONFIG = "ser/demo"  # configs/ser/demo.yaml: the SUPERB head on the built-in lld descriptors
METRICS = ("weighted_f1", "balanced_accuracy", "accuracy", "macro_f1")


def ser_stage(manifest_path: Path, protocol_path: Path, out: Path, seed: int, *, config: str = SER_CONFIG,
              upstream: str | None = None, threads: int | None = None,
              cache_dir: Path | None = None) -> dict[str, Any]:
    """Train/evaluate SUPERB SER (``config``, every fold of ``protocol_path``) into ``out`` (replaced).

    upstream: replaces the recipe's ``upstream.name`` (e.g. ``care:DIR``); threads: ``runtime.threads`` (None =
    the recipe's); cache_dir: the feature cache root (shared by stages on the same features). Returns {"config",
    "upstream", "folds", "classes", "test": {metric: {"mean", "std"}} (over the folds), "run_dir"} and, when the
    recipe searches, "search": {fold: chosen values}.
    """
    from emotk.core.config import resolve
    from emotk.recipes import find_config, task_spec

    overrides = [f"data.manifest={manifest_path}", f"data.protocol={protocol_path}", f"train.seed={seed}"]
    if upstream is not None:
        overrides.append(f"upstream.name={upstream}")
    if threads is not None:
        overrides.append(f"runtime.threads={threads}")
    if cache_dir is not None:
        overrides.append(f"upstream.cache_dir={cache_dir}")
    spec = task_spec("ser.superb")
    resolved = resolve(spec.schema_class(), spec.name, find_config(config), overrides)
    result = spec.train_fn()(resolved, out, overwrite=True, argv=["emotk", "demo"])
    out_info = {
        "config": config,
        "upstream": resolved.config.upstream.name,
        "folds": len(result.get("folds", [])),
        "classes": result.get("classes"),
        "test": {m: {"mean": result["test"][m]["mean"], "std": result["test"][m]["std"]}
                 for m in METRICS if m in result["test"]},
        "run_dir": str(out),
    }
    if result.get("search"):
        out_info["search"] = {fold: v["chosen"] for fold, v in result["search"]["folds"].items()}
    return out_info

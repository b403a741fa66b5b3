"""The est stage of ``emotk demo``: ``emotk evaluate est`` on the zest stage's held-out sentences."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

EST_CONFIG = "evaluate/est-demo"  # configs/evaluate/est-demo.yaml


def est_stage(zest: dict[str, Any], out_dir: Path, config: str = EST_CONFIG,
              overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """``emotk evaluate est`` on the zest stage's held-out sentences (its parallel settings and the any-to-any
    matrix): the trained bundle vs the world-baseline and copy-source floors, with faster-whisper tiny.en,
    Resemblyzer and the bundle's emotion encoder.

    zest: the zest stage's result (``bundle``, ``held_out_manifest``); out_dir: the evaluation folder (replaced);
    config / overrides: the EST recipe and ``--set``-style overrides. Returns the report's systems section,
    coverage, backends, the markdown report's path and seconds.
    """
    from emotk.core.config import resolve
    from emotk.eval.est import run_est
    from emotk.recipes import find_config, task_spec

    t0 = time.perf_counter()
    spec = task_spec("evaluate.est")
    resolved = resolve(spec.schema_class(), spec.name, find_config(config), list(overrides))
    result = run_est(resolved, out_dir, models=[zest["bundle"]], data=[zest["held_out_manifest"]], overwrite=True,
                     progress_every=0)
    results = json.loads(Path(result["report"]["json"]).read_text(encoding="utf-8"))
    return {"systems": results["systems"], "coverage": result["coverage"],
            "backends": results["provenance"]["backends"], "report": result["report"]["markdown"],
            "seconds": round(time.perf_counter() - t0, 2)}

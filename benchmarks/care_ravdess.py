"""CARE on real speech: pre-train a small CARE on RAVDESS, then SUPERB SER with its upstream vs the same
architecture untrained vs the built-in lld descriptors, on the 5 actor-independent folds (ravdess-5fold).

Issue "Emotion-aware pre-training", item 6. Recipe: configs/pretrain/care-tiny.yaml (tiny WavLM-shaped trunk,
1 common + 1 acoustic layer, 1 frozen text layer with adapters; y_text = MiniLM mean-pooled embedding of the
RAVDESS sentence; 32-d lld acoustic targets; 1 s crops) for --steps steps on all 1,440 utterances (no emotion
labels are used in pre-training), then configs/ser/demo.yaml (SUPERB head, mean pooling, 30 epochs) on every fold for
each upstream. Prints one JSON object and writes benchmarks/results/care_ravdess.json.

Usage: python benchmarks/care_ravdess.py [--steps 20000] [--threads 2] [--work /tmp/care-ravdess]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RAVDESS = REPO.parent / "shared" / "data" / "ravdess" / "manifest.jsonl"
PROTOCOL = REPO / "data_manifests" / "ravdess" / "protocols" / "ravdess-5fold.json"
METRICS = ("weighted_f1", "balanced_accuracy", "accuracy", "macro_f1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/care-ravdess"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "care_ravdess.json")
    args = ap.parse_args()
    if not RAVDESS.is_file():
        print(f"care_ravdess: {RAVDESS} not found (needs ../shared/data/ravdess)", file=sys.stderr)
        return 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from emotk.core.config import resolve
    from emotk.core.io import atomic_write_json, sha256_file
    from emotk.core.log import setup_logging
    from emotk.demo.care import care_demo_stage
    from emotk.models.ser.config import SerConfig
    from emotk.models.ser.task import train as ser_train
    from emotk.recipes import find_config

    setup_logging(-1)
    load_before = os.getloadavg()
    t0 = time.time()
    care = care_demo_stage(RAVDESS, PROTOCOL, args.work / "care", args.seed, steps=args.steps, threads=args.threads)
    lld_res = resolve(SerConfig, "ser.superb", find_config("ser/demo"),
                      [f"data.manifest={RAVDESS}", f"data.protocol={PROTOCOL}", f"train.seed={args.seed}",
                       f"runtime.threads={args.threads}"])
    lld = ser_train(lld_res, args.work / "ser-lld", overwrite=True, argv=sys.argv)

    def pick(test: dict) -> dict:
        return {m: {"mean": round(test[m]["mean"], 4), "std": round(test[m]["std"], 4)} for m in METRICS}

    result = {
        "benchmark": "care_ravdess",
        "manifest_sha256": sha256_file(RAVDESS),
        "protocol": "ravdess-5fold", "protocol_sha256": sha256_file(PROTOCOL),
        "pretrain": {"recipe": "pretrain/care-tiny", **care["pretrain"]},
        "ser_recipe": "ser/demo", "seed": args.seed, "threads": args.threads,
        "test": {"care": pick(care["care"]["test"]), "care_untrained": pick(care["untrained"]["test"]),
                 "lld": pick(lld["test"])},
        "seconds": round(time.time() - t0, 1), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "command": "python benchmarks/care_ravdess.py " + " ".join(sys.argv[1:]),
    }
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

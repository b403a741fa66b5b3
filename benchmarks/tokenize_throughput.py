#!/usr/bin/env python
"""Benchmark: k-means content tokenizer (emotk.features.tokens) fit time and tokenisation throughput.

For each feature width D (default 256 = soft-HuBERT units, 768 = a base SSL layer) it builds ``--hours`` of
50 Hz frames (default 1 h = 180,000 frames, as utterances of 2-4 s) from a seeded mixture of 100 Gaussian
clusters plus noise (real units are clustered too; random frames would make Lloyd converge differently), then

* fits ``KMeansTokenizer(K=--clusters, fraction=--fraction)`` (the S2S-ZEST recipe: K=100 on a random 10 %
  of the utterances) with each ``--algorithms`` entry and records the wall time and iterations;
* tokenises every frame, once as one ``tokenize_batch`` call over all utterances and once utterance by
  utterance (``tokenize``), best of ``--repeats``, and reports frames/s and x real time (50 frames = 1 s).

Prints one JSON object on stdout and writes it to ``benchmarks/results/tokenize_throughput.json``. The load
average before/after is recorded: numbers taken while other processes hold the cores are not comparable
(``machine_quiet`` is false when the 1-minute load exceeded half the cores before the run).

    .venv/bin/python benchmarks/tokenize_throughput.py                       # ~1-3 min on 2 cores
    .venv/bin/python benchmarks/tokenize_throughput.py --hours 0.05 --dims 64  # smoke test, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "tokenize_throughput.json"
FRAME_RATE = 50
NOISE = 0.8  # per-dimension noise around unit-scale centres: overlapping clusters, so Lloyd needs real work

if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_frames(hours: float, dim: int, seed: int, true_k: int = 100) -> tuple[list[np.ndarray], list[str]]:
    """Utterances of 2-4 s of (T, dim) float32 frames drawn around ``true_k`` seeded centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.0, size=(true_k, dim)).astype(np.float32)
    total = int(hours * 3600 * FRAME_RATE)
    frames, ids, made = [], [], 0
    while made < total:
        t = min(int(rng.integers(2 * FRAME_RATE, 4 * FRAME_RATE + 1)), total - made)
        lab = rng.integers(0, true_k, size=t)
        frames.append(centres[lab] + rng.normal(scale=NOISE, size=(t, dim)).astype(np.float32))
        ids.append(f"bench-{len(ids):06d}")
        made += t
    return frames, ids


def best_of(fn, repeats: int, *fn_args) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*fn_args)
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=1.0, help="hours of 50 Hz frames per width (default 1)")
    p.add_argument("--dims", type=int, nargs="+", default=[256, 768])
    p.add_argument("--clusters", type=int, default=100)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--algorithms", nargs="+", default=["lloyd", "minibatch"], choices=["lloyd", "minibatch"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)

    from emotk.features.tokens import KMeansTokenizer

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load_before = os.getloadavg()
    results = []
    for dim in args.dims:
        log(f"D={dim}: generating {args.hours} h of frames")
        frames, ids = make_frames(args.hours, dim, args.seed)
        n_frames = sum(f.shape[0] for f in frames)
        row = {"dim": dim, "frames": n_frames, "utterances": len(ids), "audio_hours": n_frames / FRAME_RATE / 3600,
               "fit": {}}
        tok = None
        for algo in args.algorithms:
            log(f"D={dim}: fitting K={args.clusters} ({algo})")
            t = time.perf_counter()
            fitted = KMeansTokenizer("ssl:bench:0", n_clusters=args.clusters, fraction=args.fraction, seed=args.seed,
                                     algorithm=algo).fit(frames, ids)
            seconds = time.perf_counter() - t
            row["fit"][algo] = {"seconds": round(seconds, 3), "train_frames": fitted.meta["num_train_frames"],
                                "train_utterances": fitted.meta["num_train_utterances"],
                                "iterations": fitted.meta["iterations"],
                                "seconds_per_iteration": round(seconds / max(1, fitted.meta["iterations"]), 4),
                                "inertia_per_frame": fitted.meta["inertia"] / fitted.meta["num_train_frames"]}
            tok = tok or fitted
        log(f"D={dim}: tokenising {n_frames} frames")
        # frames are passed as an argument, not captured: a closure over ``frames`` would see the ``del`` below
        batch_s = best_of(tok.tokenize_batch, args.repeats, frames)
        single_s = best_of(lambda utts: [tok.tokenize(f) for f in utts], args.repeats, frames)
        row["tokenize"] = {
            "batch": {"seconds": round(batch_s, 4), "frames_per_second": round(n_frames / batch_s),
                      "x_real_time": round(n_frames / FRAME_RATE / batch_s, 1)},
            "per_utterance": {"seconds": round(single_s, 4), "frames_per_second": round(n_frames / single_s),
                              "x_real_time": round(n_frames / FRAME_RATE / single_s, 1)},
        }
        results.append(row)
        del frames
    load_after = os.getloadavg()

    import numpy

    report = {
        "benchmark": "tokenize_throughput",
        "clusters": args.clusters, "fraction": args.fraction, "seed": args.seed, "hours": args.hours,
        "data": f"seeded mixture of 100 unit-scale Gaussian centres + N(0, {NOISE}^2) noise per dimension",
        "results": results,
        "machine": {
            "cores": cores, "platform": platform.platform(), "python": platform.python_version(),
            "numpy": numpy.__version__, "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
            "machine_quiet": load_before[0] <= 0.5 * (cores or 1),
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from emotk.core.io import atomic_write_json

    atomic_write_json(args.out, report)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

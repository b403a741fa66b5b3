#!/usr/bin/env python
"""Benchmark: SER head training from cached features, and end-to-end ``ser predict`` speed on CPU.

1. ``head_training``: the SUPERB downstream (softmax layer sum -> pooling -> 2-layer FFN, hidden 256) trains
   through :class:`emotk.train.trainer.Trainer` on a feature cache shaped like WavLM-base output (13 layers x
   768, float16, 1-6 s utterances at 50 Hz, seeded random values, 4 classes) -- the ``ser train`` inner loop after
   the one-off extraction. Three paths: ``mean_pooling`` (the thesis head; trains on per-utterance time means,
   exact for masked mean pooling, computed on the first read), ``attentive_stats_memoised`` (all frames, kept in
   memory after the first read, up to ``EMOTK_SER_FEATURE_MEMORY_GB``) and ``attentive_stats_from_cache`` (all
   frames re-read from the memory-mapped cache shards on every access: a corpus larger than memory). The first
   read of every utterance is timed apart (``first_read_s``); the training time covers all epochs after it.
2. ``predict``: :func:`emotk.models.ser.infer.predict` over N audio files (decoding + crop/pad + upstream +
   head, batches of 16; loading the bundle and its upstream is timed apart as ``load_s``) for the upstreams that
   run offline here: ``lld`` (acoustic descriptors), the bundled ``whisper-tiny.en-ct2`` (real weights, last
   layer; every input is padded to Whisper's 30 s window) and ``tiny-wavlm`` (random weights, a shape check).
   The export bundles hold untrained heads of the right size (speed does not depend on the weights).

Audio: RAVDESS from ../shared/data/ravdess when present (evenly spaced records, sorted by id), else the built-in
espeak-ng demo corpus. Prints one JSON object on stdout and writes it to ``benchmarks/results/ser_throughput.json``.

    .venv/bin/python benchmarks/ser_throughput.py                      # ~1-2 min on 2 cores
    .venv/bin/python benchmarks/ser_throughput.py --utterances 64 --epochs 1 --predict-n 16   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "ser_throughput.json"

if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--utterances", type=int, default=256, help="cached utterances for head training (default 256)")
    p.add_argument("--layers", type=int, default=13, help="L of the synthetic features (WavLM-base: 13)")
    p.add_argument("--dim", type=int, default=768, help="D of the synthetic features (WavLM-base: 768)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs per path, after the first read (default 5)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--predict-n", type=int, default=64, help="audio files for predict (default 64)")
    p.add_argument("--upstreams", default="lld,whisper-tiny.en-ct2,tiny-wavlm",
                   help="predict upstreams, comma-separated")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = the usable cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p.parse_args(argv)


def machine_state() -> dict:
    load1, load5, load15 = os.getloadavg()
    return {"loadavg_1m": round(load1, 2), "loadavg_5m": round(load5, 2), "loadavg_15m": round(load15, 2)}


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def synthetic_cache(root: Path, n: int, layers: int, dim: int, seed: int):
    """A ``ser-input`` feature cache of n utterances (L, T, D) float16, T in 50..300 frames; returns (cache, ids)."""
    from emotk.features.cache import FeatureCache

    rng = np.random.default_rng(seed)
    ids = [f"bench-{i:05d}" for i in range(n)]
    cache = FeatureCache.create(root, "ser-input", {"synthetic": True, "layers": layers, "dim": dim, "seed": seed},
                                ids, shard_size=64)
    frames = 0
    for j, block in enumerate(cache.blocks()):
        arrays = {}
        for uid in block:
            t = int(rng.integers(50, 301))
            frames += t
            arrays[uid] = {"hidden": rng.standard_normal((layers, t, dim), dtype=np.float32).astype(np.float16)}
        cache.write_shard(j, arrays)
    return FeatureCache(cache.path), ids, frames


def bench_head(args: argparse.Namespace, work: Path) -> dict:
    import torch

    from emotk.core.config import resolve
    from emotk.core.runs import RunDir
    from emotk.models.ser.config import SerConfig
    from emotk.models.ser.data import SerItem
    from emotk.models.ser.task import FeatureStore, SerTask
    from emotk.train.trainer import Trainer

    t0 = time.perf_counter()
    cache, ids, frames = synthetic_cache(work / "cache", args.utterances, args.layers, args.dim, args.seed)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    items = [SerItem(uid, int(rng.integers(0, 4))) for uid in ids]
    splits = {"train": items, "valid": [], "test": []}
    resolved = resolve(SerConfig, "ser.superb", None, [
        f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}", "train.log_every_steps=1000",
        "upstream.name=bench", f"runtime.threads={args.threads}", "runtime.device=cpu", "runtime.progress=off"])
    out: dict = {"utterances": args.utterances, "layers": args.layers, "dim": args.dim, "frames": frames,
                 "audio_hours": round(frames / 50 / 3600, 3), "epochs": args.epochs, "batch_size": args.batch_size,
                 "cache_build_s": round(build_s, 2),
                 "cache_bytes": sum(p.stat().st_size for p in cache.path.glob("*.safetensors")), "read_paths": {}}
    import dataclasses

    for name, pooling, memory_gb in (("mean_pooling", "mean", None),
                                     ("attentive_stats_memoised", "attentive_stats", None),
                                     ("attentive_stats_from_cache", "attentive_stats", 0.0)):
        store = FeatureStore(cache, memory_gb=memory_gb)
        cfg = dataclasses.replace(resolved.config, model=dataclasses.replace(resolved.config.model, pooling=pooling))
        task = SerTask(cfg, splits, store, classes=["a", "b", "c", "d"])
        run = RunDir.create(work / f"run-{name}", resolved, argv=["benchmark"])  # the hashed config is not used
        trainer = Trainer(cfg.train, task, run, resolved.runtime)
        t0 = time.perf_counter()
        dataset = task.train_dataset()
        for i in range(len(dataset)):  # the one-off first read (cache -> memory / per-utterance means)
            dataset[i]
        first_read = time.perf_counter() - t0
        cpu0, t0 = time.process_time(), time.perf_counter()
        fit = trainer.fit()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        seen = args.utterances * args.epochs
        out["read_paths"][name] = {
            "first_read_s": round(first_read, 3), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "steps": fit["steps"],
            "utterances_per_s": round(seen / wall, 1), "utterances_per_cpu_s": round(seen / cpu, 1),
            "steps_per_s": round(fit["steps"] / wall, 2),
            "audio_hours_per_s": round(frames * args.epochs / 50 / 3600 / wall, 4),
            "threads": torch.get_num_threads(),
        }
        log(f"head training ({name}): {out['read_paths'][name]['utterances_per_s']} utt/s")
    return out


def audio_inputs(n: int) -> tuple[list[str], dict]:
    """n audio paths: evenly spaced RAVDESS records (sorted ids), else the demo corpus."""
    manifest = SHARED / "data" / "ravdess" / "manifest.jsonl"
    source = "ravdess"
    if not manifest.is_file():
        from emotk.data.synth import ensure_demo_corpus

        manifest, source = ensure_demo_corpus(), "demo"
    recs = sorted((json.loads(x) for x in manifest.read_text().splitlines() if x.strip()), key=lambda r: r["id"])
    pick = sorted({int(round(i)) for i in np.linspace(0, len(recs) - 1, min(n, len(recs)))})
    paths = [str(manifest.parent / recs[i]["path"]) for i in pick]
    from emotk.data.audio import audio_info

    seconds = sum(audio_info(p).duration for p in paths)
    return paths, {"source": source, "files": len(paths), "audio_seconds": round(seconds, 2),
                   "first": [Path(p).name for p in paths[:3]]}


def bench_predict(args: argparse.Namespace, work: Path, paths: list[str], audio_seconds: float) -> dict:
    import torch

    from emotk.core.config import resolve
    from emotk.data.audio import load_audio
    from emotk.models.ser.config import SerConfig
    from emotk.models.ser.export import write_export
    from emotk.models.ser.features import build_feature_fn
    from emotk.models.ser.infer import SerPredictor, predict
    from emotk.models.ser.model import SuperbDims, SuperbDownstream

    results = {}
    for name in [u for u in args.upstreams.split(",") if u]:
        cfg = resolve(SerConfig, "ser.superb", None, [f"upstream.name={name}", "upstream.dtype=float16"]).config
        probe = build_feature_fn(cfg.feature_config())([load_audio(paths[0])])[0]["hidden"]
        torch.manual_seed(args.seed)
        model = SuperbDownstream(SuperbDims(int(probe.shape[0]), int(probe.shape[2]), 4))
        folder = write_export(work / f"export-{name}", model, cfg, ["a", "b", "c", "d"], None)
        t0 = time.perf_counter()
        predictor = SerPredictor(folder)  # export bundle + upstream, once per process
        load_s = time.perf_counter() - t0
        cpu0, t0 = time.process_time(), time.perf_counter()
        got = list(predict(predictor, paths, batch_size=16))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        assert len(got) == len(paths) and all("prediction" in g for g in got)
        results[name] = {"load_s": round(load_s, 3), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                         "utterances_per_s": round(len(paths) / wall, 2),
                         "utterances_per_cpu_s": round(len(paths) / cpu, 2),
                         "x_real_time": round(audio_seconds / wall, 1),
                         "layers": int(probe.shape[0]), "dim": int(probe.shape[2])}
        log(f"predict ({name}): {results[name]['utterances_per_s']} utt/s")
    return results


def main(argv: list[str] | None = None) -> dict:
    import torch

    from emotk.core.runs import git_revision, package_versions

    args = parse_args(argv)
    threads = args.threads or usable_cores()
    torch.set_num_threads(threads)
    before = machine_state()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="emotk-ser-bench-") as tmp:
        work = Path(tmp)
        head = bench_head(args, work)
        paths, audio = audio_inputs(args.predict_n)
        pred = bench_predict(args, work, paths, audio["audio_seconds"])
    after = machine_state()
    cores = usable_cores()
    result = {
        "benchmark": "ser_throughput",
        "head_training": head,
        "predict": {"audio": audio, "upstreams": pred},
        "machine": {"cpu_count": os.cpu_count(), "usable_cores": cores, "threads": threads,
                    "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
                    "loadavg_before": before, "loadavg_after": after,
                    "machine_quiet": before["loadavg_1m"] <= cores / 2,
                    "total_wall_s": round(time.perf_counter() - t0, 1),
                    "platform": platform.platform(), "python": platform.python_version()},
        "provenance": {"git_revision": git_revision(), "packages": package_versions(("numpy", "torch", "safetensors",
                                                                                     "faster-whisper", "transformers")),
                       "date": time.strftime("%Y-%m-%d")},
    }
    text = json.dumps(result, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from emotk.core.io import atomic_write_text

    atomic_write_text(args.out, text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()

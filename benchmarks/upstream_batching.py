#!/usr/bin/env python
"""Benchmark: SSL feature extraction one-by-one vs naive padded batches vs length-bucketed batches.

A HuBERT-base-sized model (transformers ``HubertConfig()`` defaults, random weights, nothing downloaded)
encodes N utterances of 1-6 s (RAVDESS from ../shared cropped to seeded random lengths, else seeded noise),
returning all 13 hidden layers per utterance, three ways:

* ``one_by_one``: :func:`emotk.features.upstream.extract` with batches of one (the reference outputs);
* ``naive_padded_8``: utterances in random order, zero-padded batches of 8 through the plain transformers
  call (``attention_mask`` given) -- what a first attempt looks like; its outputs differ from one-by-one
  (group-norm CNN and attention see the padding) and ``max_abs_diff`` says by how much;
* ``bucketed_<S>s``: ``extract(..., max_batch_seconds=S)`` (longest first, masks, exact outputs).

Prints one JSON object on stdout and writes it to ``benchmarks/results/upstream_batching.json``
(see benchmarks/README.md for the fields). Chatter goes to stderr.

    .venv/bin/python benchmarks/upstream_batching.py                 # CPU, ~5-8 min on 2 cores
    .venv/bin/python benchmarks/upstream_batching.py --device cuda --dtype float16 --n 400
    .venv/bin/python benchmarks/upstream_batching.py --model tiny --n 24   # a few seconds: smoke test
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
SHARED = REPO.parent / "shared"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "upstream_batching.json"
SR = 16000

if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100, help="number of utterances (default 100)")
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--max-seconds", type=float, default=6.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budgets", default="12,24,48", help="bucketed max_batch_seconds values, comma-separated")
    p.add_argument("--naive-batch", type=int, default=8)
    p.add_argument("--cnn-batching", choices=("auto", "per-item", "batched"), default="auto",
                   help="HFSpeechUpstream cnn_batching (auto: per item on CPU, batched on GPU)")
    p.add_argument("--model", choices=("base", "tiny"), default="base",
                   help="base: HubertConfig() (95M params); tiny: 2x32-d, for a smoke test")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                   help="model weights dtype (float16/bfloat16 only on cuda)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads; 0 = the cores not already busy per the 1-min load average (>= 1)")
    p.add_argument("--data", default=str(SHARED / "data" / "ravdess"),
                   help="a folder with manifest.jsonl (RAVDESS); synthetic noise when absent")
    p.add_argument("--synthetic", action="store_true", help="use seeded noise even when RAVDESS is present")
    p.add_argument("--repeats", type=int, default=1,
                   help="run the whole interleaved schedule this many times; each method keeps its fastest total")
    p.add_argument("--max-minutes", type=float, default=8.0,
                   help="skip further repeats (recorded in summary.skipped) that would end after this many minutes")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="where to write the JSON ('' = do not write)")
    return p.parse_args(argv)


def machine_state() -> dict:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load1, load5, load15 = os.getloadavg()
    return {"cpus": cpus, "load_1min": round(load1, 2), "load_5min": round(load5, 2), "load_15min": round(load15, 2)}


def auto_threads(requested: int) -> int:
    import torch

    if requested > 0:
        return requested
    state = machine_state()
    idle = state["cpus"] - int(round(state["load_1min"]))
    # two threads on two cores collapse when another process holds one (ENVIRONMENT.md): use the idle ones
    return max(1, min(torch.get_num_threads(), idle))


def load_utterances(args: argparse.Namespace) -> tuple[list[np.ndarray], dict]:
    """N float32 waveforms with seeded random lengths in [min, max] s; RAVDESS crops or noise."""
    rng = np.random.default_rng(args.seed)
    targets = rng.uniform(args.min_seconds, args.max_seconds, size=args.n)
    manifest = Path(args.data) / "manifest.jsonl"
    if args.synthetic or not manifest.is_file():
        wavs = [(0.1 * rng.standard_normal(int(t * SR))).astype(np.float32) for t in targets]
        return wavs, {"source": "synthetic noise", "seed": args.seed}
    from emotk.data.audio import load_audio

    records = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    records.sort(key=lambda r: r["id"])
    order = rng.permutation(len(records))
    wavs, used, k = [], set(), 0
    for t in targets:
        need = int(round(t * SR))
        pieces, have = [], 0
        while have < need:  # RAVDESS clips are 3-5 s: join consecutive (seeded) clips for long targets
            rec = records[int(order[k % len(order)])]
            k += 1
            audio = load_audio(manifest.parent / rec["path"], sr=SR)
            pieces.append(audio)
            used.add(rec["id"])
            have += len(audio)
        joined = np.concatenate(pieces)
        start = int(rng.integers(0, len(joined) - need + 1))
        wavs.append(joined[start:start + need].astype(np.float32))
    return wavs, {"source": str(manifest.parent), "files_used": len(used), "seed": args.seed}


def build_model(kind: str):
    from emotk.compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()
    import torch
    from transformers import HubertConfig, HubertModel

    if kind == "base":
        config = HubertConfig()  # the defaults are HuBERT-base: 12 x 768, CNN 7 x 512, group norm
    else:
        config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                              conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = HubertModel(config)
    return model.eval(), config


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_naive(model, wavs: list[np.ndarray], batches: list[list[int]], device: str, dtype,
              keep: list[int] | None = None) -> list[np.ndarray]:
    """Zero-padded batches through the plain transformers call (all layers kept, as extract() returns them)
    -> the last layer of each item, in input order (only the items in ``keep`` when given)."""
    import torch

    last: list = [None] * len(wavs)
    with torch.no_grad():
        for batch in batches:
            lens = torch.tensor([len(wavs[i]) for i in batch])
            padded = torch.zeros(len(batch), int(lens.max()))
            for j, i in enumerate(batch):
                padded[j, : len(wavs[i])] = torch.from_numpy(wavs[i])
            mask = (torch.arange(padded.shape[1])[None] < lens[:, None]).long()
            out = model(padded.to(device, dtype), attention_mask=mask.to(device), output_hidden_states=True)
            hidden = torch.stack(out.hidden_states, dim=1).float().cpu()  # (B, L, T, D), as extract() returns
            frames = model._get_feat_extract_output_lengths(lens).tolist()
            for j, i in enumerate(batch):
                item = hidden[j, :, : frames[j]].numpy().copy()
                last[i] = item[-1]
    return [last[i] for i in keep] if keep is not None else last


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    from emotk.core.io import atomic_write_json
    from emotk.features.upstream import Upstream, extract, padding_overhead, plan_batches

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    if args.dtype != "float32" and not args.device.startswith("cuda"):
        raise SystemExit(f"--dtype {args.dtype} is for GPUs; use float32 on CPU")
    threads = auto_threads(args.threads)
    torch.set_num_threads(threads)
    dtype = getattr(torch, args.dtype)
    state_before = machine_state()
    t_start = time.perf_counter()

    wavs, data_info = load_utterances(args)
    lengths = [len(w) for w in wavs]
    audio_seconds = sum(lengths) / SR
    model, config = build_model(args.model)
    model = model.to(args.device, dtype)
    up = Upstream.from_model(model, cnn_batching=args.cnn_batching)
    log(f"{len(wavs)} utterances, {audio_seconds:.1f} s of audio ({data_info['source']}); model {args.model} "
        f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params), {up.num_layers} layers x {up.dim}; "
        f"device {args.device}, {threads} torch threads; load {state_before['load_1min']}")
    extract(up, wavs[:2], max_batch_seconds=30.0)  # warm-up (allocator, oneDNN kernels)
    sync(args.device)

    order = np.random.default_rng(args.seed + 1).permutation(len(wavs)).tolist()  # random order
    plans = {"one_by_one": [[i] for i in range(len(wavs))],
             f"naive_padded_{args.naive_batch}": [order[i:i + args.naive_batch]
                                                  for i in range(0, len(order), args.naive_batch)]}
    for budget in (float(b) for b in args.budgets.split(",") if b.strip()):
        plans[f"bucketed_{budget:g}s"] = plan_batches(lengths, budget, cost=up.padded_input_samples)

    def run_batch(name: str, batch: list[int]) -> list[np.ndarray]:
        """One planned batch of one method -> the last layer of each item."""
        if name.startswith("naive"):
            return run_naive(model, wavs, [batch], args.device, dtype, keep=batch)
        feats = extract(up, [wavs[i] for i in batch], max_batch_seconds=1e12)  # the batch exactly as planned
        return [f[-1] for f in feats]

    # Every batch of every method is one task; the tasks run in a seeded random interleaving, so changes in the
    # machine's load during the run hit all methods alike (a method's time is the sum of its tasks' times).
    tasks = [(name, batch) for name, plan in plans.items() for batch in plan]
    runs: dict[str, list[dict]] = {name: [] for name in plans}
    last: dict[str, list] = {name: [None] * len(wavs) for name in plans}
    skipped: list[str] = []
    for rep in range(args.repeats):
        elapsed_min = (time.perf_counter() - t_start) / 60
        if rep and elapsed_min * (rep + 1) / rep > args.max_minutes:  # the next repeat would end past the limit
            skipped.append(f"repeats {rep + 1}..{args.repeats}")
            log(f"skipping repeats {rep + 1}..{args.repeats}: {elapsed_min:.1f} min done, "
                f"--max-minutes {args.max_minutes}")
            break
        totals = {name: {"wall_s": 0.0, "cpu_s": 0.0, "load_start": os.getloadavg()[0]} for name in plans}
        schedule = np.random.default_rng(args.seed + 100 + rep).permutation(len(tasks)).tolist()
        for step, t in enumerate(schedule):
            name, batch = tasks[t]
            sync(args.device)
            cpu0, t0 = time.process_time(), time.perf_counter()
            out = run_batch(name, batch)
            sync(args.device)
            totals[name]["wall_s"] += time.perf_counter() - t0
            totals[name]["cpu_s"] += time.process_time() - cpu0
            for i, item in zip(batch, out):
                last[name][i] = item
            if (step + 1) % max(1, len(schedule) // 10) == 0:
                log(f"repeat {rep + 1}: {step + 1}/{len(schedule)} tasks, load {os.getloadavg()[0]:.2f}")
        for name, total in totals.items():
            total["load_end"] = os.getloadavg()[0]
            runs[name].append(total)
        log("; ".join(f"{n}: {t['wall_s']:.1f} s wall, {t['cpu_s']:.1f} s CPU" for n, t in totals.items()))
    reference = last["one_by_one"]
    diffs = {name: float(max(np.abs(a - b).max() for a, b in zip(items, reference)))
             for name, items in last.items() if name != "one_by_one"}

    state_after = machine_state()
    quiet = all(s["load_1min"] < 0.5 * s["cpus"] for s in (state_before, state_after))
    # On a busy machine the wall clock measures our share of the CPU more than our work; with one thread the
    # process CPU time is the better measure of the work, so the summary uses it there.
    basis = "wall" if (quiet or threads > 1 or args.device.startswith("cuda")) else "cpu"
    results: dict[str, dict] = {}
    for name, plan in plans.items():
        if not runs[name]:
            results[name] = {"skipped": True}
            continue
        wall = min(r["wall_s"] for r in runs[name])
        cpu = min(r["cpu_s"] for r in runs[name])
        results[name] = {
            "wall_s": round(wall, 3), "process_cpu_s": round(cpu, 3),
            "utterances_per_s": round(len(wavs) / wall, 3), "audio_seconds_per_s": round(audio_seconds / wall, 3),
            "batches": len(plan), "mean_batch_size": round(len(wavs) / len(plan), 2),
            "padding_overhead": round(padding_overhead(lengths, plan), 4),
            "cpu_utilisation": round(cpu / wall, 2), "repeats": len(runs[name]),
            "load_1min": [round(v, 2) for r in runs[name] for v in (r["load_start"], r["load_end"])],
        }
        if name in diffs:
            results[name]["max_abs_diff_last_layer"] = diffs[name]
    base = results["one_by_one"]
    for entry in results.values():
        if "wall_s" in entry and "wall_s" in base:
            entry["throughput_vs_one_by_one"] = round(base["wall_s"] / entry["wall_s"], 3)
            entry["cpu_throughput_vs_one_by_one"] = round(base["process_cpu_s"] / entry["process_cpu_s"], 3)
    key = "throughput_vs_one_by_one" if basis == "wall" else "cpu_throughput_vs_one_by_one"
    bucketed = {k: v for k, v in results.items() if k.startswith("bucketed") and key in v}
    best = max(bucketed, key=lambda k: bucketed[k][key]) if bucketed else None
    worst = min(bucketed, key=lambda k: bucketed[k][key]) if bucketed else None
    naive = results.get(f"naive_padded_{args.naive_batch}", {})
    report = {
        "benchmark": "upstream_batching",
        "model": {"kind": f"hubert-{args.model} (HubertConfig{'()' if args.model == 'base' else ' tiny'}, "
                          "random weights)",
                  "parameters": int(sum(p.numel() for p in model.parameters())),
                  "num_layers": up.num_layers, "dim": up.dim, "frame_rate": up.frame_rate,
                  "cnn_mode": getattr(up, "cnn_mode", None),
                  "cnn_batching": getattr(up, "cnn_batching", None), "dtype": args.dtype},
        "data": {**data_info, "utterances": len(wavs), "audio_seconds": round(audio_seconds, 2),
                 "min_seconds": round(min(lengths) / SR, 3), "max_seconds": round(max(lengths) / SR, 3),
                 "target_range_s": [args.min_seconds, args.max_seconds]},
        "machine": {"device": args.device, "torch_threads": threads, "torch": torch.__version__,
                    "python": platform.python_version(), "platform": platform.platform(),
                    "before": state_before, "after": state_after, "quiet": quiet},
        "methods": results,
        "summary": {
            "ratio_basis": basis,
            "best_bucketed": best,
            "best_ratio": bucketed[best][key] if best else None,
            "worst_bucketed": worst,
            "worst_ratio": bucketed[worst][key] if worst else None,
            "naive_ratio": naive.get(key),
            "naive_padding_overhead": naive.get("padding_overhead"),
            "bucketed_exact": all(v.get("max_abs_diff_last_layer", 0.0) < 1e-3 for v in bucketed.values()),
            "target": "bucketed batching never slower than one-by-one",
            "target_met": all(v[key] >= 1.0 for v in bucketed.values()) if bucketed else None,
            "skipped": skipped,
        },
        "total_wall_s": round(time.perf_counter() - t_start, 1),
    }
    if not quiet:
        log(f"warning: the machine was busy (load {state_before['load_1min']} -> {state_after['load_1min']} on "
            f"{state_before['cpus']} cores); wall-clock timings are noisy, ratios use {basis} time")
    print(json.dumps(report, indent=2))
    if args.out:
        atomic_write_json(args.out, report)
        log(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()

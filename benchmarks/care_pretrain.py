#!/usr/bin/env python
"""Benchmark: CARE pre-training speed (steps/s) and peak memory, tiny and thesis-size (BASE) models.

Models are built from the shipped configs with random weights (nothing downloaded): ``tiny`` =
configs/pretrain/care-tiny.yaml (tiny-wavlm + tiny-roberta, 32-d lld targets, 384-d y_text), ``base`` =
configs/pretrain/care.yaml with ``hf-config:wavlm`` / ``hf-config:roberta`` (WavLM-base + RoBERTa-base shapes,
256-d lld targets, 768-d y_text). A step is what ``CareTask.training_step`` does: forward on a batch of 5 s
crops (seeded noise), L = L_sem + lambda * L_acoust (masked MSEs), backward, AdamW step. Each (model, batch)
case runs in its own subprocess, so ``ru_maxrss`` is that case's peak; ``warmup`` untimed steps, then ``steps``
timed ones.

Prints one JSON object on stdout and writes it to ``benchmarks/results/care_pretrain.json`` (fields in
benchmarks/README.md). Chatter goes to stderr.

    .venv/bin/python benchmarks/care_pretrain.py                       # CPU, tiny + base, batch 2 and 8
    .venv/bin/python benchmarks/care_pretrain.py --models tiny --batches 2 --steps 2   # smoke test
    .venv/bin/python benchmarks/care_pretrain.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "care_pretrain.json"
SR = 16000
CASES = {"tiny": ("configs/pretrain/care-tiny.yaml", []),
         "base": ("configs/pretrain/care.yaml", ["model.speech.source=hf-config:wavlm",
                                                 "model.text.source=hf-config:roberta"])}
SEMANTIC_DIM = {"tiny": 384, "base": 768}  # MiniLM / RoBERTa-base width of y_text

if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="tiny,base", help="comma-separated: tiny, base")
    p.add_argument("--batches", default="2,8", help="batch sizes, comma-separated")
    p.add_argument("--crop-seconds", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=3, help="timed steps per case (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all usable cores)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one case 'model:batch'
    return p.parse_args(argv)


def run_case(model_name: str, batch: int, args: argparse.Namespace) -> dict:
    """One (model, batch) case in this process -> timings and peak memory."""
    import torch

    from emotk.core.config import resolve
    from emotk.losses import masked_mse
    from emotk.models.care.config import CareConfig
    from emotk.models.care.model import build_care
    from emotk.train.trainer import seed_everything

    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    path, overrides = CASES[model_name]
    cfg = resolve(CareConfig, "pretrain.care", REPO / path, overrides).config
    seed_everything(0)
    t0 = time.perf_counter()
    model = build_care(cfg.model, acoustic_dim=cfg.acoustic.out_dim(), semantic_dim=SEMANTIC_DIM[model_name])
    build_s = time.perf_counter() - t0
    model = model.to(args.device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.train.optim.lr)
    n = int(round(args.crop_seconds * SR))
    g = torch.Generator().manual_seed(1)
    wav = (0.1 * torch.randn(batch, n, generator=g)).to(args.device)
    lengths = torch.full((batch,), n, dtype=torch.long, device=args.device)
    frames = int(model.output_lengths(torch.tensor([n]))[0])
    target = torch.randn(batch, frames, cfg.acoustic.out_dim(), generator=g).to(args.device)
    y = torch.randn(batch, SEMANTIC_DIM[model_name], generator=g).to(args.device)
    lam = float(cfg.model.lambda_acoustic)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def step() -> float:
        out = model(wav, lengths)
        loss = (out["semantic"] - y).pow(2).mean() + lam * masked_mse(out["acoustic"],
                                                                       target[:, :out["acoustic"].shape[1]],
                                                                       out["mask"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        return float(loss.detach())

    for _ in range(args.warmup):
        step()
    cpu0, t0 = time.process_time(), time.perf_counter()
    losses = [step() for _ in range(args.steps)]
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    counts = model.parameter_counts()
    return {"model": model_name, "batch_size": batch, "crop_seconds": args.crop_seconds, "frames": frames,
            "steps": args.steps, "warmup": args.warmup, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "steps_per_s": round(args.steps / wall, 4), "seconds_per_step": round(wall / args.steps, 3),
            "audio_seconds_per_s": round(args.steps * batch * args.crop_seconds / wall, 2),
            "build_s": round(build_s, 2), "loss_first_last": [round(losses[0], 5), round(losses[-1], 5)],
            "parameters_total": counts["total"], "parameters_trainable": counts["trainable"],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "cuda_max_allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
            "threads": torch.get_num_threads(), "device": args.device}


def provenance() -> dict:
    import torch
    import transformers

    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        rev = None
    return {"git": rev, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        name, batch = args.one.split(":")
        print(json.dumps(run_case(name, int(batch), args)))
        return 0
    models = [m for m in args.models.split(",") if m]
    bad = [m for m in models if m not in CASES]
    if bad:
        log(f"error: unknown model {bad[0]!r} (choose from {', '.join(CASES)})")
        return 2
    batches = [int(b) for b in args.batches.split(",") if b]
    load_before, t_all = os.getloadavg(), time.perf_counter()
    cases = []
    for name in models:
        for batch in batches:
            log(f"care_pretrain: {name} batch {batch} ...")
            cmd = [sys.executable, __file__, "--one", f"{name}:{batch}", "--crop-seconds", str(args.crop_seconds),
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
                   "--device", args.device]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            if proc.returncode != 0:
                log(proc.stderr[-2000:])
                return 1
            case = json.loads(proc.stdout.strip().splitlines()[-1])
            log(f"  {case['steps_per_s']} steps/s, peak RSS {case['peak_rss_mb']} MB")
            cases.append(case)
    result = {
        "benchmark": "care_pretrain",
        "cases": cases,
        "machine": {"cpu_count": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
                    "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                    "total_wall_s": round(time.perf_counter() - t_all, 1), "processor": platform.processor(),
                    "platform": platform.platform()},
        "provenance": provenance(),
    }
    text = json.dumps(result, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from emotk.core.io import atomic_write_text

    atomic_write_text(args.out, text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

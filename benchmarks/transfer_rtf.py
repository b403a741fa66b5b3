"""Benchmark S2S-ZEST synthesis on CPU: real-time factor of the WORLD backend and of the base BigVGAN generator.

Usage (from the repository root):

    .venv/bin/python benchmarks/transfer_rtf.py [--lengths 2,5,10] [--repeats 3] [--threads 0]
                                               [--out benchmarks/results/transfer_rtf.json]

Measures, each case in a fresh subprocess so that ``resource.getrusage`` gives that case's own peak memory and
page-fault count: WORLD re-synthesis (analysis + duration warp + synthesis) and the base-size generator
(random weights, weight norm folded, ~14.8M parameters) synthesising the whole utterance at once vs in chunks
(:func:`emotk.models.zest.vocoder.infer.synthesize`, balanced chunks of at most 6 s + receptive-field
overlap), at 2/5/10 s;
and vocoder training steps per second (one discriminator + one generator AdamW step) for the tiny and base
configs. RTF = processing seconds / audio seconds (best of ``repeats``). WORLD input is real speech from
``../shared/data/ravdess`` when present (utterances concatenated to the length), else a synthetic vowel signal.
The machine load (1-min average) is recorded before and after; the JSON goes to stdout and ``--out``.
Targets (issue): WORLD RTF <= 0.3; generator RTF <= 0.26 at 5 s and flat in length.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

SR = 16000
TARGETS = {"world_rtf": 0.3, "generator_rtf_5s": 0.26}


def _load() -> dict:
    la = os.getloadavg()
    return {"load_1min": round(la[0], 2), "load_5min": round(la[1], 2), "cpus": os.cpu_count()}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _speech(seconds: float) -> tuple[np.ndarray, str]:
    """``seconds`` of speech: RAVDESS utterances (sorted by id) concatenated, else synthetic vowels."""
    root = REPO.parent / "shared" / "data" / "ravdess"
    need = int(seconds * SR)
    if (root / "manifest.jsonl").is_file():
        import soundfile as sf

        recs = sorted((json.loads(line) for line in open(root / "manifest.jsonl", encoding="utf-8") if line.strip()),
                      key=lambda r: r["id"])
        parts, have = [], 0
        for r in recs:
            x, sr = sf.read(root / r["path"], dtype="float32", always_2d=False)
            if sr != SR or x.ndim != 1:
                continue
            parts.append(x)
            have += x.size
            if have >= need:
                return np.concatenate(parts)[:need], "ravdess"
    from scipy.signal import lfilter

    t = np.arange(need) / SR
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.5 * t)
    pulses = (np.diff(np.floor(np.cumsum(f0 / SR)), prepend=0.0) > 0).astype(float)
    x = pulses + 0.01 * np.random.default_rng(0).standard_normal(need)
    for fc, bw in [(700, 100), (1200, 120), (2600, 200)]:
        r, th = np.exp(-np.pi * bw / SR), 2 * np.pi * fc / SR
        x = lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], x)
    return (0.5 * x / np.abs(x).max()).astype(np.float32), "synthetic"


def _usage() -> dict:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"peak_rss_mb": round(ru.ru_maxrss / 1024, 1), "minor_page_faults": ru.ru_minflt,
            "major_page_faults": ru.ru_majflt}


def worker_world(seconds: float, repeats: int) -> dict:
    from emotk.features.f0 import F0Config, extract_f0
    from emotk.features.world_synth import warp_map, world_synthesize

    x, source = _speech(seconds)
    n = x.size // 320
    rng = np.random.default_rng(0)
    d_src = []
    while sum(d_src) < n:
        d_src.append(int(rng.integers(1, 7)))
    d_src[-1] -= sum(d_src) - n
    d_src = np.array([d for d in d_src if d > 0])
    d_out = np.maximum(1, np.round(d_src * rng.uniform(0.6, 1.4, d_src.size))).astype(int)
    f0 = extract_f0(x, SR, F0Config(backend="world"))
    pos = np.clip(np.round(warp_map(d_src, d_out, 1)).astype(int), 0, f0.size - 1)
    f0_conv = f0[pos] * 1.2
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        y = world_synthesize(x, SR, d_src, d_out, f0_conv)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"audio_s": seconds, "source": source, "output_s": y.size / SR, "best_s": min(times),
            "rtf": min(times) / seconds, "cpu_rtf": min(cpu) / seconds, "rtf_output": min(times) / (y.size / SR),
            **_usage()}


def worker_generator(seconds: float, mode: str, repeats: int, threads: int) -> dict:
    import torch

    from emotk.models.zest.vocoder.config import GeneratorConfig, SynthesisConfig
    from emotk.models.zest.vocoder.generator import VocoderGenerator, count_parameters
    from emotk.models.zest.vocoder.infer import synthesize

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    gen = VocoderGenerator(GeneratorConfig()).eval()
    params = count_parameters(gen)
    gen.remove_weight_norm()
    t = int(seconds * 50)
    rng = np.random.default_rng(0)
    tokens, f0 = rng.integers(0, 100, t), np.where(rng.random(t) > 0.3, 100 + 100 * rng.random(t), 0.0)
    s, e = rng.standard_normal(128), rng.standard_normal(128)
    chunk = None if mode == "whole" else SynthesisConfig().chunk_frames
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        synthesize(gen, tokens, f0, s, e, chunk_frames=chunk, retain_memory=mode == "chunked")
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"audio_s": seconds, "mode": mode, "threads": threads, "parameters": params, "best_s": min(times),
            "rtf": min(times) / seconds, "cpu_rtf": min(cpu) / seconds, "times_s": [round(v, 3) for v in times],
            "cpu_s": [round(v, 3) for v in cpu], **_usage()}


def worker_train(size: str, steps: int, batch: int, threads: int) -> dict:
    import torch

    from emotk.core.config import resolve
    from emotk.models.zest.vocoder.config import VocoderConfig
    from emotk.models.zest.vocoder.model import VocoderGAN
    from emotk.models.zest.vocoder.task import VocoderTask
    from emotk.train.optim import build_optimizers
    from emotk.train.task import StepState

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    name = "vocoder-tiny" if size == "tiny" else "vocoder"
    cfg = resolve(VocoderConfig, "transfer.vocoder", REPO / "configs" / "transfer" / f"{name}.yaml").config
    frames = cfg.data.segment_samples // 320
    task = VocoderTask(cfg, [])
    model = VocoderGAN(cfg).train()
    opts = build_optimizers(model, task.param_groups(model), cfg.train.optim)
    batch_t = {"tokens": torch.randint(0, 100, (batch, frames)), "f0": torch.full((batch, frames), 140.0),
               "speaker": torch.randn(batch, 128), "emotion": torch.randn(batch, 128),
               "wav": 0.3 * torch.randn(batch, frames * 320)}
    times = []
    for step in range(steps + 1):  # the first step warms up the allocator
        t0 = time.perf_counter()
        cache: dict = {}
        for oname, opt in opts.items():
            opt.zero_grad(set_to_none=True)
            out = task.training_step(model, batch_t, StepState(step=step, epoch=1, progress=0.0, optimizer=oname,
                                                               cache=cache, items=batch))
            out["loss"].backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    mean = float(np.min(times[1:]))
    return {"size": size, "batch": batch, "segment_samples": cfg.data.segment_samples, "threads": threads,
            "steps": steps, "s_per_step_best": round(mean, 3), "steps_per_s": round(1.0 / mean, 3), **_usage()}


def _run(args: list[str], timeout: float = 900) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="2,5,10")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = cores not busy per the load, >= 1)")
    p.add_argument("--train-steps", type=int, default=3)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "transfer_rtf.json"))
    p.add_argument("--worker", nargs="+")
    a = p.parse_args(argv)
    if a.worker:
        kind, *rest = a.worker
        if kind == "world":
            res = worker_world(float(rest[0]), int(rest[1]))
        elif kind == "gen":
            res = worker_generator(float(rest[0]), rest[1], int(rest[2]), int(rest[3]))
        else:
            res = worker_train(rest[0], int(rest[1]), int(rest[2]), int(rest[3]))
        print(json.dumps(res))
        return 0

    from emotk.core.io import atomic_write_json
    from emotk.core.runs import git_revision, package_versions

    t_start = time.time()
    before = _load()
    cores = _cores()
    threads = a.threads or max(1, min(cores, cores - int(round(before["load_1min"]))))
    lengths = [float(v) for v in a.lengths.split(",")]
    world = [_run(["world", str(s), str(a.repeats)]) for s in lengths]
    gen = [_run(["gen", str(s), mode, str(a.repeats), str(threads)]) for s in lengths
           for mode in ("whole", "chunked_plain", "chunked")]
    train = [_run(["train", "tiny", str(a.train_steps * 5), "3", str(threads)]),
             _run(["train", "base", str(a.train_steps), "4", str(threads)])]
    after = _load()
    five = 5.0 if 5.0 in lengths else lengths[len(lengths) // 2]

    def pick(mode: str, key: str) -> dict:
        return {s: next((g.get(key) for g in gen if g.get("mode") == mode and g.get("audio_s") == s), None)
                for s in lengths}

    def spread(values: dict) -> float | None:
        v = [x for x in values.values() if x]
        return round(max(v) / min(v), 3) if len(v) == len(values) and v else None

    summary: dict = {"world_rtf_max": max(w.get("rtf", float("inf")) for w in world),
                     "world_cpu_rtf_max": max(w.get("cpu_rtf", float("inf")) for w in world)}
    for mode in ("whole", "chunked_plain", "chunked"):
        wall, cpu = pick(mode, "rtf"), pick(mode, "cpu_rtf")
        summary[f"generator_{mode}"] = {"rtf": wall, "cpu_rtf": cpu, "rtf_5s": wall[five], "cpu_rtf_5s": cpu[five],
                                        "rtf_spread": spread(wall), "cpu_rtf_spread": spread(cpu)}
    quiet = before["load_1min"] < cores / 2
    basis = "rtf_5s" if quiet else "cpu_rtf_5s"
    summary["ratio_basis"] = "wall" if quiet else "cpu (machine busy: wall time measures the CPU share received)"
    summary["world_target_met"] = summary["world_rtf_max" if quiet else "world_cpu_rtf_max"] <= TARGETS["world_rtf"]
    summary["generator_target_met"] = (summary["generator_chunked"][basis] or 9) <= TARGETS["generator_rtf_5s"]
    result = {
        "benchmark": "transfer_rtf", "targets": TARGETS, "summary": summary, "world": world, "generator": gen,
        "training": train,
        "machine": {"usable_cores": cores, "torch_threads": threads, "before": before, "after": after,
                    "quiet": before["load_1min"] < cores / 2 and after["load_1min"] < cores / 2,
                    "versions": package_versions(), "git_revision": git_revision(REPO)},
        "total_wall_s": round(time.time() - t_start, 1),
    }
    text = json.dumps(result, indent=2)
    print(text)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(a.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

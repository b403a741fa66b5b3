"""Benchmark the F0 backends (emotk.features.f0) on real speech: speed and agreement with YAAPT.

Usage (from the repository root):

    .venv/bin/python benchmarks/f0_backends.py [--n 200] [--backends yaapt,world,harvest]
                                                [--out benchmarks/results/f0_backends.json]

Data: ``../shared/data/ravdess`` (16 kHz FLAC + manifest.jsonl) next to the repository, or ``--data DIR``.
The subset is deterministic: the manifest sorted by id, ``n`` evenly spaced records. Audio is decoded before
timing; backends are timed interleaved (utterance by utterance) so a change in machine load hits all of them
alike, in wall-clock and process-CPU time. YAAPT is the reference for the agreement measures.
The JSON result goes to stdout and to ``--out``; the fields are described in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from emotk.core.io import atomic_write_json, sha256_file, sha256_json  # noqa: E402
from emotk.core.runs import git_revision, package_versions  # noqa: E402
from emotk.features.f0 import F0Config, extract_f0, gross_pitch_error, voicing_agreement  # noqa: E402

# Not library backends: reference points for the tuning. world_plain = DIO + StoneMask with pyworld's default
# settings and none of emotk's voicing gate / post-processing (what the issue measured first).
VARIANTS = {
    "world_plain": dict(
        backend="world", f0_floor=71.0, f0_ceil=800.0, dio_speed=1, dio_allowed_range=0.1, voicing_threshold=0.0,
        max_gap=0, edge_extend=0, octave_fix=False, outlier=0.0, min_voiced=1, median=1,
    ),
}
TARGETS = {"speedup_vs_yaapt": 3.0, "voicing_agreement": 0.88, "gross_pitch_error": 0.07}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def select(manifest: Path, n: int) -> list[dict]:
    """``n`` evenly spaced records of the manifest sorted by id (all when n >= size)."""
    records = []
    with open(manifest, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    sys.exit(f"{manifest}:{line_no}: bad JSON ({e.msg})")
    records.sort(key=lambda r: r["id"])
    if n >= len(records):
        return records
    idx = np.linspace(0, len(records) - 1, n).round().astype(int)
    return [records[i] for i in idx]


def machine() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "thread_env": {k: os.environ.get(k) for k in THREAD_VARS},
        "threads_used": "1 per backend call (pyworld, pYAAPT and numpy FFT are single-threaded)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of RAVDESS utterances (default 200)")
    parser.add_argument("--backends", default="yaapt,world,harvest,world_plain",
                        help="comma-separated backends (yaapt, world, harvest) or variants (world_plain); "
                             "yaapt is required")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ravdess")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "f0_backends.json")
    args = parser.parse_args(argv)

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if "yaapt" not in backends:
        parser.error("--backends must include yaapt (the reference)")
    unknown = sorted(set(backends) - {"yaapt", "world", "harvest", *VARIANTS})
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(unknown)}")
    manifest = args.data / "manifest.jsonl"
    if not manifest.is_file():
        sys.exit(f"f0_backends: RAVDESS data not found at {args.data} (expected {manifest}); "
                 "this benchmark needs ../shared/data/ravdess next to the repository or --data DIR")
    if args.n < 1:
        parser.error("--n must be >= 1")

    import soundfile as sf

    from emotk.data.audio import load_audio

    records = select(manifest, args.n)
    wavs = [load_audio(args.data / r["path"], sr=16000) for r in records]
    audio_seconds = sum(len(w) for w in wavs) / 16000
    configs = {b: F0Config(**VARIANTS[b]) if b in VARIANTS else F0Config(backend=b) for b in backends}
    for b in backends:  # warm-up: imports and first-call costs stay out of the timings
        extract_f0(wavs[0], 16000, configs[b])

    load_before = os.getloadavg()
    if load_before[0] > 0.5 * (machine()["usable_cores"] or 1):
        print(f"f0_backends: warning: machine not quiet (load average {load_before[0]:.2f}); "
              "speeds are less reliable, compare the CPU-time figures", file=sys.stderr)
    wall = {b: 0.0 for b in backends}
    cpu = {b: 0.0 for b in backends}
    tracks: dict[str, list[np.ndarray]] = {b: [] for b in backends}
    start = time.perf_counter()
    for i, wav in enumerate(wavs):
        for b in backends:
            t0, c0 = time.perf_counter(), time.process_time()
            f0 = extract_f0(wav, 16000, configs[b])
            wall[b] += time.perf_counter() - t0
            cpu[b] += time.process_time() - c0
            tracks[b].append(f0)
        if (i + 1) % 50 == 0:
            print(f"f0_backends: {i + 1}/{len(wavs)} utterances", file=sys.stderr)
    total_wall = time.perf_counter() - start
    load_after = os.getloadavg()

    n = len(wavs)
    result_backends = {}
    for b in backends:
        entry = {
            "utterances_per_s": n / wall[b],
            "utterances_per_cpu_s": n / cpu[b] if cpu[b] > 0 else None,
            "realtime_factor": wall[b] / audio_seconds,
            "wall_s": wall[b],
            "cpu_s": cpu[b],
            "voiced_fraction": float(np.mean(np.concatenate(tracks[b]) > 0)),
            "config": asdict(configs[b]),
        }
        if b != "yaapt":
            va = voicing_agreement(tracks[b], tracks["yaapt"])
            gpe = gross_pitch_error(tracks[b], tracks["yaapt"])
            speed = wall["yaapt"] / wall[b]
            speed_cpu = cpu["yaapt"] / cpu[b] if cpu[b] > 0 else None
            entry["vs_yaapt"] = {
                "voicing_agreement": va,
                "gross_pitch_error": gpe,
                "speedup": speed,
                "speedup_cpu": speed_cpu,
                "meets_targets": bool(
                    va >= TARGETS["voicing_agreement"]
                    and gpe <= TARGETS["gross_pitch_error"]
                    and speed >= TARGETS["speedup_vs_yaapt"]
                ),
            }
        result_backends[b] = entry

    ids = [r["id"] for r in records]
    result = {
        "benchmark": "f0_backends",
        "data": {
            "dataset": "ravdess",
            "manifest_sha256": sha256_file(manifest),
            "utterances": n,
            "audio_seconds": audio_seconds,
            "subset": "manifest sorted by id, n evenly spaced records (numpy.linspace, rounded)",
            "subset_ids_sha256": sha256_json(ids),
            "first_ids": ids[:3],
        },
        "measures": {
            "voicing_agreement": "fraction of frames whose voiced/unvoiced state equals YAAPT's",
            "gross_pitch_error": "fraction of frames voiced in both where |f - f_yaapt| > 0.2 * f_yaapt",
            "targets": TARGETS,
        },
        "backends": result_backends,
        "machine": {
            **machine(),
            "loadavg_before": list(load_before),
            "loadavg_after": list(load_after),
            "total_wall_s": total_wall,
        },
        "provenance": {
            "git_revision": git_revision(REPO),
            "packages": package_versions(("numpy", "scipy", "pyworld", "amfm-decompy", "soundfile", "soxr")),
            "libsndfile": sf.__libsndfile_version__,
            "python": sys.version.split()[0],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pyworld's pkg_resources deprecation warning
        raise SystemExit(main())

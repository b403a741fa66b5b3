"""S2S-ZEST analysis models on RAVDESS: train on 20 actors, measure the F0 and duration predictors on 4 held-out ones.

Trains the tokenizer, the speaker stage and the analysis stage (emotion encoder + F0 predictor + duration
predictor) of configs/transfer/zest-ravdess-cpu.yaml on actors ravdess-01..20 with
emotk.demo.zest.train_demo_bundle, then evaluates the bundle on parallel pairs of the held-out actors
ravdess-21..24 with emotk.eval.zest_analysis: source = the neutral take of a sentence, target = the same actor
saying the same sentence in each other emotion (takes: intensity normal first, then repetition 1), the target as
the reference. Reported per method (the F0/duration predictors vs copying the source): F0 RMSE (Hz, cents) and
voicing accuracy against the target's YAAPT F0 through a DTW alignment, per-unit duration MSE and total-length
error, mean voiced log-F0 error; plus the same for the reconstruction (each source as its own reference).
Prints one JSON object and writes it to --out (default benchmarks/results/zest_ravdess.json).

Usage: python benchmarks/zest_ravdess.py [--work /tmp/zest-ravdess] [--config transfer/zest-ravdess-cpu]
                                         [--set KEY=VALUE ...] [--limit-pairs N] [--reuse] [--out FILE]
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
TRAIN_ACTORS = tuple(f"ravdess-{i:02d}" for i in range(1, 21))
HELD_OUT_ACTORS = tuple(f"ravdess-{i:02d}" for i in range(21, 25))
DEFAULT_CONFIG = "transfer/zest-ravdess-cpu"


def _bundle_sets(work: Path, train_manifest: Path, seed: int, overrides: list[str]) -> list[str]:
    """The overrides train_demo_bundle resolves the config with (to check a reused bundle against)."""
    return [f"tokens.tokenizer={work / 'tokens.safetensors'}", f"data.manifest={train_manifest}",
            f"train.seed={seed}", f"speaker_train.seed={seed}", *overrides]


def _config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out: list[str] = []
    for k in keys:
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _config_differences(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/zest-ravdess"),
                    help="folder for the training manifest, runs and bundle (default /tmp/zest-ravdess)")
    ap.add_argument("--config", default=DEFAULT_CONFIG, help=f"recipe name or YAML file (default {DEFAULT_CONFIG})")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override (repeatable), e.g. --set train.epochs=1")
    ap.add_argument("--limit-pairs", type=int, default=None, help="evaluate only N evenly spaced pairs (smoke runs)")
    ap.add_argument("--reuse", action="store_true",
                    help="skip training when WORK/bundle exists (same manifest and config)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads for the evaluation (training: runtime.threads)")
    ap.add_argument("--voiced-threshold", type=float, default=60.0,
                    help="predicted F0 above this (Hz) counts as voiced (default 60, the F0 floor of the trackers; "
                         "0: F0 > 0)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "zest_ravdess.json")
    args = ap.parse_args(argv)
    if not RAVDESS.is_file():
        print(f"zest_ravdess: {RAVDESS} not found (needs ../shared/data/ravdess)", file=sys.stderr)
        return 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from emotk.core.config import config_hash, resolve, to_dict
    from emotk.core.io import atomic_write_json, sha256_file
    from emotk.core.log import setup_logging
    from emotk.core.runs import git_revision, package_versions
    from emotk.data.audio import load_audio
    from emotk.data.manifest import Manifest
    from emotk.demo.zest import train_demo_bundle
    from emotk.eval.pairs import spread
    from emotk.eval.zest_analysis import evaluate_pairs, headline, plan_parallel_pairs
    from emotk.models.zest.config import TASK, ZestConfig
    from emotk.models.zest.export import load_bundle
    from emotk.recipes import find_config

    setup_logging(0)
    load_before = os.getloadavg()
    t_all = time.perf_counter()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    full = Manifest.load(RAVDESS)
    speakers = {str(r["speaker"]) for r in full}
    missing = sorted(set(TRAIN_ACTORS + HELD_OUT_ACTORS) - speakers)
    if missing:
        print(f"zest_ravdess: {RAVDESS} lacks actors {', '.join(missing)}", file=sys.stderr)
        return 1
    train_manifest = work / "train.jsonl"
    train = Manifest.from_records([r for r in full.with_absolute_paths() if str(r["speaker"]) in TRAIN_ACTORS])
    train_sha = train.save(train_manifest)
    bundle_dir = work / "bundle"
    requested = resolve(ZestConfig, TASK, find_config(args.config),
                        _bundle_sets(work, train_manifest, args.seed, args.overrides))
    training = None
    if args.reuse and (bundle_dir / "bundle.json").is_file():
        info = json.loads((bundle_dir / "bundle.json").read_text(encoding="utf-8"))
        have = (info.get("sources") or {}).get("manifest_sha256")
        if have != train_sha:
            print(f"zest_ravdess: --reuse: {bundle_dir} was trained on another manifest ({have}, expected "
                  f"{train_sha}); drop --reuse to retrain", file=sys.stderr)
            return 1
        diff = _config_differences(info["config"], to_dict(requested.config))
        if diff:
            print(f"zest_ravdess: --reuse: {bundle_dir} was trained with another config (differs in "
                  f"{', '.join(diff)}); drop --reuse to retrain", file=sys.stderr)
            return 1
        print(f"zest_ravdess: reusing {bundle_dir}", file=sys.stderr)
        train_seconds = None
    else:
        t0 = time.perf_counter()
        training = train_demo_bundle(train_manifest, work, args.seed, config=args.config, overrides=args.overrides)
        train_seconds = {**training["seconds"], "total": round(time.perf_counter() - t0, 2)}
        bundle_dir = Path(training["bundle"])

    torch.set_num_threads(max(1, args.threads))
    bundle = load_bundle(bundle_dir)
    held = full.filter(lambda r: str(r["speaker"]) in HELD_OUT_ACTORS)
    planned = plan_parallel_pairs(held, HELD_OUT_ACTORS, text_field="text")
    pairs = spread(planned, args.limit_pairs)
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            print(f"zest_ravdess: evaluated {done}/{total} pairs ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    measured = evaluate_pairs(bundle, pairs, lambda r: load_audio(full.resolve_path(r)),
                              voiced_threshold=args.voiced_threshold, progress=progress)
    eval_seconds = round(time.perf_counter() - t0, 2)
    conv, recon = measured["conversion"], measured["reconstruction"]
    result = {
        "benchmark": "zest_ravdess",
        "bundle": str(bundle_dir.resolve()),
        "headline": headline(conv),
        "pairs": measured["pairs"], "pairs_planned": len(planned), "sources": measured["sources"],
        "voiced_threshold_hz": measured["voiced_threshold_hz"],
        "conversion": conv, "reconstruction": recon, "emotion_accuracy": measured["emotion_accuracy"],
        "rows": measured["rows"], "reconstruction_rows": measured["reconstruction_rows"],
        "data": {"manifest": str(RAVDESS), "manifest_sha256": sha256_file(RAVDESS),
                 "train_manifest": str(train_manifest), "train_manifest_sha256": train_sha,
                 "train_actors": list(TRAIN_ACTORS), "held_out_actors": list(HELD_OUT_ACTORS),
                 "train_utterances": len(train), "held_out_utterances": len(held),
                 "pairing": "neutral source x every other emotion, same actor and text; takes: intensity normal, "
                            "then repetition 1"},
        "training": None if training is None else {k: training[k] for k in ("tokenizer", "speaker", "analysis")},
        "reused_bundle": training is None,
        "config": {"recipe": args.config, "overrides": list(args.overrides), "seed": args.seed,
                   "hash": config_hash(bundle.config, TASK)},
        "seconds": {"train": train_seconds, "evaluate": eval_seconds, "total": round(time.perf_counter() - t_all, 1)},
        "machine": {"cpu_count": os.cpu_count(), "eval_threads": torch.get_num_threads(),
                    "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg())},
        "provenance": {"git_revision": git_revision(REPO), "versions": package_versions(),
                       "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "command": "python benchmarks/zest_ravdess.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

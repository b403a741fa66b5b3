"""Emotion-style-transfer table on RAVDESS: the S2S-ZEST bundle of zest_ravdess vs the training-free floors.

Runs ``emotk evaluate est`` on the committed pair files of the RAVDESS held-out actors ravdess-21..24
(data_manifests/ravdess/est/: SSST, SSDT, DSST, DSDT and the any-to-any A2A; neutral sources, the other emotions as
references) with the bundle trained on actors 01-20 by ``benchmarks/zest_ravdess.py`` (its result JSON names the
bundle), then copies the report (table.md, results.json, results.csv, PNGs) to ``benchmarks/results/est_ravdess/``
and prints a JSON summary (also written to ``benchmarks/results/est_ravdess.json``) with the exact command.

Emo-Sim (``--emotion ser``, the default) is the cosine of the class posteriors of an emotk SER classifier trained
here on the training actors only: the SUPERB head over the bundled Whisper tiny.en encoder (``emotk ser train -c
ser/ravdess``, actors 01-17 train / 18-20 validation, one seed; its test accuracy on actors 21-24 is reported), so
the measure sees emotion, not speaker or text, and no test actor was seen. emotion2vec's weights are not available
offline here (``--emotion emotion2vec:PATH`` uses a local copy), and the small CPU bundle's own emotion encoder
barely separates the 8 emotions. Any ``measures.emotion`` spec can be given instead (e.g.
``upstream:whisper-tiny.en-ct2``). WER/CER and word timings: faster-whisper tiny.en.

Usage: python benchmarks/est_ravdess.py [--bundle DIR] [--work /tmp/est-ravdess] [--limit 48] [--resume]
                                        [--emotion ser|SPEC] [--ser-dir /tmp/est-ravdess-ser] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RAVDESS = REPO.parent / "shared" / "data" / "ravdess" / "manifest.jsonl"
PAIRS = REPO / "data_manifests" / "ravdess" / "est"
SETTINGS = ("SSST", "SSDT", "DSST", "DSDT", "A2A")
RESULTS = REPO / "benchmarks" / "results"
EMOTK = REPO / ".venv" / "bin" / "emotk"
SPLIT = {**{f"ravdess-{i:02d}": "train" for i in range(1, 18)}, **{f"ravdess-{i:02d}": "valid" for i in (18, 19, 20)},
         **{f"ravdess-{i:02d}": "test" for i in range(21, 25)}}


def train_ser(folder: Path) -> dict:
    """The Emo-Sim classifier: SUPERB SER on Whisper tiny.en features, actors 01-17 / 18-20 / 21-24 (reused when
    folder/export exists). Returns {"export", "command", "test"} (test metrics on the held-out actors)."""
    summary = folder / "summary.json"
    manifest = folder.parent / (folder.name + "-manifest.jsonl")
    cmd = [str(EMOTK), "--json", "ser", "train", "-c", "ser/ravdess", "--data", str(manifest), "-o", str(folder),
           "--seeds", "1", "--set", "data.protocol=", "--set", "data.fold=",
           "--set", "upstream.name=whisper-tiny.en-ct2"]
    if not (folder / "export" / "model.safetensors").is_file() or not summary.is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        lines = [json.loads(x) for x in RAVDESS.read_text().splitlines() if x.strip()]
        with open(manifest, "w") as f:
            for rec in lines:
                rec = {**rec, "path": str((RAVDESS.parent / rec["path"]).resolve()), "split": SPLIT[rec["speaker"]]}
                f.write(json.dumps(rec) + "\n")
        proc = subprocess.run(cmd + ["--overwrite"], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if proc.returncode != 0:
            raise SystemExit(f"est_ravdess: emotk ser train exited with {proc.returncode}")
    test = json.loads(summary.read_text()).get("test", {})
    return {"export": str(folder / "export"), "command": " ".join(["emotk", *cmd[1:]]),
            "test": {k: v.get("mean") if isinstance(v, dict) else v for k, v in test.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=None,
                    help="S2S-ZEST bundle (default: the 'bundle' of benchmarks/results/zest_ravdess.json)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/est-ravdess"), help="evaluation folder (emotk -o)")
    ap.add_argument("--limit", type=int, default=48, help="pairs per setting, evenly spaced (0 = all)")
    ap.add_argument("--emotion", default="ser", help="'ser' (train the SER classifier, see above) or a "
                    "measures.emotion spec")
    ap.add_argument("--ser-dir", type=Path, default=Path("/tmp/est-ravdess-ser"), help="SER run folder (--emotion ser)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted evaluation in --work")
    ap.add_argument("--out", type=Path, default=RESULTS / "est_ravdess.json")
    args = ap.parse_args(argv)
    if not RAVDESS.is_file():
        print(f"est_ravdess: {RAVDESS} not found (the RAVDESS copy in ../shared/data is needed)", file=sys.stderr)
        return 1
    bundle = args.bundle
    if bundle is None:
        prior = RESULTS / "zest_ravdess.json"
        if not prior.is_file():
            print("est_ravdess: no --bundle and no benchmarks/results/zest_ravdess.json (run zest_ravdess.py first)",
                  file=sys.stderr)
            return 1
        bundle = Path(json.loads(prior.read_text())["bundle"])
    ser = train_ser(args.ser_dir) if args.emotion == "ser" else None
    emotion = f"ser:{ser['export']}" if ser else args.emotion
    cmd = [str(EMOTK), "--json", "evaluate", "est", "--model", str(bundle),
           "--data", str(RAVDESS), "-o", str(args.work), "--limit", str(args.limit),
           "--set", f"measures.emotion={emotion}"]
    for setting in SETTINGS:
        cmd += ["--pairs", str(PAIRS / f"{setting}.jsonl")]
    for item in args.overrides:
        cmd += ["--set", item]
    cmd.append("--resume" if args.resume else "--overwrite")
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        print(f"est_ravdess: emotk evaluate est exited with {proc.returncode}", file=sys.stderr)
        return proc.returncode
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    dest = RESULTS / "est_ravdess"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(args.work / "report", dest)
    results = json.loads((dest / "results.json").read_text())
    shown = ["emotk" if i == 0 else str(x).replace(str(REPO) + "/", "") for i, x in enumerate(cmd)]
    summary = {
        "benchmark": "est_ravdess",
        "command": " ".join(shown),
        "bundle": str(bundle), "bundle_sha256": results["provenance"].get("bundle_sha256"),
        "coverage": result["coverage"], "backends": results["provenance"].get("backends"),
        "emotion_classifier": ser,
        "pairs": results["provenance"].get("pairs"),
        "systems": results["systems"],
        "report": str(dest.relative_to(REPO)),
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": {"cpu_count": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
    }
    text = json.dumps(summary, indent=2, sort_keys=True)
    args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

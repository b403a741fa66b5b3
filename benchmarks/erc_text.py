"""HCAM on real transcripts: IEMOCAP-6 and MELD text rows of thesis Table 4.1 (stage I, stage II), frozen MiniLM.

Issue "ERC part 1", item 8. Stage-I vectors are the bundled MiniLM's (all-MiniLM-L6-v2) mean-pooled sentence
embeddings, frozen (no fine-tuned RoBERTa on this CPU machine); stage I = a per-turn classifier on them, stage II =
HCAM's context network (bi-GRU -> self-attention -> FFN). Configs: configs/erc/iemocap-6-text.yaml and
configs/erc/meld-text.yaml (training values chosen on the validation dialogues; see their comments). Every system
uses the same splits as the anchors (../shared/docs/BASELINES.md, ERC section): IEMOCAP-6 iemocap-6-erc (5,163 /
647 / 1,623), MELD meld-official (9,989 / 1,109 / 2,610). Test weighted / macro F1, mean ± sample std over seeds.
Prints one JSON object and writes benchmarks/results/erc_text.json.

Usage: python benchmarks/erc_text.py [--seeds 3] [--threads 2] [--work /tmp/erc-text] [--datasets iemocap-6,meld]
       [--stages 1,2] (MELD needs a text-only manifest: emotk data prepare meld ../shared/data/meld -o DIR
       --option text_only=true; pass --meld DIR/manifest.jsonl, default WORK/meld/manifest.jsonl, made if absent)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
METRICS = ("weighted_f1", "macro_f1", "accuracy")
CONFIGS = {"iemocap-6": "erc/iemocap-6-text", "meld": "erc/meld-text"}
ANCHORS = {  # ../shared/docs/BASELINES.md (this machine) and the published text-only references (weighted F1, %)
    "iemocap-6": {"MiniLM + LR, no context": 46.6, "MiniLM + LR, context window": 55.3,
                  "DialogueRNN (GloVe-CNN), published": 62.75, "thesis HCAM text I (RoBERTa)": 53.8,
                  "thesis HCAM text II (RoBERTa)": 64.4},
    "meld": {"MiniLM + LR, no context": 56.3, "MiniLM + LR, context window": 55.9,
             "DialogueRNN (GloVe-CNN), published": 57.03, "thesis HCAM text I (RoBERTa)": 63.3,
             "thesis HCAM text II (RoBERTa)": 65.6},
}


def _emotk(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "emotk", *args], capture_output=True, text=True, env=env)


def run(dataset: str, stage: int, manifest: Path, args: argparse.Namespace) -> dict:
    out = args.work / f"{dataset}-stage{stage}"
    sets = [f"embed.cache_dir={args.work / 'features'}", f"runtime.threads={args.threads}"]
    cmd = ["erc", "train", "-c", CONFIGS[dataset], "--data", str(manifest), "--stage", str(stage), "--seeds",
           str(args.seeds), *[x for s in sets for x in ("--set", s)], "-o", str(out)]
    t0 = time.time()
    proc = _emotk(["--json", *cmd, "--resume" if out.exists() else "--overwrite"])
    if proc.returncode != 0:
        raise SystemExit(f"erc_text: emotk {shlex.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    s = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return {
        "dataset": dataset, "stage": stage, "command": "emotk " + shlex.join(cmd + ["--overwrite"]),
        "config_hash": s["config_hash"], "manifest_sha256": s.get("manifest_sha256"), "protocol": s.get("protocol"),
        "runs": s["runs_total"], "std": s["std_kind"], "wall_s": round(time.time() - t0, 1),
        "test": {m: {"mean": round(100 * s["test"][m]["mean"], 2), "std": round(100 * s["test"][m]["std"], 2),
                     "values": [round(100 * v, 2) for v in s["test"][m]["values"]]} for m in METRICS},
        "valid_weighted_f1": round(100 * s["valid"]["weighted_f1"]["mean"], 2),
        "late_best_runs": len(s.get("late_best_runs", [])),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/erc-text"))
    ap.add_argument("--datasets", default="iemocap-6,meld")
    ap.add_argument("--stages", default="1,2")
    ap.add_argument("--meld", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "erc_text.json")
    args = ap.parse_args()
    manifests = {"iemocap-6": SHARED / "iemocap-text" / "manifest.jsonl",
                 "meld": args.meld or args.work / "meld" / "manifest.jsonl"}
    if not manifests["iemocap-6"].is_file():
        print(f"erc_text: {manifests['iemocap-6']} not found (needs ../shared/data)", file=sys.stderr)
        return 1
    datasets = args.datasets.split(",")
    if "meld" in datasets and not manifests["meld"].is_file():
        proc = _emotk(["data", "prepare", "meld", str(SHARED / "meld"), "-o", str(manifests["meld"].parent),
                       "--option", "text_only=true"])
        if proc.returncode != 0:
            raise SystemExit(f"erc_text: preparing MELD failed:\n{proc.stderr[-2000:]}")
    t0 = time.time()
    load_before = os.getloadavg()
    results = [run(d, int(st), manifests[d], args) for d in datasets for st in args.stages.split(",")]
    report = {
        "benchmark": "erc_text",
        "stage_I": "bundled MiniLM (all-MiniLM-L6-v2) mean-pooled sentence embeddings, frozen",
        "seeds": args.seeds,
        "metrics_note": "test split, %, mean ± sample std (ddof 1) over seeds; model selection on validation "
                        "weighted F1 only",
        "anchors_weighted_f1": {d: ANCHORS[d] for d in datasets},
        "results": results,
        "machine": {"cpus": os.cpu_count(), "threads": args.threads, "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "wall_s": round(time.time() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""HCAM speed on CPU at full size: training conversations/s, batch prediction utterances/s, online latency per turn.

Issue "ERC part 1", item 9. Synthetic dialogues (IEMOCAP-like: 50 turns, 2 speakers; stage-I vectors of width 1024
as RoBERTa-large / HuBERT-large would give) through emotk's networks at the thesis / reference sizes
(emotk.models.erc.model.ErcNet): stage II per modality (thesis: GRU 200 x 2, attention 360 / 3 heads; reference:
four branches) and stage III fusion (60 / 3 / 2). Online latency: one new turn of a 100-turn dialogue through the
text and speech stage II models and stage III with cached past states (``ErcNet.step``), vs recomputing the whole
prefix; target < 20 ms on one core for stage II + III. Also prints the parameter counts of the full-size stage I
heads (RoBERTa-large text head, HuBERT-large speech head) and stages. Prints one JSON object and writes
benchmarks/results/erc_throughput.json.

Usage: python benchmarks/erc_throughput.py [--threads 1] [--turns 50] [--dialogues 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--turns", type=int, default=50)
    ap.add_argument("--dialogues", type=int, default=64)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "erc_throughput.json")
    args = ap.parse_args()
    import torch

    from emotk.models.erc.config import ErcModel
    from emotk.models.erc.model import ErcDims, ErcNet
    from emotk.nn.hcam import HcamSpeechUtteranceHead, HcamTextUtteranceHead, count_parameters

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b, t, d, classes = args.dialogues, args.turns, args.dim, 6
    feats = {m: torch.randn(b, t, d) for m in ("text", "speech")}
    mask = torch.ones(b, t, dtype=torch.bool)
    speaker = (torch.arange(t) % 2).expand(b, t).contiguous()
    labels = torch.randint(0, classes, (b, t))
    results: dict = {"parameters": {
        "stage I text head (RoBERTa-large, 4 x 1024 spliced)": count_parameters(HcamTextUtteranceHead(1024, classes)),
        "stage I speech head (HuBERT-large, 1024)": count_parameters(HcamSpeechUtteranceHead(1024, classes)),
    }}

    def net(stage: int, compat: str, causal: bool, inputs: dict) -> ErcNet:
        m = ErcModel(stage=stage, modalities=["text", "speech"] if stage == 3 else ["text"], compat=compat,
                     context="causal" if causal else "full", dropout=0.0)
        return ErcNet(ErcDims(inputs=inputs, num_classes=classes), m)

    cases = []
    for compat in ("thesis", "reference"):
        model = net(2, compat, False, {"text": d})
        results["parameters"][f"stage II {compat} (input {d})"] = count_parameters(model)
        opt = torch.optim.Adam(model.parameters(), lr=1e-5)
        bs = 8
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            for s in range(0, b, bs):
                logits, _ = model({"text": feats["text"][s:s + bs]}, mask[s:s + bs], speaker[s:s + bs])
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, classes), labels[s:s + bs].reshape(-1))
                opt.zero_grad()
                loss.backward()
                opt.step()
        train_s = time.perf_counter() - t0
        model.eval()
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(args.repeat):
                model({"text": feats["text"]}, mask, speaker)
        pred_s = time.perf_counter() - t0
        cases.append({"stage": "II", "compat": compat, "train_conversations_per_s": round(args.repeat * b / train_s, 1),
                      "predict_utterances_per_s": round(args.repeat * b * t / pred_s, 1)})
    fusion = net(3, "thesis", False, {"text": 360, "speech": 360})
    results["parameters"]["stage III (360 / 360)"] = count_parameters(fusion)

    # online: stage II text + speech (causal) and stage III (causal), one new turn of a 100-turn dialogue
    s2 = {m: net(2, "thesis", True, {"text": d}).eval() for m in ("text", "speech")}
    s3 = net(3, "thesis", True, {"text": 360, "speech": 360}).eval()
    turns = 100
    x = {m: torch.randn(turns, d) for m in ("text", "speech")}
    states: dict = {"text": None, "speech": None, "fusion": None}
    lat = []
    with torch.no_grad():
        for k in range(turns):
            t0 = time.perf_counter()
            emb = {}
            for m in ("text", "speech"):
                _, emb[m], states[m] = s2[m].step({"text": x[m][k]}, k % 2, states[m])
            _, _, states["fusion"] = s3.step(emb, k % 2, states["fusion"])
            lat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()  # recompute the whole 100-turn prefix for the last turn instead
        m100 = torch.ones(1, turns, dtype=torch.bool)
        sp100 = (torch.arange(turns) % 2)[None]
        e = {m: s2[m]({"text": x[m][None]}, m100, sp100)[1] for m in ("text", "speech")}
        s3(e, m100, sp100)
        recompute = time.perf_counter() - t0
    lat_ms = sorted(1000 * v for v in lat)
    results.update({
        "benchmark": "erc_throughput", "threads": args.threads, "dialogues": b, "turns": t, "input_dim": d,
        "cases": cases,
        "online_stage_II_III": {"turns": turns, "median_ms": round(lat_ms[len(lat_ms) // 2], 2),
                                "p95_ms": round(lat_ms[int(0.95 * len(lat_ms))], 2),
                                "last_turn_ms": round(1000 * lat[-1], 2),
                                "recompute_prefix_ms": round(1000 * recompute, 2), "target_ms": 20},
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

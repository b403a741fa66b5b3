"""``emotk demo``: the whole pipeline on the built-in demo corpus, offline, on CPU.

Stages (each later capability adds its own): corpus (synthesise or reuse the cached demo corpus) ->
validate -> split (speaker-independent folds) -> prosody (per-style F0 / rate / energy, showing that the
styles differ the way the corpus promises) -> ser (SUPERB SER head on the built-in lld descriptors, every
speaker fold, mean ± std of the test metrics) -> care (pre-train a tiny CARE on the corpus and compare SER on
its upstream with the same architecture untrained) -> zest (train a tiny S2S-ZEST, convert held-out sentences
between every pair of styles with the WORLD backend, save the wavs and a before/after F0 plot, measure how far
F0 moves toward the reference; a few BigVGAN steps) -> est (``emotk evaluate est`` on those held-out
sentences: Table 5.2 for the bundle vs the training-free floors). Every stage's result lands in one summary JSON
in the run dir.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emotk.core.config import Resolved
from emotk.core.log import get_logger
from emotk.data.synth import SynthConfig

log = get_logger("demo")

STAGES = ("corpus", "validate", "split", "prosody", "ser", "care", "zest", "est")


@dataclass
class DemoConfig:
    synth: SynthConfig = field(default_factory=SynthConfig)
    folds: int = 3  # speaker-independent folds over the demo speakers
    seed: int = 0
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    ser_config: str = "ser/demo"  # recipe for the SER stage (configs/ser/demo.yaml)
    care_steps: int = 300  # tiny-CARE pre-training steps in the care stage
    zest_config: str = "transfer/zest-demo"  # S2S-ZEST recipe of the zest stage (configs/transfer/zest-demo.yaml)
    zest_test_sentences: int = 2  # parallel sentences held out of S2S-ZEST training (converted in the zest stage)
    zest_set: list[str] = field(default_factory=list)  # --set-style overrides of the zest recipe (e.g. train.epochs=2)
    zest_vocoder_steps: int = 100  # BigVGAN steps of the zest stage (0 = none): shows the vocoder path, not quality
    est_config: str = "evaluate/est-demo"  # EST evaluation of the zest stage's bundle (configs/evaluate/est-demo.yaml)
    est_set: list[str] = field(default_factory=list)  # --set-style overrides of the est recipe (e.g. limit=4)

    def validate(self) -> None:
        from emotk.errors import ConfigError

        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ConfigError(f"config key 'stages': unknown stage '{unknown[0]}' (known: {', '.join(STAGES)})")
        for stage in ("ser", "care"):
            if stage in self.stages and "split" not in self.stages:
                raise ConfigError(f"config key 'stages': the '{stage}' stage needs the 'split' stage (its speaker folds)")
        if "est" in self.stages and "zest" not in self.stages:
            raise ConfigError("config key 'stages': the 'est' stage needs the 'zest' stage (its model bundle)")
        if self.zest_vocoder_steps < 0:
            raise ConfigError("config key 'zest_vocoder_steps': must be >= 0")
        if self.folds < 2:
            raise ConfigError("config key 'folds': need at least 2 folds")


def run_demo(resolved: Resolved, out_dir: Path, overwrite: bool = False, corpus_dir: Path | None = None) -> dict[str, Any]:
    """Run the demo stages into run directory ``out_dir``; returns the summary (also saved as summary.json)."""
    from emotk.core.io import atomic_write_json
    from emotk.core.runs import RunDir

    cfg: DemoConfig = resolved.config
    run = RunDir.create(out_dir, resolved, overwrite=overwrite, seed=cfg.seed)
    summary: dict[str, Any] = {"run_dir": str(out_dir), "config_hash": resolved.hash, "stages": {}}
    t_all = time.perf_counter()

    # corpus ---------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    from emotk.data.synth import synthesize

    corpus = corpus_dir or (out_dir / "corpus")
    log.info(f"demo: corpus -> {corpus}")
    synth_summary = synthesize(corpus, cfg.synth, overwrite=False)
    manifest_path = corpus / "manifest.jsonl"
    summary["stages"]["corpus"] = {**_pick(synth_summary, ("utterances", "speakers", "styles", "hours", "config_hash")),
                                   "manifest": str(manifest_path), "seconds": round(time.perf_counter() - t0, 2)}
    run.update(inputs={"demo_manifest": _sha(manifest_path)})

    if "validate" in cfg.stages:
        t0 = time.perf_counter()
        from emotk.data.validate import validate_manifest
        from emotk.data.labels import LabelMap

        lm_path = corpus / "label_map.json"
        report = validate_manifest(manifest_path, label_map=LabelMap.load(lm_path) if lm_path.exists() else None)
        summary["stages"]["validate"] = {"ok": report.ok, "errors": len(report.errors), "warnings": len(report.warnings),
                                         "seconds": round(time.perf_counter() - t0, 2)}
        if not report.ok:
            from emotk.errors import DataError

            raise DataError(f"demo corpus failed validation: {report.errors[0].format(manifest_path)}")

    if "split" in cfg.stages:
        t0 = time.perf_counter()
        from emotk.data.manifest import Manifest
        from emotk.data.protocols import make_folds

        m = Manifest.load(manifest_path)
        proto = make_folds(m, n_folds=cfg.folds, unit="speaker", seed=cfg.seed, n_valid=1, name="demo-speaker-folds",
                           dataset="demo")
        proto.save(out_dir / "protocol.json")
        folds = {f: {k: len(v) for k, v in proto.assign(m, f).items()} for f in proto.fold_names}
        summary["stages"]["split"] = {"protocol_sha256": proto.sha256, "folds": folds,
                                      "seconds": round(time.perf_counter() - t0, 2)}

    if "prosody" in cfg.stages:
        t0 = time.perf_counter()
        summary["stages"]["prosody"] = {"per_style": prosody_by_style(manifest_path),
                                        "seconds": round(time.perf_counter() - t0, 2)}

    if "ser" in cfg.stages:
        t0 = time.perf_counter()
        summary["stages"]["ser"] = {**ser_stage(cfg, manifest_path, out_dir), "seconds": round(time.perf_counter() - t0, 2)}

    if "care" in cfg.stages:
        from emotk.models.care.demo import care_demo_stage

        summary["stages"]["care"] = care_demo_stage(manifest_path, out_dir / "protocol.json", out_dir / "care", cfg.seed,
                                                    steps=cfg.care_steps)

    if "zest" in cfg.stages:
        from emotk.models.zest.demo import zest_demo_stage

        z = zest_demo_stage(manifest_path, out_dir / "zest", cfg.seed, test_sentences=cfg.zest_test_sentences,
                            config=cfg.zest_config, overrides=cfg.zest_set, vocoder_steps=cfg.zest_vocoder_steps)
        summary["stages"]["zest"] = {k: v for k, v in z.items() if k != "per_pair"}

    if "est" in cfg.stages:
        summary["stages"]["est"] = est_stage(cfg, summary["stages"]["zest"], out_dir / "est")

    summary["seconds"] = round(time.perf_counter() - t_all, 2)
    atomic_write_json(out_dir / "summary.json", summary)
    return summary


def est_stage(cfg: DemoConfig, zest: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """``emotk evaluate est`` on the zest stage's held-out sentences (its parallel settings and the any-to-any
    matrix): the trained bundle vs the world-baseline and copy-source floors, with faster-whisper tiny.en,
    Resemblyzer and the bundle's emotion encoder. Returns the report's systems section, coverage and paths."""
    import json

    from emotk.core.config import resolve
    from emotk.eval.est import TASK, EstConfig, run_est
    from emotk.recipes import find_config

    t0 = time.perf_counter()
    resolved = resolve(EstConfig, TASK, find_config(cfg.est_config), cfg.est_set)
    result = run_est(resolved, out_dir, models=[zest["bundle"]], data=[zest["held_out_manifest"]], overwrite=True,
                     progress_every=0)
    results = json.loads(Path(result["report"]["json"]).read_text(encoding="utf-8"))
    return {"systems": results["systems"], "coverage": result["coverage"],
            "backends": results["provenance"]["backends"], "report": result["report"]["markdown"],
            "seconds": round(time.perf_counter() - t0, 2)}


def ser_stage(cfg: DemoConfig, manifest_path: Path, out_dir: Path) -> dict[str, Any]:
    """Train/evaluate SUPERB SER on every demo speaker fold; returns test metrics (mean ± std over folds)."""
    from emotk.core.config import resolve
    from emotk.models.ser.config import SerConfig
    from emotk.models.ser.task import train as ser_train
    from emotk.recipes import find_config

    overrides = [f"data.manifest={manifest_path}", f"data.protocol={out_dir / 'protocol.json'}", f"train.seed={cfg.seed}"]
    resolved = resolve(SerConfig, "ser.superb", find_config(cfg.ser_config), overrides)
    result = ser_train(resolved, out_dir / "ser", overwrite=True, argv=["emotk", "demo"])
    metrics = ("weighted_f1", "balanced_accuracy", "accuracy", "macro_f1")
    return {
        "upstream": resolved.config.upstream.name,
        "folds": len(result.get("folds", [])),
        "classes": result.get("classes"),
        "test": {m: {"mean": result["test"][m]["mean"], "std": result["test"][m]["std"]} for m in metrics if m in result["test"]},
        "run_dir": str(out_dir / "ser"),
    }


def prosody_by_style(manifest_path: Path, max_per_style: int = 40) -> dict[str, dict[str, float]]:
    """Mean F0 (Hz, voiced frames), F0 range (std of log-F0 in semitones), speaking rate (words/s) and level (dBFS)
    per emotion style, over at most ``max_per_style`` utterances each (WORLD F0 backend for speed)."""
    import numpy as np

    from emotk.core.audio import SAMPLE_RATE
    from emotk.data.audio import load_audio
    from emotk.data.manifest import Manifest
    from emotk.features.f0 import F0Config, extract_f0

    m = Manifest.load(manifest_path)
    by_style: dict[str, list[dict[str, Any]]] = {}
    for rec in m:
        if rec.get("dialogue") is None and rec.get("emotion"):
            by_style.setdefault(rec["emotion"], []).append(rec)
    cfg = F0Config(backend="world")
    out = {}
    for style in sorted(by_style):
        f0s, rates, levels = [], [], []
        recs = by_style[style]
        step = max(1, len(recs) // max_per_style)  # spread over all speakers, not the first few
        chosen = recs[::step][:max_per_style]
        for rec in chosen:
            wav = load_audio(m.resolve_path(rec))
            f0 = extract_f0(wav, SAMPLE_RATE, cfg)
            voiced = f0[f0 > 0]
            if voiced.size:
                f0s.append(voiced)
            words = len(str(rec.get("text", "")).split())
            rates.append(words / max(len(wav) / SAMPLE_RATE, 1e-3))
            levels.append(20 * np.log10(np.sqrt(np.mean(wav**2)) + 1e-9))
        allf0 = np.concatenate(f0s) if f0s else np.zeros(1)
        semis = 12 * np.log2(allf0[allf0 > 0] / 100.0) if (allf0 > 0).any() else np.zeros(1)
        out[style] = {
            "utterances": len(chosen),
            "mean_f0_hz": round(float(allf0.mean()), 1),
            "f0_range_semitones": round(float(semis.std()), 2),
            "words_per_s": round(float(np.mean(rates)), 2),
            "level_dbfs": round(float(np.mean(levels)), 1),
        }
    return out


def _pick(d: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: d[k] for k in keys if k in d}


def _sha(path: Path) -> str:
    from emotk.core.io import sha256_file

    return sha256_file(path)

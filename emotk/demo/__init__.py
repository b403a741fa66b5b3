"""``emotk demo``: the whole pipeline on the built-in demo corpus, offline, on CPU.

:class:`DemoConfig` (task ``demo``, configs/demo.yaml) and :func:`run_demo`; one module per stage, each calling
the public API of the task it shows: :mod:`.corpus` (corpus, validate, split), :mod:`.prosody`, :mod:`.ser`,
:mod:`.erc`, :mod:`.care`, :mod:`.zest` and :mod:`.est`.

Stages (each later capability adds its own): corpus (synthesise or reuse the cached demo corpus) ->
validate -> split (speaker-independent folds) -> prosody (per-style F0 / rate / energy, showing that the
styles differ the way the corpus promises) -> ser (SUPERB SER head on the built-in lld descriptors, every
speaker fold, mean ± std of the test metrics, the thesis's and emotk's strong recipe) -> erc (HCAM on the
demo dialogues: text and speech stage II, then their stage III fusion) -> care (pre-train a tiny CARE on the
corpus and compare SER on its upstream with the same architecture untrained) -> zest (train a tiny S2S-ZEST,
convert held-out sentences between every pair of styles with the WORLD backend, save the wavs and a before/after
F0 plot, measure how far F0 moves toward the reference; a few BigVGAN steps) -> est (``emotk evaluate est`` on
those held-out sentences: Table 5.2 for the bundle vs the training-free floors). Every stage's result lands in one
summary JSON in the run dir.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emotk.core.config import Resolved
from emotk.data.synth import SynthConfig

STAGES = ("corpus", "validate", "split", "prosody", "ser", "erc", "care", "zest", "est")


@dataclass
class DemoConfig:
    synth: SynthConfig = field(default_factory=SynthConfig)
    folds: int = 3  # speaker-independent folds over the demo speakers
    seed: int = 0
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    ser_config: str = "ser/demo"  # recipe for the SER stage (configs/ser/demo.yaml)
    ser_strong_config: str = "ser/demo-strong"  # emotk's strong recipe beside it ("" = skip)
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
                raise ConfigError(f"config key 'stages': the '{stage}' stage needs the 'split' stage "
                                  "(its speaker folds)")
        if "est" in self.stages and "zest" not in self.stages:
            raise ConfigError("config key 'stages': the 'est' stage needs the 'zest' stage (its model bundle)")
        if self.zest_vocoder_steps < 0:
            raise ConfigError("config key 'zest_vocoder_steps': must be >= 0")
        if self.folds < 2:
            raise ConfigError("config key 'folds': need at least 2 folds")


def run_demo(resolved: Resolved, out_dir: Path, overwrite: bool = False,
             corpus_dir: Path | None = None) -> dict[str, Any]:
    """Run the demo stages into run directory ``out_dir``; returns the summary (also saved as summary.json).

    corpus_dir: where the demo corpus is built or reused (default ``out_dir/corpus``).
    """
    from emotk.core.io import atomic_write_json, sha256_file
    from emotk.core.runs import RunDir
    from emotk.demo.corpus import corpus_stage, split_stage, validate_stage

    cfg: DemoConfig = resolved.config
    run = RunDir.create(out_dir, resolved, overwrite=overwrite, seed=cfg.seed)
    summary: dict[str, Any] = {"run_dir": str(out_dir), "config_hash": resolved.hash, "stages": {}}
    stages = summary["stages"]
    t_all = time.perf_counter()

    corpus = corpus_dir or (out_dir / "corpus")
    stages["corpus"] = corpus_stage(cfg.synth, corpus)
    manifest_path = corpus / "manifest.jsonl"
    run.update(inputs={"demo_manifest": sha256_file(manifest_path)})
    protocol_path = out_dir / "protocol.json"

    if "validate" in cfg.stages:
        stages["validate"] = validate_stage(manifest_path)

    if "split" in cfg.stages:
        stages["split"] = split_stage(manifest_path, protocol_path, cfg.folds, cfg.seed)

    if "prosody" in cfg.stages:
        from emotk.demo.prosody import prosody_by_style

        t0 = time.perf_counter()
        stages["prosody"] = {"per_style": prosody_by_style(manifest_path),
                             "seconds": round(time.perf_counter() - t0, 2)}

    if "ser" in cfg.stages:
        from emotk.demo.ser import ser_stage

        t0 = time.perf_counter()
        ser_cache = out_dir / "ser-features"  # both recipes read the same lld features
        stages["ser"] = {**ser_stage(manifest_path, protocol_path, out_dir / "ser", cfg.seed, config=cfg.ser_config,
                                     cache_dir=ser_cache),
                         "seconds": round(time.perf_counter() - t0, 2)}
        if cfg.ser_strong_config:
            t0 = time.perf_counter()
            stages["ser"]["strong"] = {**ser_stage(manifest_path, protocol_path, out_dir / "ser-strong", cfg.seed,
                                                   config=cfg.ser_strong_config, cache_dir=ser_cache),
                                       "seconds": round(time.perf_counter() - t0, 2)}

    if "erc" in cfg.stages:
        from emotk.demo.erc import erc_stage

        t0 = time.perf_counter()
        stages["erc"] = {**erc_stage(manifest_path, out_dir / "erc", cfg.seed),
                         "seconds": round(time.perf_counter() - t0, 2)}

    if "care" in cfg.stages:
        from emotk.demo.care import care_demo_stage

        stages["care"] = care_demo_stage(manifest_path, protocol_path, out_dir / "care", cfg.seed, steps=cfg.care_steps)

    if "zest" in cfg.stages:
        from emotk.demo.zest import zest_demo_stage

        z = zest_demo_stage(manifest_path, out_dir / "zest", cfg.seed, test_sentences=cfg.zest_test_sentences,
                            config=cfg.zest_config, overrides=cfg.zest_set, vocoder_steps=cfg.zest_vocoder_steps)
        stages["zest"] = {k: v for k, v in z.items() if k != "per_pair"}

    if "est" in cfg.stages:
        from emotk.demo.est import est_stage

        stages["est"] = est_stage(stages["zest"], out_dir / "est", config=cfg.est_config, overrides=cfg.est_set)

    summary["seconds"] = round(time.perf_counter() - t_all, 2)
    atomic_write_json(out_dir / "summary.json", summary)
    return summary

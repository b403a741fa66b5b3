"""S2S-ZEST training stages (METHODS.md §6): the :class:`emotk.train.task.TrainTask` of each stage and
:func:`train`, the train entry point of task ``transfer.zest``.

* :class:`SpeakerTask` / :class:`AnalysisTask`: the hooks of the speaker and analysis stages;
* :func:`train`: config + manifest -> a run directory with checkpoints and ``zest.json`` (what a bundle needs
  to rebuild the model: label lists, dimensions, the HuBERT config). The BigVGAN vocoder stage is
  :func:`emotk.models.zest.vocoder.task.train`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from emotk.errors import DataError, UsageError
from emotk.models.zest.data import Corpus, Utterance, check_corpus, prepare_corpus
from emotk.models.zest.model import build_analysis_model, build_speaker_model
from emotk.train.task import TrainTask

STAGES = ("speaker", "analysis")


def collate_analysis(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Analysis items -> padded batch: wav (B, S), wav_lengths, frames (B,), tokens/f0 (B, T), units/durations
    (B, U) + unit_mask, speaker_embedding (B, 128), speaker / emotion (B,), ids."""
    import torch

    from emotk.features.tokens import dedup
    from emotk.nn.masks import lengths_to_mask, pad_sequences

    wav, wav_len = pad_sequences([torch.from_numpy(it["wav"]) for it in items])
    tokens, frames = pad_sequences([torch.from_numpy(it["tokens"]) for it in items])
    f0, _ = pad_sequences([torch.from_numpy(it["f0"]) for it in items])
    units, durs = zip(*(dedup(it["tokens"]) for it in items))
    units_t, unit_len = pad_sequences([torch.from_numpy(u) for u in units])
    durs_t, _ = pad_sequences([torch.from_numpy(x) for x in durs])
    return {"wav": wav.float(), "wav_lengths": wav_len, "frames": frames, "tokens": tokens.long(), "f0": f0.float(),
            "units": units_t.long(), "durations": durs_t.float(),
            "unit_mask": lengths_to_mask(unit_len, units_t.shape[1]),
            "speaker_embedding": torch.stack([torch.from_numpy(it["speaker_embedding"]) for it in items]).float(),
            "speaker": torch.tensor([it["speaker"] for it in items]),
            "emotion": torch.tensor([it["emotion"] for it in items]), "ids": [it["id"] for it in items]}


def _accuracy(logits: Any, labels: Any) -> float:
    return float((logits.argmax(-1) == labels).float().mean()) if len(labels) else 0.0


class SpeakerTask(TrainTask):
    """Speaker stage: x-vectors -> SpeakerEncoder; CE_spk + CE_emo through the GRL (scheduled coefficient).

    Validation metrics: ``loss`` (CE_spk), ``speaker_accuracy``, ``emotion_accuracy`` (of the adversary: lower
    means less emotion in s).
    """

    def __init__(self, cfg: Any, corpus: Corpus) -> None:
        self.cfg, self.corpus = cfg, corpus
        self._train = [self._item(u) for u in corpus.split("train")]
        self._valid = [self._item(u) for u in corpus.split("valid")] or None

    @staticmethod
    def _item(u: Utterance) -> dict[str, Any]:
        return {"id": u.id, "xvector": u.xvector, "speaker": u.speaker, "emotion": u.emotion}

    def build_model(self):
        return build_speaker_model(self.cfg, self.corpus.xvector_dim, len(self.corpus.speakers),
                                   len(self.corpus.emotions))

    def train_dataset(self):
        return self._train

    def valid_dataset(self):
        return self._valid

    def collate(self, items: list) -> dict[str, Any]:
        import torch

        return {"xvector": torch.from_numpy(np.stack([it["xvector"] for it in items])).float(),
                "speaker": torch.tensor([it["speaker"] for it in items]),
                "emotion": torch.tensor([it["emotion"] for it in items]), "ids": [it["id"] for it in items]}

    def training_step(self, model: Any, batch: dict[str, Any], state: Any) -> dict:
        from emotk.models.zest.speaker import speaker_losses

        model.grl.set_progress(state.progress, scale=model.adv_weight, gamma=self.cfg.speaker.grl_gamma)
        out = model(batch["xvector"])
        return {**speaker_losses(out, batch["speaker"], batch["emotion"]), "grl": model.grl.coefficient}

    def validation_step(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        out = model(batch["xvector"])
        return {"speaker_logits": out["speaker_logits"], "emotion_logits": out["emotion_logits"],
                "speaker": batch["speaker"], "emotion": batch["emotion"]}

    def validation_metrics(self, outputs: dict[str, Any]) -> dict[str, float]:
        import torch.nn.functional as F

        return {"loss": float(F.cross_entropy(outputs["speaker_logits"].float(), outputs["speaker"])),
                "speaker_accuracy": _accuracy(outputs["speaker_logits"], outputs["speaker"]),
                "emotion_accuracy": _accuracy(outputs["emotion_logits"], outputs["emotion"])}


class AnalysisTask(TrainTask):
    """Analysis stage: emotion encoder + F0 + duration predictors, joint loss (thesis weights).

    speaker_embeddings: id -> s (128,) from the trained speaker stage (frozen). Validation metrics: ``loss``
    (the joint loss), ``emotion_accuracy``, ``f0_l1`` (Hz), ``duration_mse`` (target domain).
    """

    def __init__(self, cfg: Any, corpus: Corpus, speaker_embeddings: dict[str, np.ndarray],
                 device: str = "cpu") -> None:
        self.cfg, self.corpus, self.device = cfg, corpus, device
        self.upstream_description: dict | None = None
        self._train = [self._item(u, speaker_embeddings) for u in corpus.split("train")]
        self._valid = [self._item(u, speaker_embeddings) for u in corpus.split("valid")] or None

    @staticmethod
    def _item(u: Utterance, emb: dict[str, np.ndarray]) -> dict[str, Any]:
        return {"id": u.id, "wav": u.wav, "tokens": u.tokens, "f0": u.f0, "speaker_embedding": emb[u.id],
                "speaker": u.speaker, "emotion": u.emotion}

    def build_model(self):
        tok = self.cfg.tokens.n_clusters
        model, desc = build_analysis_model(self.cfg, tok, len(self.corpus.speakers), len(self.corpus.emotions))
        self.upstream_description = desc
        return model

    def train_dataset(self):
        return self._train

    def valid_dataset(self):
        return self._valid

    def collate(self, items: list) -> dict[str, Any]:
        return collate_analysis(items)

    def training_step(self, model: Any, batch: dict[str, Any], state: Any) -> dict:
        grl = model.emotion.grl
        grl.set_progress(state.progress, scale=model.emotion.adv_weight, gamma=self.cfg.emotion.grl_gamma)
        out = model(batch)
        return {**model.losses(out, batch), "grl": grl.coefficient}

    def validation_step(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        out = model(batch)
        parts = model.losses(out, batch)  # batch means; weighted by item count below
        n = len(batch["ids"])
        return {"emotion_logits": out["emotion_logits"], "emotion": batch["emotion"],
                **{k: [float(v)] * n for k, v in parts.items()}}

    def validation_metrics(self, outputs: dict[str, Any]) -> dict[str, float]:
        def mean(key: str) -> float:
            v = outputs[key]
            return float(sum(v) / max(len(v), 1))

        return {"loss": mean("loss"), "f0_l1": mean("f0_l1"), "duration_mse": mean("duration_mse"),
                "emotion_accuracy": _accuracy(outputs["emotion_logits"], outputs["emotion"])}


STAGE_FILE = "zest.json"


def speaker_embeddings(model: Any, corpus: Corpus) -> dict[str, np.ndarray]:
    """id -> s (dim,) float32 for every prepared utterance (model in eval mode, no grad)."""
    import torch

    model.eval()
    with torch.inference_mode():
        x = torch.from_numpy(np.stack([u.xvector for u in corpus.items])).float()
        s = model.embed(x).cpu().numpy().astype(np.float32)
    return {u.id: s[i] for i, u in enumerate(corpus.items)}


def load_speaker_stage(run_dir: str | os.PathLike) -> tuple[Any, dict]:
    """Rebuild the trained SpeakerEncoder of a speaker-stage run (best weights) -> (model, zest.json info)."""
    from emotk.core.config import from_dict
    from emotk.models.zest.config import ZestConfig
    from emotk.train.checkpoint import load_model_weights

    info = read_stage(run_dir, "speaker")
    cfg = from_dict(ZestConfig, info["config"])
    model = build_speaker_model(cfg, info["xvector_dim"], len(info["speakers"]), len(info["emotions"]))
    load_model_weights(run_dir, model)
    return model.eval(), info


def read_stage(run_dir: str | os.PathLike, stage: str) -> dict[str, Any]:
    """``run_dir/zest.json`` of a finished/started stage; DataError when absent or of another stage."""
    path = Path(run_dir) / STAGE_FILE
    if not path.is_file():
        raise DataError(f"{run_dir}: not an S2S-ZEST {stage}-stage run (no {STAGE_FILE}); train it with "
                        f"`emotk transfer train --stage {stage}`")
    info = json.loads(path.read_text(encoding="utf-8"))
    if info.get("stage") != stage:
        raise DataError(f"{path}: a '{info.get('stage')}' stage run, expected '{stage}'")
    return info


def train(resolved: Any, out: str | os.PathLike, *, stage: str, speaker_run: str | os.PathLike | None = None,
          resume: bool = False, overwrite: bool = False, argv: list[str] | None = None) -> dict[str, Any]:
    """Train stage ``speaker`` or ``analysis`` of S2S-ZEST into run directory ``out``.

    resolved: a :class:`emotk.core.config.Resolved` of :class:`ZestConfig` (the device is its
    ``runtime.device``); speaker_run: the speaker-stage run (needed by ``analysis``: its s is the F0/duration
    conditioning). Writes ``zest.json`` (labels, dims, HuBERT config) beside the checkpoints. Returns the trainer
    summary plus ``run_dir`` and ``stage``.
    """
    import dataclasses as dc

    from emotk.core.config import to_dict
    from emotk.core.io import atomic_write_json
    from emotk.core.runs import RunDir
    from emotk.core.runtime import device_name
    from emotk.train.trainer import Trainer

    cfg = resolved.config
    if stage not in STAGES:
        raise UsageError(f"unknown stage {stage!r} (speaker, analysis, vocoder)")
    if not cfg.data.manifest:
        raise UsageError("no training manifest: pass --data M.jsonl (or set data.manifest)")
    if stage == "analysis" and not speaker_run:
        raise UsageError("the analysis stage needs the trained speaker encoder: pass --speaker RUN_DIR")
    dev = device_name(resolved.runtime.device)
    runtime = dc.replace(resolved.runtime, device=dev)
    from emotk.train import distributed as dist

    # inputs first (manifest labels and splits, tokenizer, speaker run): a usage error leaves no run folder behind
    manifest, tokenizer = check_corpus(cfg, cfg.data.manifest)
    if stage == "analysis":
        read_stage(speaker_run, "speaker")
    if dist.is_main():  # under torchrun/srun: rank 0 creates the run and fills the feature cache first
        run = RunDir.create(out, resolved, overwrite=overwrite, resume=resume, device=dev, argv=argv,
                            inputs={"manifest": str(cfg.data.manifest)})
        corpus = prepare_corpus(cfg, manifest, Path(out) / "cache", device=dev, tokenizer=tokenizer)
    dist.barrier()
    if not dist.is_main():
        run = RunDir.open(out)
        corpus = prepare_corpus(cfg, manifest, Path(out) / "cache", device=dev, tokenizer=tokenizer)
    info: dict[str, Any] = {"stage": stage, "config": to_dict(cfg), "speakers": corpus.speakers,
                            "emotions": corpus.emotions, "xvector_dim": corpus.xvector_dim,
                            "manifest_sha256": corpus.manifest_sha256,
                            "tokenizer": str(Path(cfg.tokens.tokenizer).resolve())}
    if stage == "speaker":
        task: Any = SpeakerTask(cfg, corpus)
        train_cfg = cfg.speaker_train
    else:
        spk_model, spk_info = load_speaker_stage(speaker_run)
        info["speaker_run"] = str(Path(speaker_run).resolve())
        info["speaker_labels"] = spk_info["speakers"]
        task = AnalysisTask(cfg, corpus, speaker_embeddings(spk_model, corpus), device=dev)
        train_cfg = cfg.train
    trainer = Trainer(train_cfg, task, run, runtime)
    if stage == "analysis":
        info["upstream"] = task.upstream_description
    if dist.is_main():
        atomic_write_json(Path(out) / STAGE_FILE, info)
    summary = trainer.fit(resume=resume)
    return {"stage": stage, "run_dir": str(out), **summary}

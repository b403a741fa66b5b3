"""Vocoder training: the GAN as a :class:`~emotk.train.task.TrainTask` for :class:`emotk.train.Trainer`.

Two optimisers (param groups named ``discriminator`` then ``generator``, so each step updates the
discriminators first, as in BigVGAN), both AdamW from ``train.optim`` with the per-step exponential decay of
``train.scheduler``. Each item is cut to a random segment of ``data.segment_samples`` (28 frames) on the
50 Hz grid. For ``warmup_generator_steps`` steps only the generator learns, from the mel loss alone.

Items are dicts ``{"tokens": (T,) int, "f0": (T,) Hz, "speaker": (S,), "emotion": (E,), "wav": (T·320,)}``
(numpy arrays or tensors), produced by the S2S-ZEST analysis models; :func:`train` (the train entry point of
task ``transfer.vocoder``) takes a list of them, ``{"train": [...], "valid": [...]}``, or a folder of
``.npz`` files holding those keys.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from emotk.core.audio import HOP
from emotk.core.log import get_logger
from emotk.errors import DataError, UsageError
from emotk.models.zest.vocoder.config import TASK, VocoderConfig
from emotk.models.zest.vocoder.data import ITEM_KEYS, SegmentDataset, load_items
from emotk.models.zest.vocoder.model import VocoderGAN
from emotk.train.task import StepState, TrainTask

log = get_logger("zest.vocoder")


# ---- the task ----------------------------------------------------------------------------------------------------
def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file or a torch checkpoint (``weights_only=True``; a ``"generator"`` entry is used
    when present, as in NVIDIA BigVGAN's ``bigvgan_generator.pt``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"vocoder init_from: {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one line for the user
        raise DataError(f"vocoder init_from: {path} is not a readable torch state dict ({type(e).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("generator"), dict):
        state = state["generator"]
    if not isinstance(state, dict):
        raise DataError(f"vocoder init_from: {path} does not hold a state dict")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


class VocoderTask(TrainTask):
    """GAN training of the S2S-ZEST vocoder (see the module docstring)."""

    def __init__(self, cfg: VocoderConfig, train_items: list[dict], valid_items: list[dict] | None = None):
        self.cfg = cfg
        self.segment_frames = cfg.data.segment_samples // HOP
        self.train_items = train_items
        self.valid_items = valid_items

    def build_model(self) -> VocoderGAN:
        model = VocoderGAN(self.cfg)
        if self.cfg.init_from:
            from emotk.models.zest.vocoder.generator import load_bigvgan_state

            report = load_bigvgan_state(model.generator, read_state_dict(self.cfg.init_from))
            log.info("vocoder: initialised %d generator tensors from %s (%d skipped: names or shapes differ)",
                     len(report["loaded"]), self.cfg.init_from, len(report["skipped"]))
        return model

    def train_dataset(self) -> SegmentDataset:
        return SegmentDataset(self.train_items, self.segment_frames, random=True, repeats=self.cfg.data.epoch_repeats)

    def valid_dataset(self) -> SegmentDataset | None:
        if not self.valid_items:
            return None
        return SegmentDataset(self.valid_items, self.cfg.data.valid_frames, random=False)

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {k: torch.stack([it[k] for it in items]) for k in ITEM_KEYS}

    def param_groups(self, model: VocoderGAN) -> list[dict]:
        disc = [*model.mpd.parameters(), *model.mrd.parameters()]
        return [{"params": disc, "optimizer": "discriminator"},
                {"params": list(model.generator.parameters()), "optimizer": "generator"}]

    def training_step(self, model: VocoderGAN, batch: dict[str, torch.Tensor], state: StepState) -> dict:
        from emotk.models.zest.vocoder import losses as L

        key = f"fake/{state.micro}"
        warm = state.step < self.cfg.warmup_generator_steps
        real = batch["wav"]
        if state.optimizer == "discriminator":
            fake = model.generate(batch)
            state.cache[key] = fake
            if warm:  # no discriminator update: a loss that reaches none of its parameters
                return {"loss": torch.zeros((), device=real.device, requires_grad=True)}
            rl, fl, _, _ = model.mpd(real, fake.detach())
            loss_mpd = L.discriminator_loss(rl, fl)
            rl, fl, _, _ = model.mrd(real, fake.detach())
            loss_mrd = L.discriminator_loss(rl, fl)
            return {"loss": loss_mpd + loss_mrd, "mpd": loss_mpd.detach(), "mrd": loss_mrd.detach()}
        fake = state.cache.pop(key, None)
        if fake is None:
            fake = model.generate(batch)
        mel = L.mel_l1(model.mel, real, fake)
        if warm:
            return {"loss": self.cfg.loss.lambda_mel * mel, "mel_l1": mel.detach()}
        _, fl_p, rf_p, ff_p = model.mpd(real, fake)
        _, fl_r, rf_r, ff_r = model.mrd(real, fake)
        adv = L.generator_adversarial_loss(fl_p) + L.generator_adversarial_loss(fl_r)
        fm = L.feature_matching_loss(rf_p, ff_p) + L.feature_matching_loss(rf_r, ff_r)
        loss = adv + self.cfg.loss.lambda_fm * fm + self.cfg.loss.lambda_mel * mel
        return {"loss": loss, "mel_l1": mel.detach(), "adv": adv.detach(), "fm": fm.detach()}

    def validation_step(self, model: VocoderGAN, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        fake = model.generate(batch)
        real_mel, fake_mel = model.mel(batch["wav"]), model.mel(fake)
        return {"mel_l1": (real_mel - fake_mel).abs().mean(dim=(1, 2))}

    def validation_metrics(self, outputs: dict[str, Any]) -> dict[str, float]:
        v = outputs["mel_l1"]
        v = torch.stack(list(v)) if isinstance(v, list) else v
        return {"mel_l1": float(v.float().mean())}


# ---- entry point -------------------------------------------------------------------------------------------------
def _resolved(resolved_config: Any) -> Any:
    from emotk.core.config import Resolved, from_dict

    if isinstance(resolved_config, Resolved):
        return resolved_config
    if isinstance(resolved_config, VocoderConfig):
        return Resolved(task=TASK, config=resolved_config)
    if isinstance(resolved_config, dict):
        return Resolved(task=TASK, config=from_dict(VocoderConfig, resolved_config))
    raise UsageError("vocoder train: expected a Resolved config or a VocoderConfig, got "
                     f"{type(resolved_config).__name__}")


def train(resolved: Any, out: Any, *, data: Any, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train the vocoder and export its generator; returns the trainer summary plus ``"export"`` (folder).

    Args:
        resolved: :class:`emotk.core.config.Resolved` whose ``config`` is a :class:`VocoderConfig`
            (``emotk transfer train --stage vocoder``), or a VocoderConfig / dict.
        out: a path (a run directory is created; ``resume`` continues it) or an
            :class:`emotk.core.runs.RunDir`.
        data: a list of item dicts (module docstring), ``{"train": [...], "valid": [...]}``, or a folder of
            ``.npz`` items. Without a validation set, the last ``data.valid_fraction`` of the items is held out
            (none when that leaves fewer than one).
    The exported generator goes to ``<run>/export`` (see :func:`~.export.load_generator`).
    """
    from emotk.core.runs import RunDir
    from emotk.models.zest.vocoder.export import export_generator
    from emotk.models.zest.vocoder.generator import count_parameters
    from emotk.train import distributed as dist
    from emotk.train.trainer import Trainer

    resolved = _resolved(resolved)
    cfg: VocoderConfig = resolved.config
    cfg.validate()
    gcfg = cfg.generator
    train_items, valid_items = load_items(data, gcfg.speaker_dim, gcfg.emotion_dim)
    if valid_items is None and cfg.data.valid_fraction > 0:
        n_valid = int(math.floor(cfg.data.valid_fraction * len(train_items)))
        if n_valid >= 1 and len(train_items) - n_valid >= 1:
            train_items, valid_items = train_items[:-n_valid], train_items[-n_valid:]
    if not train_items:
        raise DataError("the vocoder training set is empty")
    if isinstance(out, RunDir):
        run = out
    else:
        if dist.is_main():
            run = RunDir.create(out, resolved, resume=resume, overwrite=overwrite,
                                device=resolved.runtime.device)
        dist.barrier()
        if not dist.is_main():
            run = RunDir.open(out)
    task = VocoderTask(cfg, train_items, valid_items)
    trainer = Trainer(cfg.train, task, run, resolved.runtime)
    n_gen = count_parameters(trainer.model.generator)
    log.info("vocoder: generator %.2fM parameters, discriminators %.2fM; %d train / %d valid utterances",
             n_gen / 1e6, (count_parameters(trainer.model.mpd) + count_parameters(trainer.model.mrd)) / 1e6,
             len(train_items), len(valid_items or []))
    summary = trainer.fit(resume=resume)
    export = Path(run.path) / "export"
    if dist.is_main():
        export_generator(trainer.model.generator, export, extra={
            "config_hash": resolved.hash, "steps": summary.get("steps"), "stopped": summary.get("stopped"),
            "best": {k: v for k, v in (summary.get("best") or {}).items() if isinstance(v, (int, float, str))},
        })
    dist.barrier()
    return {**summary, "stage": "vocoder", "run_dir": str(run.path), "export": str(export),
            "generator_parameters": n_gen}

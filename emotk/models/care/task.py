"""CARE pre-training: the trainer hooks (:class:`CareTask`) and the whole run (:func:`train`).

Data (METHODS.md §1): each training item is a random 5 s crop of an utterance (shorter ones are zero-padded;
the crop start is a whole number of 20 ms frames drawn from ``(train.seed, epoch, index)``, so a resumed run
draws the same crops); validation items are the first 5 s. Ids are sorted, shuffled with ``data.split_seed`` and
split 80/20 (``data.valid_fraction``). Targets come from the feature cache (computed once per utterance, reused by
every run): the frame-level acoustic targets (:mod:`emotk.features.acoustic`, kind ``acoustic``; reference
normalisation (x - mean) / (std + 1) per utterance by default) and y_text (kind ``text``: mean-pooled text encoder
of the transcript, ``text`` else ``asr_text``; or kind ``whisper-encoder``, mean-pooled over the frames).

Loss: L = L_sem + lambda * L_acoust, both masked MSEs (padding frames never count). Model selection: the
validation ``loss`` (min). Output folder ``OUT``: run.json, config.yaml, metrics.jsonl, ckpt/, features/,
export/ (the CARE upstream bundle, :mod:`emotk.models.care.export`), result.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from emotk.core.audio import HOP, SAMPLE_RATE
from emotk.core.log import get_logger
from emotk.errors import DataError, UsageError
from emotk.train.task import StepState, TrainTask

log = get_logger("care")
MIN_SAMPLES = 400  # receptive field of the WavLM/HuBERT CNN: shorter valid audio counts its padding as audio


def split_ids(ids: list[str], valid_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Sorted ids -> (train, valid), both sorted: a seeded permutation, the first ``round(f * N)`` (>= 1) valid."""
    ids = sorted(ids)
    if len(ids) < 2:
        raise DataError(f"CARE needs at least 2 utterances for a train/valid split, got {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    n_valid = min(len(ids) - 1, max(1, int(round(valid_fraction * len(ids)))))
    valid = sorted(ids[i] for i in order[:n_valid])
    train = sorted(ids[i] for i in order[n_valid:])
    return train, valid


class CareDataset:
    """Crops of utterances with their targets. Item: dict with ``wav`` (C,) float32 tensor (C = crop samples),
    ``length`` valid samples, ``acoustic`` (C // 320, A) targets of the crop, ``acoustic_frames`` valid target
    frames, ``y`` (Dy,) y_text, ``id``."""

    def __init__(self, ids: list[str], task: "CareTask", random_crop: bool) -> None:
        self.ids = list(ids)
        self.task = task
        self.random_crop = random_crop

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        from emotk.data.audio import load_audio

        t = self.task
        uid = self.ids[index]
        rec = t.records[uid]
        wav = load_audio(t.manifest.resolve_path(rec), sr=SAMPLE_RATE, start=rec.get("start"), end=rec.get("end"))
        crop = t.crop_samples
        start_f = 0
        if wav.shape[0] > crop and self.random_crop:
            rng = np.random.default_rng([t.seed, t.epoch, index])
            start_f = int(rng.integers(0, (wav.shape[0] - crop) // HOP + 1))
        seg = wav[start_f * HOP: start_f * HOP + crop]
        n = int(seg.shape[0])
        out = np.zeros(crop, dtype=np.float32)
        out[:n] = seg
        acoustic, valid_f = _crop_frames(t.acoustic.get(uid, "acoustic"), start_f, n, crop // HOP)
        item = {"id": uid, "wav": torch.from_numpy(out), "length": max(n, MIN_SAMPLES),
                "acoustic": torch.from_numpy(acoustic), "acoustic_frames": valid_f}
        if t.semantic_frames:
            y, y_f = _crop_frames(t.semantic_cache.get(uid, "frames"), start_f, n, crop // HOP)
            item.update(y=torch.from_numpy(y), y_frames=y_f)
        else:
            item.update(y=torch.from_numpy(np.asarray(t.semantic[uid], dtype=np.float32)), y_frames=0)
        return item


def _crop_frames(feats: np.ndarray, start_f: int, n: int, frames: int) -> tuple[np.ndarray, int]:
    """50 Hz features (F, D) of a whole utterance -> (frames, D) of the crop starting at frame ``start_f`` with ``n``
    valid samples (zero rows after the valid ones), and the valid row count."""
    from emotk.features.frames import fit_frames

    valid_f = min(n // HOP, max(0, feats.shape[0] - start_f))
    out = np.zeros((frames, feats.shape[1]), dtype=np.float32)
    out[:valid_f] = fit_frames(np.asarray(feats[start_f:start_f + valid_f], dtype=np.float32), valid_f, pad_value=None)
    return out, valid_f


class CareTask(TrainTask):
    """Trainer hooks of CARE pre-training.

    cfg: :class:`emotk.models.care.config.CareConfig`; manifest: the Manifest; train_ids / valid_ids; acoustic:
    FeatureCache of kind ``acoustic``; semantic: {id: (Dy,) y_text}.
    """

    def __init__(self, cfg: Any, manifest: Any, train_ids: list[str], valid_ids: list[str], acoustic: Any,
                 semantic: dict[str, np.ndarray] | Any) -> None:
        self.cfg = cfg
        self.manifest = manifest
        self.records = manifest.by_id()
        self.train_ids, self.valid_ids = train_ids, valid_ids
        self.acoustic = acoustic
        # {id: (Dy,) y_text}, or the FeatureCache of 50 Hz frames ("frames") for a frame-level target
        self.semantic_frames = not isinstance(semantic, dict)
        self.semantic = semantic if not self.semantic_frames else {}
        self.semantic_cache = semantic if self.semantic_frames else None
        self.crop_samples = int(round(cfg.data.crop_seconds * SAMPLE_RATE))
        self.seed = int(cfg.train.seed)
        self.epoch = 1
        first = train_ids[0]
        self.acoustic_dim = int(acoustic.get(first, "acoustic").shape[1])
        y = semantic.get(first, "frames") if self.semantic_frames else semantic[first]
        self.semantic_dim = int(np.asarray(y).shape[-1])
        self.lam = float(cfg.model.lambda_acoustic)

    def build_model(self) -> Any:
        from emotk.models.care.model import build_care

        return build_care(self.cfg.model, self.acoustic_dim, self.semantic_dim, semantic_frames=self.semantic_frames)

    def train_dataset(self) -> CareDataset:
        return CareDataset(self.train_ids, self, random_crop=True)

    def valid_dataset(self) -> CareDataset:
        return CareDataset(self.valid_ids, self, random_crop=False)

    def on_epoch_start(self, epoch: int, model: Any) -> None:
        self.epoch = int(epoch)

    def collate(self, items: list) -> dict[str, Any]:
        import torch

        return {"ids": [it["id"] for it in items], "wav": torch.stack([it["wav"] for it in items]),
                "lengths": torch.tensor([it["length"] for it in items], dtype=torch.long),
                "acoustic": torch.stack([it["acoustic"] for it in items]),
                "acoustic_frames": torch.tensor([it["acoustic_frames"] for it in items], dtype=torch.long),
                "y": torch.stack([it["y"] for it in items]),
                "y_frames": torch.tensor([it["y_frames"] for it in items], dtype=torch.long)}

    def _losses(self, model: Any, batch: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
        """-> (per-item semantic MSE (B,), batch semantic loss, per-item acoustic MSE (B,), batch acoustic loss
        (mean over all valid frames of the batch))."""
        import torch

        from emotk.losses import masked_mse

        out = model(batch["wav"], batch["lengths"])
        pred = out["acoustic"]
        t = pred.shape[1]
        target = _fit_time(batch["acoustic"], t)
        steps = torch.arange(t, device=pred.device)[None, :]
        mask = out["mask"] & (steps < batch["acoustic_frames"][:, None])
        if self.semantic_frames:  # frame-level: masked MSE over the frames both sides have
            y = _fit_time(batch["y"], t)
            ymask = out["mask"] & (steps < batch["y_frames"][:, None])
            sem = _per_item_mse(out["semantic"], y, ymask)
            sem_batch = masked_mse(out["semantic"], y, ymask)
        else:
            sem = (out["semantic"] - batch["y"]).pow(2).mean(dim=-1)
            sem_batch = sem.mean()
        return sem, sem_batch, _per_item_mse(pred, target, mask), masked_mse(pred, target, mask)

    def training_step(self, model: Any, batch: dict[str, Any], state: StepState) -> dict:
        _, semantic, _, acoustic = self._losses(model, batch)
        return {"loss": semantic + self.lam * acoustic, "semantic_loss": semantic.detach(),
                "acoustic_loss": acoustic.detach()}

    def validation_step(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        sem, _, ac, _ = self._losses(model, batch)
        return {"semantic_loss": sem.float(), "acoustic_loss": ac.float(), "ids": batch["ids"]}

    def validation_metrics(self, outputs: dict[str, Any]) -> dict[str, float]:
        sem = float(outputs["semantic_loss"].float().mean())
        ac = float(outputs["acoustic_loss"].float().mean())
        return {"loss": sem + self.lam * ac, "semantic_loss": sem, "acoustic_loss": ac}


def _fit_time(x: Any, t: int) -> Any:
    """(B, F, D) -> (B, t, D): cut, or pad with zeros."""
    import torch

    x = x[:, :t]
    return torch.nn.functional.pad(x, (0, 0, 0, t - x.shape[1])) if x.shape[1] < t else x


def _per_item_mse(pred: Any, target: Any, mask: Any) -> Any:
    """(B, T, D) pair + (B, T) bool mask -> (B,) mean squared error over each item's valid frames."""
    per_frame = (pred - target).pow(2).mean(dim=-1) * mask
    return per_frame.sum(dim=1) / mask.sum(dim=1).clamp_min(1)


# ------------------------------------------------------------------------------------------------ targets
def check_target_models(cfg: Any) -> None:
    """Raise what loading the semantic-target model would (unknown name, no local copy), loading nothing."""
    st = cfg.semantic_target
    if st.kind == "text":
        from emotk.features.text import check_text_model

        check_text_model(st.model)
        return
    from emotk.features.upstream.base import UPSTREAM_PREFIXES

    if ":" in st.model and st.model.partition(":")[0] in UPSTREAM_PREFIXES:
        return
    from emotk.hub.load import check_available

    check_available(st.model)


def targets(cfg: Any, manifest: Any, root: Path, device: str) -> tuple[Any, dict[str, np.ndarray], dict]:
    """Extract (or reuse) the acoustic and semantic targets -> (acoustic FeatureCache, {id: y_text} (or, for
    ``whisper-frames``, the FeatureCache of the frames), {kind: cache path})."""
    from emotk.features.cache import FeatureCache
    from emotk.features.extract import TextFeatures, WhisperEncoderFeatures, run_extraction

    ac = run_extraction("acoustic", manifest, root, cfg.acoustic, resume=True, device="cpu")
    st = cfg.semantic_target
    if st.kind == "text":
        sem = run_extraction("text", manifest, root, TextFeatures(model=st.model, field=st.field, layer=st.layer,
                                                                  max_length=st.max_length), resume=True, device=device)
        key = "embedding"
    else:
        sem = run_extraction("whisper-encoder", manifest, root, WhisperEncoderFeatures(model=st.model), resume=True,
                             device=device)
        key = "frames"
    cache = FeatureCache(sem["cache"])
    if st.kind == "whisper-frames":
        return FeatureCache(ac["cache"]), cache, {"acoustic": ac["cache"], "semantic": sem["cache"]}
    semantic = {}
    for uid in manifest.ids:
        v = np.asarray(cache.get(uid, key), dtype=np.float32)
        semantic[uid] = v if v.ndim == 1 else v.mean(axis=0)
    return FeatureCache(ac["cache"]), semantic, {"acoustic": ac["cache"], "semantic": sem["cache"]}


# ------------------------------------------------------------------------------------------------ the run
def train(resolved: Any, out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
          argv: list[str] | None = None) -> dict[str, Any]:
    """Pre-train CARE with the resolved :class:`CareConfig` into ``out``; returns the result summary.

    Writes ``out/export`` (the upstream bundle of the validation-selected weights) and ``out/result.json``.
    resume: continue an interrupted run from its last checkpoint (a new run when ``out`` has none);
    overwrite: replace an existing run. ``resolved.runtime`` says where to run (``device``: "auto" -> cuda if
    available; ``threads``). argv: the command line, recorded in run.json.
    """
    from emotk.core.runtime import keep_threads

    with keep_threads():  # runtime.threads applies to this call only (library users keep their setting)
        return _train(resolved, out, resume=resume, overwrite=overwrite, argv=argv)


def _data(cfg: Any, out: Path) -> tuple[Any, list[str], list[str], Path]:
    """(manifest (``data.max_items`` applied), train ids, valid ids, target cache folder) of a run into ``out``."""
    from emotk.data.manifest import Manifest
    from emotk.features.cache import ids_sha256

    if not cfg.data.manifest:
        raise UsageError("no manifest: pass --data MANIFEST.jsonl (or set data.manifest)")
    manifest = Manifest.load(cfg.data.manifest)
    if not len(manifest):
        raise DataError(f"{cfg.data.manifest}: the manifest has no utterances")
    manifest.require_audio("pretrain care")
    ids = sorted(manifest.ids)
    if cfg.data.max_items:
        keep = set(ids[: cfg.data.max_items])
        manifest = Manifest.from_records([r for r in manifest.records if r["id"] in keep], manifest.path)
        ids = sorted(manifest.ids)
    train_ids, valid_ids = split_ids(ids, cfg.data.valid_fraction, cfg.data.split_seed)
    cache_dir = Path(cfg.features.cache_dir) if cfg.features.cache_dir else out / "features"
    return manifest, train_ids, valid_ids, cache_dir / f"set-{ids_sha256(ids)[:12]}"


def initial_model(resolved: Any, out: str | os.PathLike) -> Any:
    """The CareModel a :func:`train` run into ``out`` starts from, before any step, in eval mode on CPU.

    The same initialisation as the trainer's (seeded with ``train.seed``, then built by :class:`CareTask`); the
    targets are extracted (or reused) in the run's cache first, on CPU with the caller's torch threads, because
    their widths size the model. Used to compare a pre-trained CARE with the same architecture and weights
    untrained.
    """
    from emotk.core.runtime import seed_everything

    cfg = resolved.config
    manifest, train_ids, valid_ids, root = _data(cfg, Path(out))
    acoustic, semantic, _ = targets(cfg, manifest, root, "cpu")
    task = CareTask(cfg, manifest, train_ids, valid_ids, acoustic, semantic)
    seed_everything(cfg.train.seed)
    return task.build_model().eval()


def _train(resolved: Any, out: str | os.PathLike, *, resume: bool, overwrite: bool,
           argv: list[str] | None) -> dict[str, Any]:
    from emotk.core.io import atomic_write_json
    from emotk.core.runs import RunDir
    from emotk.models.care.export import write_export
    from emotk.train import distributed as dist
    from emotk.train.trainer import Trainer

    cfg = resolved.config
    out = Path(out)
    manifest, train_ids, valid_ids, root = _data(cfg, out)
    runtime, _ = dist.start(resolved.runtime)  # device, process group, threads (extraction too)
    device = runtime.device
    inputs = {"manifest": str(cfg.data.manifest), "manifest_sha256": manifest.sha256}
    continuing = resume and (out / "run.json").is_file()
    if not continuing:  # a missing target model fails before OUT is made
        check_target_models(cfg)
    if dist.is_main():
        run = RunDir.create(out, resolved, overwrite=overwrite and not continuing, resume=continuing, inputs=inputs,
                            seed=cfg.train.seed, device=device, argv=argv)
        run.update(split={"train": len(train_ids), "valid": len(valid_ids), "seed": cfg.data.split_seed})
    dist.barrier()
    run = RunDir.open(out) if not dist.is_main() else run
    if dist.is_main():
        acoustic, semantic, caches = targets(cfg, manifest, root, device)
    dist.barrier()
    if not dist.is_main():
        acoustic, semantic, caches = targets(cfg, manifest, root, device)
    task = CareTask(cfg, manifest, train_ids, valid_ids, acoustic, semantic)
    log.info(f"care: {len(train_ids)} train / {len(valid_ids)} valid utterances; acoustic targets "
             f"{task.acoustic_dim}-d, y_text {task.semantic_dim}-d")
    trainer = Trainer(cfg.train, task, run, runtime)
    fit = trainer.fit(resume=continuing)
    model = trainer.model
    model = getattr(model, "module", model)
    result = {"task": "pretrain.care", "config_hash": resolved.hash, **inputs, "stopped": fit.get("stopped"),
              "steps": fit.get("steps"), "best": fit.get("best"), "parameters": model.parameter_counts(),
              "targets": caches, "export": str(out / "export")}
    result = json.loads(json.dumps(result, default=str))  # JSON-ready (paths, numpy scalars)
    if dist.is_main():
        write_export(out / "export", model, {"source_run": str(out), "config_hash": resolved.hash, **inputs,
                                             "best": result["best"]})
        atomic_write_json(out / "result.json", result)
    dist.barrier()
    return result

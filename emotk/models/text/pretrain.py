"""``emotk pretrain text``: fine-tune a text encoder on LLM sentiment pseudo-labels (METHODS.md §2).

Input: a manifest labelled by ``emotk data label`` (field ``sentiment_llm``: negative | neutral | positive;
records with a null label are left out and counted). The encoder (RoBERTa-large in the thesis; any HF
encoder, e.g. ``minilm`` or ``tiny-roberta`` offline) is trained with its masked-mean-pooled states -> linear
head, cross-entropy, 10 epochs, AdamW lr 1e-4, batch 32, through :class:`emotk.train.Trainer`. A seeded 90/10
split of the sorted ids is the validation set; the checkpoint with the best validation weighted F1 is kept.

Output folder ``OUT``::

    OUT/run.json, config.yaml, log.txt, metrics.jsonl, ckpt/      the training run (resumable)
    OUT/eval/valid.json                                            validation metrics of the selected weights
    OUT/export/                                                    Hugging Face folder: config.json,
        model.safetensors, tokenizer files (save_pretrained of the fine-tuned encoder), head.safetensors
        (the linear head), emotk-text-classifier.json (classes, pooling, provenance)
    OUT/summary.json

``TextEncoder(model="OUT/export")`` (CARE's semantic target, ERC text embeddings) loads the export directly.
This module imports no torch at import time (the config schema is read by ``emotk config show``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from emotk.core.log import get_logger
from emotk.errors import ConfigError, DataError, UsageError
from emotk.models.text.labeller import LABEL_FIELD, SENTIMENT_CLASSES
from emotk.train.config import TrainConfig

log = get_logger("pretrain.text")

TASK = "pretrain.text"
EXPORT_META = "emotk-text-classifier.json"
HEAD_FILE = "head.safetensors"
SUMMARY = "summary.json"
METRICS = ("weighted_f1", "macro_f1", "balanced_accuracy", "accuracy", "loss")


@dataclass
class TextPretrainData:
    """Which records, which text, which labels, and the validation split."""

    manifest: str = ""  # JSONL manifest labelled by `emotk data label` (or --data)
    text_field: Literal["asr_text", "text", "auto"] = "asr_text"  # thesis: Whisper transcripts
    label_field: str = LABEL_FIELD
    classes: list[str] = field(default_factory=lambda: list(SENTIMENT_CLASSES))
    valid_fraction: float = 0.1  # seeded split of the sorted ids (thesis: 90/10)
    split_seed: int = 0
    max_length: int = 128  # tokens per transcript at most


@dataclass
class TextPretrainModel:
    """The encoder and its head."""

    encoder: str = "roberta-large"  # registry name (emotk models list) or a local HF folder
    dropout: float = 0.1  # before the linear head
    pooling: Literal["mean", "cls"] = "mean"  # thesis: masked mean of the last hidden states


def _thesis_train() -> TrainConfig:
    return TrainConfig(epochs=10, batch_size=32)  # AdamW lr 1e-4 (the TrainConfig default), select weighted_f1


@dataclass
class TextPretrainConfig:
    """Task ``pretrain.text``: LLM-supervised sentiment fine-tuning of a text encoder."""

    data: TextPretrainData = field(default_factory=TextPretrainData)
    model: TextPretrainModel = field(default_factory=TextPretrainModel)
    train: TrainConfig = field(default_factory=_thesis_train)

    def validate(self) -> None:
        self.train.validate()
        d = self.data
        if len(d.classes) < 2 or len(set(d.classes)) != len(d.classes):
            raise ConfigError(f"data.classes: need at least two distinct class names, got {d.classes!r}")
        if not 0.0 <= d.valid_fraction < 1.0:
            raise ConfigError(f"data.valid_fraction: must be in [0, 1), got {d.valid_fraction}")
        if d.max_length < 4:
            raise ConfigError(f"data.max_length: must be >= 4 tokens, got {d.max_length}")
        if not 0.0 <= self.model.dropout < 1.0:
            raise ConfigError(f"model.dropout: must be in [0, 1), got {self.model.dropout}")
        if self.train.select_metric not in METRICS:
            raise ConfigError(f"train.select_metric: '{self.train.select_metric}' is not one of {', '.join(METRICS)}")
        if not self.model.encoder:
            raise ConfigError("model.encoder: name an HF text encoder (registry name or folder)")


# ---- data ---------------------------------------------------------------------------------------------------------
def load_items(cfg: TextPretrainConfig, manifest: Any) -> tuple[list[Any], dict[str, Any]]:
    """Manifest -> (list of :class:`~emotk.models.text.classifier.TextItem` in manifest order, info).

    Records whose label is null (unparseable / failed LLM answers) or whose text is empty are left out and
    counted in ``info``; a label outside ``data.classes`` or a missing text field is a DataError naming the line.
    """
    from emotk.data.manifest import Manifest
    from emotk.features.text import record_text
    from emotk.models.text.classifier import TextItem

    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    where = str(m.path) if m.path else "manifest"
    index = {c: i for i, c in enumerate(cfg.data.classes)}
    items, no_label, empty = [], 0, 0
    for k, rec in enumerate(m.records):
        label = rec.get(cfg.data.label_field)
        if label is None:
            no_label += 1
            continue
        if not isinstance(label, str) or label not in index:
            raise DataError(f"{where}:{m.lineno(k)}: {cfg.data.label_field}={label!r} is not one of "
                            f"{', '.join(cfg.data.classes)} (data.classes)")
        text = record_text(rec, cfg.data.text_field, f"{where}:{m.lineno(k)}")
        if not text.strip():
            empty += 1
            continue
        items.append(TextItem(rec["id"], text, index[label]))
    if not items:
        raise DataError(f"{where}: no record has a usable '{cfg.data.label_field}' label and text "
                        "(run `emotk data label` first?)")
    counts = {c: 0 for c in cfg.data.classes}
    for it in items:
        counts[cfg.data.classes[it.label]] += 1
    info = {"manifest": str(m.path) if m.path else None, "manifest_sha256": m.sha256, "records": len(m),
            "used": len(items), "without_label": no_label, "empty_text": empty, "class_counts": counts}
    return items, info


def split_items(items: list[Any], valid_fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """Seeded split by sorted ids: ``ceil(valid_fraction * N)`` items (at least 1 when the fraction is > 0 and
    N >= 2) go to validation. Returns (train, valid), each sorted by id; the same ids always give the same split."""
    import numpy as np

    ordered = sorted(items, key=lambda it: it.id)
    if valid_fraction <= 0 or len(ordered) < 2:
        return ordered, []
    n_valid = min(len(ordered) - 1, max(1, math.ceil(valid_fraction * len(ordered))))
    perm = np.random.default_rng(seed).permutation(len(ordered))
    valid_idx = set(perm[:n_valid].tolist())
    train = [it for j, it in enumerate(ordered) if j not in valid_idx]
    valid = [it for j, it in enumerate(ordered) if j in valid_idx]
    return train, valid


def _loader(name: str):
    """() -> (encoder, tokenizer), trainable (train mode) — a registry name or an HF folder."""

    def load():
        from emotk.features.text import load_text_model

        encoder, tokenizer = load_text_model(name, "cpu")
        return encoder.train(), tokenizer

    return load


# ---- export -------------------------------------------------------------------------------------------------------
def write_export(folder: str | os.PathLike, model: Any, tokenizer: Any, classes: list[str], cfg: TextPretrainConfig,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write the HF encoder + tokenizer (``save_pretrained``), ``head.safetensors`` and the classes/provenance
    JSON into ``folder`` (replaced as a whole: written next to it, then renamed). Returns the folder."""
    import shutil
    import tempfile

    from safetensors.torch import save_file

    from emotk.core.io import atomic_write_json

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.encoder.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        head = {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
        save_file(head, str(tmp / HEAD_FILE))
        atomic_write_json(tmp / EXPORT_META, {
            "task": TASK, "classes": list(classes), "pooling": model.pooling, "hidden_size": model.dim,
            "encoder": cfg.model.encoder, "max_length": cfg.data.max_length, "text_field": cfg.data.text_field,
            "usage": "TextEncoder(model=<this folder>) for embeddings; load_export(<this folder>) for sentiment",
            **(extra or {})})
        old = folder.with_name(f".{folder.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def load_export(folder: str | os.PathLike, device: str = "cpu") -> tuple[Any, Any, list[str]]:
    """An export folder -> (:class:`TextSentimentModel` in eval mode, tokenizer, classes)."""
    from emotk.features.text import load_text_model
    from emotk.models.text.classifier import TextSentimentModel
    from emotk.train.checkpoint import load_model_weights

    folder = Path(folder)
    meta_path = folder / EXPORT_META
    if not meta_path.is_file():
        raise DataError(f"{folder} is not an `emotk pretrain text` export (no {EXPORT_META})")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    encoder, tokenizer = load_text_model(folder, device)
    model = TextSentimentModel(encoder, len(meta["classes"]), dropout=0.0, pooling=meta.get("pooling", "mean"))
    load_model_weights(folder / HEAD_FILE, model.head)
    return model.to(device).eval(), tokenizer, list(meta["classes"])


# ---- the pipeline ---------------------------------------------------------------------------------------------------
def pretrain_text(resolved: Any, out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
                  device: str | None = None, argv: list[str] | None = None) -> dict[str, Any]:
    """Train TextPretrainConfig ``resolved.config`` (an :class:`emotk.core.config.Resolved`) into ``out``.

    resume: continue from the last checkpoint of ``out`` (same config); overwrite: replace an existing run.
    device: overrides ``runtime.device``. Returns the summary (also written to ``OUT/summary.json``):
    data counts, best validation metrics, the export path, config and manifest hashes.
    """
    import torch

    threads = torch.get_num_threads()
    try:
        return _pretrain_text(resolved, Path(out), resume=resume, overwrite=overwrite, device=device, argv=argv)
    finally:  # runtime.threads applies to this call only
        torch.set_num_threads(threads)


def _pretrain_text(resolved: Any, out: Path, *, resume: bool, overwrite: bool, device: str | None,
                   argv: list[str] | None) -> dict[str, Any]:
    from emotk.core.io import atomic_write_json
    from emotk.core.runs import RunDir
    from emotk.models.text.classifier import TextPretrainTask
    from emotk.train import distributed as dist
    from emotk.train.trainer import Trainer

    cfg: TextPretrainConfig = resolved.config
    if not cfg.data.manifest:
        raise UsageError("no manifest: pass --data MANIFEST.jsonl (or set data.manifest)")
    runtime = resolved.runtime if not device else dataclasses.replace(resolved.runtime, device=device)
    items, data_info = load_items(cfg, cfg.data.manifest)
    train_items, valid_items = split_items(items, cfg.data.valid_fraction, cfg.data.split_seed)
    inputs = {"manifest": data_info["manifest"], "manifest_sha256": data_info["manifest_sha256"]}
    continuing = resume and (out / "run.json").is_file()
    dist.init(_device_name(runtime.device))
    if dist.is_main():
        run = RunDir.create(out, resolved, overwrite=overwrite, resume=continuing, inputs=inputs,
                            seed=cfg.train.seed, device=runtime.device, argv=argv)
        run.update(data={**data_info, "train": len(train_items), "valid": len(valid_items)},
                   classes=list(cfg.data.classes))
    dist.barrier()
    if not dist.is_main():
        run = RunDir.open(out)
    log.info("pretrain text: %d train / %d valid transcripts, encoder %s, classes %s", len(train_items),
             len(valid_items), cfg.model.encoder, ", ".join(cfg.data.classes))
    task = TextPretrainTask(cfg, train_items, valid_items, cfg.data.classes, _loader(cfg.model.encoder))
    trainer = Trainer(cfg.train, task, run, runtime)
    fit = trainer.fit(resume=continuing)  # holds the best (validation-selected) weights afterwards
    valid_metrics = None
    if valid_items:
        valid_metrics = trainer.evaluate(valid_items, split="valid")["metrics"]
    summary: dict[str, Any] = {
        "task": TASK, "config_hash": resolved.hash, **inputs, "encoder": cfg.model.encoder,
        "classes": list(cfg.data.classes), "data": {**data_info, "train": len(train_items), "valid": len(valid_items)},
        "stopped": fit.get("stopped"), "steps": fit.get("steps"), "best": _jsonable(fit.get("best")),
        "valid": valid_metrics, "export": str(out / "export"),
    }
    if dist.is_main():
        model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
        model = model.to("cpu")
        write_export(out / "export", model, task.tokenizer, list(cfg.data.classes), cfg,
                     extra={"config_hash": resolved.hash, **inputs,
                            "checkpoint": (fit.get("best") or fit.get("last") or {}).get("checkpoint"),
                            "valid": valid_metrics})
        if valid_metrics is not None:
            atomic_write_json(out / "eval" / "valid.json", {"split": "valid", "metrics": valid_metrics,
                                                            "config_hash": resolved.hash, **inputs})
        atomic_write_json(out / SUMMARY, summary)
    dist.barrier()
    return summary


def _device_name(spec: str) -> str:
    """``runtime.device`` (or ``--device``) -> a concrete device name for joining the process group."""
    from emotk.core.context import options

    spec = (spec or "auto").lower()
    if spec == "auto" and options.device:
        spec = options.device.lower()
    if spec == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return spec


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str)) if obj is not None else None


__all__ = ["TASK", "TextPretrainConfig", "TextPretrainData", "TextPretrainModel", "load_export", "load_items",
           "pretrain_text", "split_items", "write_export"]

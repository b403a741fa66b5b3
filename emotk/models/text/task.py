"""``emotk pretrain text``: fine-tune a text encoder on LLM sentiment pseudo-labels (METHODS.md §2).

Input: a manifest labelled by ``emotk data label`` (field ``sentiment_llm``: negative | neutral | positive;
records with a null label are left out and counted). The encoder (RoBERTa-large in the thesis; any HF
encoder, e.g. ``minilm`` or ``tiny-roberta`` offline) is trained with its masked-mean-pooled states -> linear
head (:mod:`.model`), cross-entropy, 10 epochs, AdamW lr 1e-4, batch 32, through :class:`emotk.train.Trainer`
(:class:`TextPretrainTask`: tokenise in ``collate``, CE in ``training_step``). A seeded 90/10 split of the
sorted ids is the validation set; the checkpoint with the best validation weighted F1 is kept.

Output folder ``OUT`` (:func:`train`)::

    OUT/run.json, config.yaml, log.txt, metrics.jsonl, ckpt/      the training run (resumable)
    OUT/eval/valid.json                                            validation metrics of the selected weights
    OUT/export/                                                    the Hugging Face folder + head (:mod:`.export`)
    OUT/summary.json
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from emotk.core.log import get_logger
from emotk.errors import DataError, UsageError
from emotk.models.text.config import TASK, TextPretrainConfig
from emotk.models.text.model import TextSentimentModel
from emotk.train.task import StepState, TrainTask

log = get_logger("pretrain.text")

SUMMARY = "summary.json"


@dataclass
class TextItem:
    """One training example: manifest id, transcript, class index."""

    id: str
    text: str
    label: int


class TextPretrainTask(TrainTask):
    """Hooks for :class:`emotk.train.Trainer`: tokenise in ``collate``, CE in ``training_step``, weighted F1 etc.

    Args:
        cfg: :class:`emotk.models.text.config.TextPretrainConfig`.
        train_items / valid_items: lists of :class:`TextItem` (valid may be empty -> no selection).
        classes: class names, index order of the labels.
        load: callable returning ``(encoder, tokenizer)``; called once in :meth:`build_model` (after seeding).
    """

    def __init__(self, cfg: Any, train_items: Sequence[TextItem], valid_items: Sequence[TextItem],
                 classes: Sequence[str], load: Any):
        self.cfg = cfg
        self.train_items = list(train_items)
        self.valid_items = list(valid_items)
        self.classes = list(classes)
        self._load = load
        self.tokenizer = None
        self.max_length = int(cfg.data.max_length)

    def build_model(self) -> nn.Module:
        encoder, tokenizer = self._load()
        self.tokenizer = tokenizer
        limit = getattr(encoder.config, "max_position_embeddings", None)
        if limit:
            if getattr(encoder.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
                limit -= 2  # RoBERTa positions start after the padding index
            self.max_length = min(self.max_length, int(limit))
        return TextSentimentModel(encoder, len(self.classes), dropout=self.cfg.model.dropout,
                                  pooling=self.cfg.model.pooling).train()

    def train_dataset(self) -> list[TextItem]:
        return self.train_items

    def valid_dataset(self) -> list[TextItem] | None:
        return self.valid_items or None

    def collate(self, items: list[TextItem]) -> dict[str, Any]:
        if self.tokenizer is None:
            raise RuntimeError("TextPretrainTask.collate called before build_model()")
        enc = self.tokenizer([it.text for it in items], padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "labels": torch.tensor([it.label for it in items], dtype=torch.long), "ids": [it.id for it in items]}

    def training_step(self, model: nn.Module, batch: dict[str, Any], state: StepState) -> dict:
        from emotk.losses import cross_entropy

        logits = model(batch["input_ids"], batch["attention_mask"])
        loss = cross_entropy(logits, batch["labels"])
        accuracy = (logits.detach().argmax(-1) == batch["labels"]).float().mean()
        return {"loss": loss, "accuracy": accuracy}

    def validation_step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        from emotk.losses import cross_entropy

        logits = model(batch["input_ids"], batch["attention_mask"])
        loss = cross_entropy(logits.float(), batch["labels"], reduction="none")
        return {"logits": logits.float(), "labels": batch["labels"], "loss": loss, "ids": batch["ids"]}

    def validation_metrics(self, outputs: dict[str, Any]) -> dict[str, float]:
        return score(outputs["logits"], outputs["labels"], self.classes, outputs.get("loss"))


def score(logits: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], loss: Any = None) -> dict[str, float]:
    """logits (N, C) + labels (N,) -> weighted_f1, macro_f1, balanced_accuracy, accuracy (+ mean loss)."""
    from emotk import metrics

    pred = logits.argmax(-1).cpu().numpy()
    true = labels.cpu().numpy()
    idx = list(range(len(classes)))
    out = {
        "weighted_f1": float(metrics.weighted_f1(true, pred, labels=idx)),
        "macro_f1": float(metrics.macro_f1(true, pred, labels=idx)),
        "balanced_accuracy": float(metrics.balanced_accuracy(true, pred, labels=idx)),
        "accuracy": float(metrics.accuracy(true, pred)),
    }
    if loss is not None:
        values = torch.stack([torch.as_tensor(v).float().reshape(()) for v in loss]) if isinstance(loss, list) else loss
        out["loss"] = float(values.float().mean())
    return out


# ---- data ---------------------------------------------------------------------------------------------------------
def load_items(cfg: TextPretrainConfig, manifest: Any) -> tuple[list[Any], dict[str, Any]]:
    """Manifest -> (list of :class:`TextItem` in manifest order, info).

    Records whose label is null (unparseable / failed LLM answers) or whose text is empty are left out and
    counted in ``info``; a label outside ``data.classes`` or a missing text field is a DataError naming the line.
    """
    from emotk.data.manifest import Manifest
    from emotk.features.text import record_text

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


# ---- the run ---------------------------------------------------------------------------------------------------------
def train(resolved: Any, out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
          argv: list[str] | None = None) -> dict[str, Any]:
    """Train TextPretrainConfig ``resolved.config`` (an :class:`emotk.core.config.Resolved`) into ``out``.

    resume: continue from the last checkpoint of ``out`` (same config); overwrite: replace an existing run.
    ``resolved.runtime`` says where to run. argv: the command line, recorded in run.json. Returns the summary
    (also written to ``OUT/summary.json``): data counts, best validation metrics, the export path, config and
    manifest hashes.
    """
    from emotk.core.runtime import keep_threads

    with keep_threads():  # runtime.threads applies to this call only (library users keep their setting)
        return _train(resolved, Path(out), resume=resume, overwrite=overwrite, argv=argv)


def _train(resolved: Any, out: Path, *, resume: bool, overwrite: bool, argv: list[str] | None) -> dict[str, Any]:
    from emotk.core.io import atomic_write_json
    from emotk.core.runs import RunDir
    from emotk.core.runtime import device_name
    from emotk.models.text.export import write_export
    from emotk.train import distributed as dist
    from emotk.train.trainer import Trainer

    cfg: TextPretrainConfig = resolved.config
    if not cfg.data.manifest:
        raise UsageError("no manifest: pass --data MANIFEST.jsonl (or set data.manifest)")
    runtime = resolved.runtime
    items, data_info = load_items(cfg, cfg.data.manifest)
    train_items, valid_items = split_items(items, cfg.data.valid_fraction, cfg.data.split_seed)
    inputs = {"manifest": data_info["manifest"], "manifest_sha256": data_info["manifest_sha256"]}
    continuing = resume and (out / "run.json").is_file()
    if not continuing:  # a missing encoder fails before OUT is made
        from emotk.features.text import check_text_model

        check_text_model(cfg.model.encoder)
    dist.init(device_name(runtime.device))
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


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str)) if obj is not None else None

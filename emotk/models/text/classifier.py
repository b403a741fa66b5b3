"""The text sentiment classifier of ``emotk pretrain text`` and its training hooks (METHODS.md §2).

A Hugging Face text encoder (RoBERTa-large in the thesis) whose last hidden states are mean-pooled over the
real tokens (padding masked out, as :func:`emotk.nn.pooling.masked_mean`) -> dropout -> one linear layer to
the pseudo-classes; cross-entropy. Only the encoder is kept as the emotion-aware text model; the head is
exported beside it for inspection and prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from emotk.nn.pooling import masked_mean
from emotk.train.task import StepState, TrainTask


class TextSentimentModel(nn.Module):
    """encoder + masked pooling + linear head.

    Args:
        encoder: an HF ``PreTrainedModel`` returning ``last_hidden_state`` (B, T, D).
        num_classes: C. dropout: before the head. pooling: ``mean`` (masked mean, thesis) or ``cls`` (first token).
    """

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.1, pooling: str = "mean"):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be mean or cls, got {pooling!r}")
        self.encoder = encoder
        self.pooling = pooling
        self.dim = int(encoder.config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.dim, num_classes)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) + mask (B, T) -> pooled sentence embeddings (B, D)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        return masked_mean(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """-> logits (B, C)."""
        return self.head(self.dropout(self.embed(input_ids, attention_mask)))


@dataclass
class TextItem:
    """One training example: manifest id, transcript, class index."""

    id: str
    text: str
    label: int


class TextPretrainTask(TrainTask):
    """Hooks for :class:`emotk.train.Trainer`: tokenise in ``collate``, CE in ``training_step``, weighted F1 etc.

    Args:
        cfg: :class:`emotk.models.text.pretrain.TextPretrainConfig`.
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

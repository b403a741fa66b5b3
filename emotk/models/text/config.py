"""``TextPretrainConfig``: the schema of task ``pretrain.text`` (configs/pretrain/text*.yaml), METHODS.md §2.

Sections: ``data`` (the labelled manifest, text and label fields, classes, validation split), ``model`` (the
encoder and its head) and ``train`` (:class:`emotk.train.config.TrainConfig`; thesis: 10 epochs, AdamW lr 1e-4,
batch 32, selection by validation weighted F1). Imports no torch (read by ``emotk config show``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from emotk.data.label import LABEL_FIELD, SENTIMENT_CLASSES
from emotk.errors import ConfigError
from emotk.train.config import TrainConfig

TASK = "pretrain.text"
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

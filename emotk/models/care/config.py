"""``CareConfig``: the schema of task ``pretrain.care`` (configs/pretrain/care*.yaml).

Sections mirror the builders: ``data`` (manifest, crop, split), ``model`` (:class:`CareModelConfig`: speech and
text sources, layer counts, adapters, compat mode, loss weight), ``acoustic`` (frame targets,
:class:`emotk.features.acoustic.AcousticConfig`), ``semantic_target`` (y_text), ``train``
(:class:`emotk.train.config.TrainConfig`). Thesis values (METHODS.md §1) are the defaults: crop 5 s, 80/20 split,
AdamW lr 1e-5, batch 128, 200k steps, λ = 1, WavLM-base layers 0–5 / 6–11, RoBERTa-base layers 6–11, best
checkpoint by validation loss.

Model sources (``model.speech.source`` / ``model.text.source``): a registry name (``wavlm-base``, ``hubert-ls960``,
``data2vec-audio-base``, ``roberta-base``, ``minilm``, ``tiny-wavlm``, ``tiny-roberta``, ...), a local Hugging Face
folder, or ``hf-config:<family>`` (``wavlm``, ``hubert``, ``data2vec-audio``, ``wav2vec2``, ``roberta``, ``bert``):
the family's default transformers config (base size) with random weights, nothing downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from emotk.errors import ConfigError
from emotk.features.acoustic import AcousticConfig
from emotk.train.config import OptimConfig, TrainConfig

TASK = "pretrain.care"


@dataclass
class CareData:
    """Which utterances and how they are cut."""

    manifest: str = ""  # JSONL manifest (or --data); records need audio and text / asr_text
    crop_seconds: float = 5.0  # random crop (train; seeded) / pad to this length; valid: the first crop_seconds
    valid_fraction: float = 0.2  # 80/20 split of the sorted ids, shuffled with split_seed
    split_seed: int = 0
    max_items: int = 0  # use only the first N sorted ids (0 = all; quick experiments)


@dataclass
class SpeechSource:
    """The speech trunk and acoustic encoder (WavLM-base in the thesis)."""

    source: str = "wavlm-base"  # registry name, HF folder, or hf-config:<family>
    path: Optional[str] = None  # explicit local copy of a registry model
    init: Literal["pretrained", "random"] = "pretrained"  # random: the source's architecture, fresh weights
    common_layers: int = 6  # source layers 0..common_layers-1
    acoustic_layers: int = 6  # source layers common_layers..common_layers+acoustic_layers-1


@dataclass
class TextSource:
    """The semantic encoder: the last ``semantic_layers`` layers of a text encoder (RoBERTa-base 6–11)."""

    source: str = "roberta-base"
    path: Optional[str] = None
    init: Literal["pretrained", "random"] = "pretrained"  # random = the "semantic no-init" ablation
    trainable: bool = False  # thesis: frozen; true = the fine-tuned ablations
    adapters: bool = True  # Conv1d down / ConvTranspose1d up around every layer; false = no adapters
    adapter_kernel: int = 5
    adapter_stride: int = 3


@dataclass
class CareModelConfig:
    compat: Literal["thesis", "reference"] = "thesis"  # reference: acoustic grads blocked, CNN/proj/pos-conv frozen
    speech: SpeechSource = field(default_factory=SpeechSource)
    text: TextSource = field(default_factory=TextSource)
    semantic_layers: int = 6  # must equal speech.acoustic_layers (the upstream pairs them)
    lambda_acoustic: float = 1.0  # L = L_sem + lambda * L_acoust


@dataclass
class SemanticTarget:
    """y_text: what the pooled semantic output regresses onto."""

    kind: Literal["text", "whisper", "whisper-frames"] = "text"  # text: mean-pooled text encoder of the transcript;
    # whisper: mean-pooled Whisper-encoder frames of the audio (the "Whisper-pool" ablation); whisper-frames: the
    # 50 Hz Whisper-encoder frames themselves, regressed frame by frame (the "frame-level" ablation, no pooling)
    model: str = "roberta-base"  # text: registry name / HF folder; whisper: a CTranslate2 Whisper name
    field: Literal["auto", "text", "asr_text"] = "auto"  # auto: text, else asr_text
    layer: Optional[int] = None  # text hidden-state index; None = last layer
    max_length: int = 512


@dataclass
class CareFeatures:
    cache_dir: str = ""  # target cache root; "" = <output dir>/features


@dataclass
class CareConfig:
    """Task ``pretrain.care``."""

    data: CareData = field(default_factory=CareData)
    model: CareModelConfig = field(default_factory=CareModelConfig)
    acoustic: AcousticConfig = field(default_factory=AcousticConfig)
    semantic_target: SemanticTarget = field(default_factory=SemanticTarget)
    features: CareFeatures = field(default_factory=CareFeatures)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=1000000, max_steps=200000, batch_size=128, optim=OptimConfig(name="adamw", lr=1e-5),
        select_metric="loss", select_mode="min"))

    def validate(self) -> None:
        self.train.validate()
        self.acoustic.check()
        m = self.model
        if m.speech.common_layers < 1 or m.speech.acoustic_layers < 1 or m.semantic_layers < 1:
            raise ConfigError("model: common_layers, acoustic_layers and semantic_layers must be >= 1")
        if m.semantic_layers != m.speech.acoustic_layers:
            raise ConfigError(f"model.semantic_layers ({m.semantic_layers}) must equal model.speech.acoustic_layers "
                              f"({m.speech.acoustic_layers}): the upstream concatenates them layer by layer")
        if m.text.adapter_kernel < 1 or m.text.adapter_stride < 1 or m.text.adapter_kernel < m.text.adapter_stride:
            raise ConfigError("model.text: need adapter_kernel >= adapter_stride >= 1")
        if m.lambda_acoustic < 0:
            raise ConfigError(f"model.lambda_acoustic must be >= 0, got {m.lambda_acoustic}")
        d = self.data
        if d.crop_seconds <= 0:
            raise ConfigError(f"data.crop_seconds must be > 0, got {d.crop_seconds}")
        if not 0.0 < d.valid_fraction < 1.0:
            raise ConfigError(f"data.valid_fraction must be in (0, 1), got {d.valid_fraction}")
        if self.acoustic.kind == "precomputed" and not self.acoustic.expect_dim:
            raise ConfigError("acoustic.expect_dim: precomputed targets need their width (e.g. 256 for PASE+) "
                              "to size the acoustic regressor")
        if self.train.select_metric not in ("loss", "semantic_loss", "acoustic_loss"):
            raise ConfigError(f"train.select_metric: {self.train.select_metric!r}; choose loss, semantic_loss or "
                              "acoustic_loss (validation losses)")
        if self.train.select_mode != "min":
            raise ConfigError("train.select_mode: validation losses are minimised; use min")

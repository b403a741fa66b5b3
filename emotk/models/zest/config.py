"""``ZestConfig``: the schema of task ``transfer.zest`` (configs/transfer/*.yaml), METHODS.md §6.

Sections mirror the builders: ``data`` (manifest, label fields, split), ``tokens`` (the k-means content
tokenizer file and its K), ``f0`` (YAAPT target settings, cached per run), ``speaker`` (ECAPA x-vector + 2 FC,
adversarial emotion head through a GRL), ``emotion`` (HuBERT fine-tuned, frames reduced to 128-d),
``f0_predictor``, ``duration``, ``loss`` (the joint weights), ``transfer`` (duration clamp, synthesiser) and two
``train`` sections (``train`` for the analysis stage, ``speaker_train`` for the speaker stage).

``compat: reference`` switches the documented reference-code behaviours on at once: F0 predicted as log(F0+1),
durations as log(d+1), durations clamped only at >= 1 during transfer. Each one is also its own key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, get_args

from emotk.errors import ConfigError
from emotk.train.config import OptimConfig, TrainConfig

TASK = "transfer.zest"


@dataclass
class ZestData:
    """Which utterances and which labels (speaker and emotion classes come from the training split)."""

    manifest: str = ""  # JSONL manifest (or --data)
    speaker_field: str = "speaker"
    emotion_field: str = "emotion"
    valid_fraction: float = 0.0  # records without `split` go to train; with 0 the manifest's split field decides
    max_seconds: float = 20.0  # longer utterances are cut (memory of the fine-tuned HuBERT)


@dataclass
class ZestTokens:
    """Content tokens: a KMeansTokenizer file (``emotk features train-tokenizer``) and its content front-end."""

    tokenizer: str = ""  # .safetensors written by KMeansTokenizer.save; its feature space picks the front-end
    n_clusters: int = 100  # K (thesis); must equal the tokenizer's K


@dataclass
class ZestF0:
    """F0 targets (emotk.features.f0.F0Config): YAAPT with the thesis settings by default."""

    backend: Literal["yaapt", "world", "harvest"] = "yaapt"
    alignment: Literal["centre", "thesis"] = "thesis"  # 200 samples of padding, 25 ms windows (thesis)


@dataclass
class ZestSpeaker:
    """ECAPA-TDNN x-vector (frozen) + 2 FC layers -> speaker embedding s; GRL emotion adversary."""

    ecapa: str = "ecapa-voxceleb"  # hub name of the x-vector model (tiny-ecapa for tests; resemblyzer: emotk option)
    ecapa_path: Optional[str] = None  # explicit local copy
    hidden: int = 256  # first FC width
    dim: int = 128  # s; the vocoder conditioning and s + E need 128
    dropout: float = 0.0
    adv_weight: float = 10.0  # lambda_adv^emo (thesis 10; A2A-ZEST 1)
    grl_gamma: float = 10.0  # schedule 2 / (1 + exp(-gamma p)) - 1 (reference)


@dataclass
class ZestEmotion:
    """HuBERT-base, CNN frozen, transformer fine-tuned; frames reduced to ``dim`` by two k=5 convs."""

    upstream: str = "hubert-base-ls960"  # hub name (tiny-hubert for tests)
    upstream_path: Optional[str] = None
    layers: Literal["sum", "last"] = "sum"  # reference: the sum of all hidden states
    dim: int = 128  # E and e-bar width (must equal speaker.dim: the F0 predictor attends over s + E)
    kernel: int = 5
    adv_weight: float = 1.0  # lambda_adv^spk
    grl_gamma: float = 10.0
    freeze_cnn: bool = True


@dataclass
class ZestF0Predictor:
    """f-hat = 1D-CNN(Attn(Q = token embeddings, K = V = s + E))."""

    hidden: int = 256
    heads: int = 4
    kernel: int = 3
    positional: Literal["none", "sinusoidal"] = "none"  # sinusoidal: add positions to Q and K (emotk option)
    target: Literal["hz", "log"] = "hz"  # log: predict log(F0 + 1), L1 still in Hz (reference)
    scale: float = 1.0  # Hz per output unit for target hz (1 = thesis; the tiny recipe uses 100: faster to fit)


@dataclass
class ZestDuration:
    """Duration predictor on de-duplicated tokens with s and e-bar."""

    hidden: int = 256
    kernel: int = 3
    layers: int = 2
    dropout: float = 0.1
    target: Literal["frames", "log"] = "frames"  # log: predict log(d + 1) (reference)


@dataclass
class ZestLoss:
    """Joint analysis loss L = lambda_e L_emo + lambda_f L_f0 + lambda_d L_dur (thesis Eq. 5.7)."""

    emotion: float = 1000.0
    f0: float = 1.0
    duration: float = 10.0


F0Level = Literal["predicted", "source"]
F0_LEVELS = get_args(F0Level)  # transfer.f0_level (see emotk.models.zest.infer)


@dataclass
class ZestTransfer:
    """Transfer-time settings (Fig. 5.5)."""

    duration_clamp: Literal["relative", "min1"] = "relative"  # relative: within +-ratio of the source (thesis)
    clamp_ratio: float = 0.4
    synth: Literal["world", "bigvgan"] = "world"
    vocoder: str = ""  # exported generator folder for synth: bigvgan
    # predicted: f-hat_conv as the F0 predictor gives it (thesis); source: its voiced frames rescaled by the
    # predictor's level error on the source's own reconstruction (emotk option; see emotk.models.zest.infer)
    f0_level: F0Level = "predicted"


@dataclass
class ZestConfig:
    """Task ``transfer.zest``: the S2S-ZEST analysis models (speaker, emotion + F0 + duration)."""

    compat: Literal["thesis", "reference"] = "thesis"
    data: ZestData = field(default_factory=ZestData)
    tokens: ZestTokens = field(default_factory=ZestTokens)
    f0: ZestF0 = field(default_factory=ZestF0)
    speaker: ZestSpeaker = field(default_factory=ZestSpeaker)
    emotion: ZestEmotion = field(default_factory=ZestEmotion)
    f0_predictor: ZestF0Predictor = field(default_factory=ZestF0Predictor)
    duration: ZestDuration = field(default_factory=ZestDuration)
    loss: ZestLoss = field(default_factory=ZestLoss)
    transfer: ZestTransfer = field(default_factory=ZestTransfer)
    # analysis stage: 200 epochs, batch 32, AdamW 1e-4 (thesis)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=200, batch_size=32, optim=OptimConfig(name="adamw", lr=1e-4), select_metric="loss", select_mode="min"))
    # speaker stage: 10 epochs, batch 32 (thesis)
    speaker_train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=10, batch_size=32, optim=OptimConfig(name="adamw", lr=1e-4), select_metric="loss", select_mode="min"))

    def apply_compat(self) -> "ZestConfig":
        """``compat: reference`` -> log-domain F0 and duration targets and the >= 1 duration clamp."""
        if self.compat == "reference":
            self.f0_predictor.target = "log"
            self.duration.target = "log"
            self.transfer.duration_clamp = "min1"
        return self

    def validate(self) -> None:
        """Consistency checks with messages that say what to change."""
        self.apply_compat()
        self.train.validate("train.optim")
        self.speaker_train.validate("speaker_train.optim")
        if self.emotion.dim != self.speaker.dim:
            raise ConfigError(f"emotion.dim ({self.emotion.dim}) must equal speaker.dim ({self.speaker.dim}): "
                              "the F0 predictor attends over s + E")
        if self.f0_predictor.hidden % self.f0_predictor.heads:
            raise ConfigError(f"f0_predictor.hidden ({self.f0_predictor.hidden}) must be a multiple of "
                              f"f0_predictor.heads ({self.f0_predictor.heads})")
        for key, k in (("f0_predictor.kernel", self.f0_predictor.kernel), ("duration.kernel", self.duration.kernel),
                       ("emotion.kernel", self.emotion.kernel)):
            if k < 1 or k % 2 == 0:
                raise ConfigError(f"{key}: must be an odd number >= 1 (same-length convolutions), got {k}")
        if not self.f0_predictor.scale > 0:
            raise ConfigError(f"f0_predictor.scale: must be > 0, got {self.f0_predictor.scale}")
        if not 0.0 < self.transfer.clamp_ratio < 1.0:
            raise ConfigError(f"transfer.clamp_ratio: must be in (0, 1), got {self.transfer.clamp_ratio}")
        if self.tokens.n_clusters < 2:
            raise ConfigError(f"tokens.n_clusters: need at least 2, got {self.tokens.n_clusters}")
        if min(self.loss.emotion, self.loss.f0, self.loss.duration) < 0:
            raise ConfigError("loss.emotion / loss.f0 / loss.duration must be >= 0")
        if not 0.0 <= self.data.valid_fraction < 1.0:
            raise ConfigError(f"data.valid_fraction: must be in [0, 1), got {self.data.valid_fraction}")

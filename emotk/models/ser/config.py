"""``SerConfig``: the schema of task ``ser.superb`` (configs/ser/*.yaml).

Sections mirror the builders: ``data`` (manifest, protocol + fold, labels, crop/pad/segments), ``upstream``
(frozen encoder or ``lld``, stored layers, feature cache), ``model`` (SUPERB downstream), ``train``
(:class:`emotk.train.config.TrainConfig`), ``loss`` (a name of :data:`emotk.losses.LOSSES` + its arguments).
Thesis values (METHODS.md §1 downstream) are the defaults: batch 32, AdamW lr 1e-4, 50 epochs, head hidden 256,
crop 30 s / pad 1 s, 5 seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from emotk.errors import ConfigError
from emotk.train.config import TrainConfig

TASK = "ser.superb"
CLASSIFICATION_METRICS = ("weighted_f1", "balanced_accuracy", "macro_f1", "accuracy", "loss")
REGRESSION_TARGETS = ("valence", "arousal", "dominance")


@dataclass
class SerData:
    """Which utterances, which split, which labels."""

    manifest: str = ""  # JSONL manifest (or --data)
    protocol: str = ""  # committed protocol name, protocol JSON file, or manifest-split (= "": the records' `split`)
    fold: str = ""  # fold name or 0-based index; "all" = every fold (--all-folds); "" = the protocol's only fold
    label_field: str = "emotion"  # classification label field of the manifest
    label_map: str = ""  # label map name (data_manifests/<dataset>/label_map[.<name>].json) or file; "" = auto
    # train on these classes only (head outputs in this order); records of other labels are dropped; null = all
    classes: Optional[list[str]] = None
    targets: list[str] = field(default_factory=lambda: list(REGRESSION_TARGETS))  # regression fields
    max_seconds: float = 30.0  # crop: the first max_seconds of each utterance are encoded (0 = no crop)
    min_seconds: float = 1.0  # pad: shorter utterances are zero-padded to min_seconds
    segment_seconds: float = 0.0  # cut longer utterances into consecutive windows (DAIC-WOZ: 10 s); 0 = off
    min_segment_seconds: float = 1.0  # a final window shorter than this is dropped (when segmenting)
    # per-speaker: standardise each utterance's features per layer and dim with its speaker's mean / std over
    # that speaker's utterances of the same split (test speakers: their own unlabelled utterances -- transductive)
    speaker_norm: Literal["none", "per-speaker"] = "none"


@dataclass
class SerUpstream:
    """The frozen feature extractor; its features are cached once per utterance."""

    name: str = "wavlm-base-plus"  # registry name (emotk models list) or "lld" (acoustic descriptors, 1 layer)
    path: Optional[str] = None  # explicit local copy of the upstream
    layers: Any = "all"  # "all" or a list of layer indices to store and combine
    dtype: Literal["float32", "float16"] = "float16"  # feature storage precision
    cache_dir: str = ""  # feature cache root; "" = <output dir>/features (shared by every fold and seed)
    # emotk.features.acoustic.AcousticConfig fields for name "lld"; normalize defaults to "none" here, because a
    # per-utterance normalisation would remove exactly the utterance-level means that mean pooling keeps
    lld: Optional[dict[str, Any]] = None


@dataclass
class SerModel:
    """The SUPERB downstream (emotk.models.ser.model). The thesis values are the defaults; ``mean_std`` pooling,
    ``head: linear``, ``input_dropout`` and ``layers`` belong to emotk's strong recipe (configs/ser/*-strong.yaml)."""

    head: Literal["mlp", "linear"] = "mlp"  # mlp: 2-layer FFN (thesis); linear: one linear layer (a linear probe)
    head_hidden: int = 256  # 2-layer FFN hidden width (thesis)
    dropout: float = 0.0  # after the FFN's hidden layer
    input_dropout: float = 0.0  # on the pooled utterance vector (the only dropout of a linear head)
    # thesis: masked mean; mean_std: each layer's masked mean + std over time, then the weighted layer sum
    pooling: Literal["mean", "mean_std", "attentive_stats"] = "mean"
    layers: Any = "all"  # which of the cached upstream layers the head combines: "all" or indices, e.g. [-1]
    # weighted_sum: the thesis's learned softmax layer weights; concat: each layer pooled on its own, side by side
    layer_combine: Literal["weighted_sum", "concat"] = "weighted_sum"
    layer_norm: bool = False  # normalise each layer before the weighted sum (s3prl option)
    compat: Literal["thesis", "reference"] = "thesis"  # reference: head without ReLU (CARE reference code)
    # standardise features per layer and dim with training-set statistics. Helps within a corpus; when test
    # speakers or corpora differ the training statistics fit them less well -- compare data.speaker_norm
    feature_norm: bool = False


@dataclass
class SerLoss:
    """A loss of emotk.losses by name; class counts of the training split are passed when it needs them."""

    name: str = "ce"  # ce | wce | focal | wfocal | vs (classification); ccc | mse | l1 (regression)
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments, e.g. {gamma: 2.0}


@dataclass
class SerConfig:
    """Task ``ser.superb``: SUPERB-protocol speech emotion recognition (classification or VAD regression)."""

    task_type: Literal["classification", "regression"] = "classification"
    seeds: int = 5  # runs per fold, seeds train.seed .. train.seed + seeds - 1 (mean ± std reported)
    data: SerData = field(default_factory=SerData)
    upstream: SerUpstream = field(default_factory=SerUpstream)
    model: SerModel = field(default_factory=SerModel)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: SerLoss = field(default_factory=SerLoss)
    # grid search scored on the validation split only: {dotted key: [candidates]} (emotk.models.ser.search);
    # `ser train --search KEY=[v1,v2]` adds or replaces a key; {} = train the config as it is
    search: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Consistency checks with messages that say what to change."""
        self.train.validate()
        up = self.upstream
        if up.layers != "all":
            if not isinstance(up.layers, list) or not up.layers or not all(
                    isinstance(i, int) and not isinstance(i, bool) for i in up.layers):
                raise ConfigError(f"upstream.layers: expected \"all\" or a non-empty list of layer indices, "
                                  f"got {up.layers!r}")
        if up.name == "lld" and up.layers not in ("all", [0], [-1]):
            raise ConfigError("upstream.layers: the lld upstream has a single layer; use \"all\"")
        if up.name != "lld" and up.lld is not None:
            raise ConfigError("upstream.lld: acoustic settings only apply to upstream.name: lld")
        d = self.data
        if d.max_seconds < 0 or d.min_seconds < 0 or d.segment_seconds < 0:
            raise ConfigError("data.max_seconds / min_seconds / segment_seconds must be >= 0")
        if d.max_seconds and d.min_seconds > d.max_seconds:
            raise ConfigError(f"data.min_seconds ({d.min_seconds}) is larger than data.max_seconds ({d.max_seconds})")
        if d.speaker_norm not in ("none", "per-speaker"):
            raise ConfigError(f"data.speaker_norm: expected none or per-speaker, got {d.speaker_norm!r}")
        if d.classes is not None:
            if (not isinstance(d.classes, list) or len(d.classes) < 2
                    or not all(isinstance(c, str) and c for c in d.classes)):
                raise ConfigError(f"data.classes: expected a list of at least 2 class names, got {d.classes!r}")
            if len(set(d.classes)) != len(d.classes):
                raise ConfigError(f"data.classes: duplicate classes in {d.classes}")
            if self.task_type == "regression":
                raise ConfigError("data.classes: only for task_type classification")
        if self.seeds < 1:
            raise ConfigError(f"seeds: need at least 1 run, got {self.seeds}")
        m = self.model
        if m.head_hidden < 0 or not 0 <= m.dropout < 1 or not 0 <= m.input_dropout < 1:
            raise ConfigError("model.head_hidden must be >= 0 and model.dropout / model.input_dropout in [0, 1)")
        if m.head not in ("mlp", "linear"):
            raise ConfigError(f"model.head: expected mlp or linear, got {m.head!r}")
        if m.layer_combine == "concat" and m.pooling == "attentive_stats":
            raise ConfigError("model.layer_combine=concat pools each layer on its own: use model.pooling mean or "
                              "mean_std")
        if m.layers != "all" and (not isinstance(m.layers, list) or not m.layers or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in m.layers)):
            raise ConfigError(f"model.layers: expected \"all\" or a non-empty list of layer indices, e.g. [-1], "
                              f"got {m.layers!r}")
        if self.task_type == "regression":
            if not d.targets:
                raise ConfigError("data.targets: regression needs at least one target field, "
                                  "e.g. [valence, arousal, dominance]")
            if self.loss.name not in ("ccc", "mse", "l1"):
                raise ConfigError(f"loss.name: '{self.loss.name}' is a classification loss; regression uses "
                                  "ccc (thesis), mse or l1")
            allowed = ("ccc", "loss", *(f"ccc_{t}" for t in d.targets))
        else:
            if self.loss.name in ("ccc", "mse", "l1"):
                raise ConfigError(f"loss.name: '{self.loss.name}' is a regression loss; set task_type: regression "
                                  "or use ce / wce / focal / wfocal / vs")
            allowed = CLASSIFICATION_METRICS
        if self.train.select_metric not in allowed:
            raise ConfigError(f"train.select_metric: '{self.train.select_metric}' is not a {self.task_type} metric; "
                              f"choose one of {', '.join(allowed)}")
        if self.search:
            from emotk.models.ser.search import check_search

            self.search = check_search(self.search, self)  # values coerced to their keys' types

    def feature_config(self) -> Any:
        """The :class:`emotk.models.ser.features.SerFeatures` that keys the feature cache."""
        from emotk.models.ser.features import SerFeatures

        up = self.upstream
        return SerFeatures(upstream=up.name, path=up.path, layers=None if up.layers == "all" else list(up.layers),
                           dtype=up.dtype, max_seconds=self.data.max_seconds, min_seconds=self.data.min_seconds,
                           lld={"normalize": "none", **(up.lld or {})} if up.name == "lld" else None)

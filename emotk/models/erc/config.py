"""``ErcConfig``: the schema of task ``erc.hcam`` (configs/erc/*.yaml): HCAM emotion recognition in conversations.

HCAM (METHODS.md §3, thesis §4.1.2) is hierarchical: stage I gives one vector per utterance (no context), stage II
models the conversation per modality, stage III fuses speech and text. ``emotk erc embed`` writes the stage-I
vectors of every utterance into a feature cache once; ``emotk erc train`` trains one stage on the frozen vectors
of the previous one, for every seed, and reports weighted F1 (mean ± std over seeds). Sections:

* ``data``: manifest (with ``dialogue``, ``turn``, ``speaker``), protocol (``manifest-split`` = the records' own
  ``split`` field), labels;
* ``embed``: where each modality's stage-I vectors come from (a ``features extract`` kind + its config, pooled
  over time to one vector per utterance; ``from_run``: an earlier ``erc train`` run; ``finetune``: HCAM's
  fine-tuned stage I, trained by ``model.stage: 1`` -- :mod:`emotk.models.erc.finetune`);
* ``model``: the stage trained and its sizes (thesis = default, the authors' reference code as ``compat: reference``);
* ``train``: :class:`emotk.train.config.TrainConfig` (thesis: Adam lr 1e-5, batch 32 conversations, 100 epochs,
  clip 0.25, selection on validation weighted F1);
* ``loss``: β·CE + (1−β)·SupCon (Eq. 4.7–4.8); the thesis gives neither β nor τ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from emotk.errors import ConfigError
from emotk.train.config import OptimConfig, TrainConfig

TASK = "erc.hcam"
MODALITIES = ("text", "speech")
METRICS = ("weighted_f1", "macro_f1", "accuracy", "balanced_accuracy", "loss")


@dataclass
class ErcData:
    """Which conversations, which split, which labels."""

    manifest: str = ""  # JSONL manifest with dialogue / turn / speaker (text-only records are fine for text)
    protocol: str = "manifest-split"  # committed protocol name or JSON file; manifest-split = the records' `split`
    fold: str = ""  # fold name or index ("" = the protocol's only fold)
    label_field: str = "emotion"
    label_map: str = ""  # label map name or file ("" = auto: the dataset's committed map when there is one)
    classes: Optional[list[str]] = None  # train on these classes only (others are ignored, as unlabelled turns)


@dataclass
class ErcEmbed:
    """Stage-I vectors of one modality: a ``features extract`` kind and its config, pooled to one vector -- or,
    with ``from_run``, the per-turn embeddings of a trained ``erc train`` run (hierarchical HCAM: stage II on the
    frozen stage I run, stage III on the frozen stage II runs)."""

    from_run: str = ""  # an `erc train` output folder (or export): its best run's turn embeddings are the vectors
    kind: str = "text"  # text (sentence-encoder mean) | upstream (SSL layers) | acoustic (lld) | whisper-encoder
    config: dict[str, Any] = field(default_factory=dict)  # the kind's config, e.g. {model: minilm}
    layers: Any = "all"  # upstream: which stored layers are averaged ("all" or indices)
    pool: Literal["mean", "mean_std"] = "mean"  # frame-level kinds: time pooling to one vector
    # ---- HCAM's fine-tuned stage I (model.stage 1 trains encoder + head on single utterances; emotk.models.erc
    # .finetune). The encoder is config.model (+ config.path): kind text = any HF text encoder (minilm offline,
    # roberta-large, an `emotk pretrain text` export folder); kind upstream = an SSL speech model (hubert-large-ll60k,
    # wav2vec2-large-robust, tiny-wavlm). Stage II reads the trained run through embed.<m>.from_run.
    finetune: bool = False  # true: train the encoder with its HCAM head (model.stage 1) instead of pooling it frozen
    compat: Literal["thesis", "reference"] = "thesis"  # reference: the encoder stays frozen (authors' code)
    freeze_cnn: bool = True  # speech, thesis: the CNN feature encoder frozen, the transformer fine-tuned
    encoder_lr: Optional[float] = None  # learning rate of the encoder's parameters (null = train.optim.lr)
    max_tokens: int = 128  # text: tokens per utterance at most (longer ones are truncated)
    max_seconds: Optional[float] = None  # speech: audio per utterance at most (its start; null = all)
    spliced_layers: int = 4  # text head: the last N hidden layers concatenated per token (thesis: 4)
    gru_hidden: int = 128  # text head: bi-GRU per direction (embedding 2·gru_hidden; the thesis gives none)
    gru_layers: int = 1
    head_pool: Literal["mean", "max"] = "mean"  # text head: masked pooling over tokens
    conv_dim: int = 128  # speech head: 1D-CNN channels = embedding width (reference: 128)
    kernel_size: int = 1  # speech head: Conv1d kernel (reference: 1)


@dataclass
class ErcModel:
    """The stage trained on the frozen stage below (emotk.models.erc.model). Sizes the thesis does not give follow
    the authors' reference code (stage II: GRU 200 x 2 layers, attention 360-d / 3 heads; stage III: 60 / 3 / 2)."""

    stage: int = 2  # 1 = utterance classifier (no context), 2 = context per modality, 3 = speech + text fusion
    modalities: list[str] = field(default_factory=lambda: ["text"])  # stage 3: [text, speech]
    compat: Literal["thesis", "reference"] = "thesis"  # stage II: thesis (bi-GRU -> SA -> FFN) | reference branches
    context: Literal["full", "causal"] = "full"  # causal: every turn sees only the past (online ERC)
    input_dropout: float = 0.0  # on the input turn vectors
    dropout: float = 0.1
    hidden: int = 256  # stage I classifier width
    gru_hidden: int = 200  # stage II
    gru_layers: int = 2
    attention_dim: int = 360
    heads: int = 3
    window: Optional[int] = None  # stage II (thesis) / III attention span: ±window turns; null = the whole dialogue
    fusion_dim: int = 60  # stage III
    fusion_heads: int = 3
    fusion_layers: int = 2
    # stage 3 only: train the two stage II networks together with the fusion, from stage-I vectors (the joint II+III
    # ablation of thesis Table 4.2); false = hierarchical (fuse frozen stage II runs given by embed.*.from_run)
    joint: bool = False


@dataclass
class ErcLoss:
    """L = β·CE + (1−β)·SupCon over the labelled turns of a batch (Eq. 4.7–4.8). CE is exact whatever the
    number of processes or accumulation steps (a conversation weighs its labelled turns); SupCon's positives and
    negatives are the turns of one process's micro-batch, so splitting a step changes it slightly."""

    beta: float = 0.9  # weight of CE; the thesis gives none (chosen on validation, see configs/erc/*.yaml)
    temperature: float = 0.1  # SupCon τ; the thesis gives none
    form: Literal["khosla", "printed"] = "khosla"  # printed: Eq. 4.7 as printed (anchor kept among its positives)


@dataclass
class ErcEmbeds:
    """Stage-I sources per modality (null = the modality is not used)."""

    text: Optional[ErcEmbed] = field(default_factory=ErcEmbed)  # default: bundled MiniLM sentence means
    speech: Optional[ErcEmbed] = None  # e.g. {kind: upstream, config: {model: whisper-tiny.en}}
    cache_dir: str = ""  # feature cache root ("" = <output dir>/features); share it between experiments

    def get(self, name: str) -> Optional[ErcEmbed]:
        return getattr(self, name)


def _hcam_train() -> TrainConfig:
    return TrainConfig(epochs=100, batch_size=32, clip_grad_norm=0.25, select_metric="weighted_f1",
                       optim=OptimConfig(name="adam", lr=1e-5))


@dataclass
class ErcConfig:
    """Task ``erc.hcam``: one HCAM stage trained over every seed on frozen stage-I vectors."""

    seeds: int = 5  # thesis: mean ± std over 5 seeds
    data: ErcData = field(default_factory=ErcData)
    embed: ErcEmbeds = field(default_factory=ErcEmbeds)
    model: ErcModel = field(default_factory=ErcModel)
    train: TrainConfig = field(default_factory=_hcam_train)
    loss: ErcLoss = field(default_factory=ErcLoss)

    def validate(self) -> None:
        """Consistency checks with messages that name the key to change."""
        self.train.validate()
        m = self.model
        if m.stage not in (1, 2, 3):
            raise ConfigError(f"model.stage: expected 1, 2 or 3, got {m.stage!r}")
        bad = [x for x in m.modalities if x not in MODALITIES]
        if bad or not m.modalities or len(set(m.modalities)) != len(m.modalities):
            raise ConfigError(f"model.modalities: expected distinct names of {', '.join(MODALITIES)}, "
                              f"got {m.modalities!r}")
        if m.stage == 3 and sorted(m.modalities) != sorted(MODALITIES):
            raise ConfigError("model.stage 3 fuses both modalities: set model.modalities=[text,speech]")
        if m.joint and m.stage != 3:
            raise ConfigError("model.joint trains stage II together with stage III: set model.stage=3")
        if m.stage < 3 and len(m.modalities) != 1:
            raise ConfigError(f"model.stage {m.stage} models one modality: set model.modalities=[text] or [speech]")
        missing = [x for x in m.modalities if self.embed.get(x) is None]
        if missing:
            raise ConfigError(f"embed.{missing[0]}: model.modalities uses '{missing[0]}' but embed.{missing[0]} is "
                              f"null; set e.g. --set embed.{missing[0]}.kind=upstream")
        for mod in m.modalities:
            self._check_finetune(mod, self.embed.get(mod))
        if not 0.0 <= self.loss.beta <= 1.0:
            raise ConfigError(f"loss.beta: must be in [0, 1], got {self.loss.beta}")
        if not self.loss.temperature > 0:
            raise ConfigError(f"loss.temperature: must be > 0, got {self.loss.temperature}")
        if not 0 <= m.dropout < 1 or not 0 <= m.input_dropout < 1:
            raise ConfigError("model.dropout and model.input_dropout must be in [0, 1)")
        if m.attention_dim % m.heads or m.fusion_dim % m.fusion_heads:
            raise ConfigError(f"model.attention_dim ({m.attention_dim}) must be a multiple of model.heads ({m.heads}) "
                              f"and model.fusion_dim ({m.fusion_dim}) of model.fusion_heads ({m.fusion_heads})")
        if min(m.hidden, m.gru_hidden, m.gru_layers, m.attention_dim, m.heads, m.fusion_dim, m.fusion_heads,
               m.fusion_layers) < 1:
            raise ConfigError("model sizes (hidden, gru_*, attention_dim, heads, fusion_*) must be >= 1")
        if self.seeds < 1:
            raise ConfigError(f"seeds: need at least 1 run, got {self.seeds}")
        if self.train.select_metric not in METRICS:
            raise ConfigError(f"train.select_metric: '{self.train.select_metric}' is not one of {', '.join(METRICS)}")

    def _check_finetune(self, mod: str, entry: ErcEmbed) -> None:
        key = f"embed.{mod}"
        if not entry.finetune:
            return
        if entry.from_run:
            raise ConfigError(f"{key}.finetune and {key}.from_run exclude each other: finetune trains stage I "
                              "(model.stage 1); from_run reads a trained one (stage II / III)")
        if self.model.stage != 1:
            raise ConfigError(f"{key}.finetune trains stage I: set model.stage=1 (then point stage II at that run "
                              f"with {key}.from_run=RUN_DIR and {key}.finetune=false)")
        want = {"text": "text", "speech": "upstream"}[mod]
        if entry.kind != want:
            raise ConfigError(f"{key}.kind: a fine-tuned {mod} stage I needs kind {want} (the encoder is "
                              f"{key}.config.model), got {entry.kind!r}")
        if not str(entry.config.get("model") or ("minilm" if mod == "text" else "")):
            raise ConfigError(f"{key}.config.model: name the {mod} encoder to fine-tune")
        if entry.max_tokens < 4:
            raise ConfigError(f"{key}.max_tokens: must be >= 4, got {entry.max_tokens}")
        if entry.max_seconds is not None and not entry.max_seconds > 0:
            raise ConfigError(f"{key}.max_seconds: must be > 0 (or null), got {entry.max_seconds}")
        if entry.encoder_lr is not None and not entry.encoder_lr > 0:
            raise ConfigError(f"{key}.encoder_lr: must be > 0 (or null), got {entry.encoder_lr}")
        if min(entry.spliced_layers, entry.gru_hidden, entry.gru_layers, entry.conv_dim) < 1:
            raise ConfigError(f"{key}: spliced_layers, gru_hidden, gru_layers and conv_dim must be >= 1")
        if entry.kernel_size < 1 or entry.kernel_size % 2 == 0:
            raise ConfigError(f"{key}.kernel_size: must be odd and >= 1, got {entry.kernel_size}")


def finetuned(cfg: Any) -> Optional[str]:
    """The modality whose stage I ``cfg`` fine-tunes (``embed.<m>.finetune`` under model.stage 1), else None."""
    if cfg.model.stage != 1:
        return None
    for mod in cfg.model.modalities:
        entry = cfg.embed.get(mod)
        if entry is not None and entry.finetune:
            return mod
    return None

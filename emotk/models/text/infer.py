"""Inference with an ``emotk pretrain text`` export: sentiment predictions and sentence embeddings for texts.

``TextClassifier(EXPORT_DIR)`` loads the fine-tuned encoder, its tokenizer and the sentiment head
(:func:`emotk.models.text.export.load_export`) and runs them in batches: :meth:`TextClassifier.embed` gives the
pooled sentence embeddings the head sees (the same vectors ``TextEncoder(model=EXPORT_DIR)`` gives for mean
pooling), :meth:`TextClassifier.predict` the label and class probabilities of each text. Padding is masked, so a
text's result does not depend on the other texts of its batch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from emotk.errors import DataError
from emotk.models.text.export import EXPORT_META, load_export


class TextClassifier:
    """A loaded text sentiment classifier. ``classes``: the label names in head order."""

    def __init__(self, export_dir: str | os.PathLike, device: str = "cpu", batch_size: int = 32) -> None:
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        self.export_dir = Path(export_dir)
        self.model, self.tokenizer, self.classes = load_export(self.export_dir, device)
        meta = json.loads((self.export_dir / EXPORT_META).read_text(encoding="utf-8"))
        self.max_length = int(meta.get("max_length") or 512)
        self.device = device
        self.batch_size = int(batch_size)

    def _batches(self, texts: Sequence[str]):
        import torch

        texts = [str(t) for t in texts]
        for s in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[s: s + self.batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            with torch.no_grad():
                yield enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Texts (N) -> pooled sentence embeddings (N, D) float32."""
        import torch

        out = []
        for ids, mask in self._batches(texts):
            with torch.no_grad():
                out.append(self.model.embed(ids, mask).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.dim), np.float32)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Texts (N) -> class probabilities (N, C) float32 (softmax of the head's logits)."""
        import torch

        out = []
        for ids, mask in self._batches(texts):
            with torch.no_grad():
                out.append(torch.softmax(self.model(ids, mask).float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def predict(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Texts (N) -> one ``{"label", "probabilities": {class: p}}`` per text, in input order."""
        probs = self.probabilities(texts)
        return [{"label": self.classes[int(p.argmax())],
                 "probabilities": {c: float(v) for c, v in zip(self.classes, p)}} for p in probs]


__all__ = ["TextClassifier"]

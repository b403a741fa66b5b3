"""The records the hub's modules share: where a model was found, and a loaded model with its processors.

Pure data (no torch import), so every module of :mod:`emotk.hub` can use them without importing another.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Location:
    """Where a model was found: ``source`` is "path", "emotk_models", "hf_cache" or "package"."""

    source: str
    path: Path

    def to_dict(self) -> dict:
        return {"source": self.source, "path": str(self.path)}


@dataclass
class LoadedModel:
    """A loaded pretrained model and the pre-/post-processing objects that belong to it.

    ``model`` is the network (a ``torch.nn.Module`` in eval mode for every torch family; a
    ``faster_whisper.WhisperModel`` for CTranslate2; a speechbrain ``EncoderClassifier`` for ECAPA; a
    resemblyzer ``VoiceEncoder``). ``feature_extractor`` (audio front-end), ``tokenizer`` and ``processor``
    are set where the family has them. ``path`` is the local copy (None for in-memory tiny models).
    """

    name: str
    family: str
    format: str
    path: Path | None
    model: Any
    feature_extractor: Any = None
    tokenizer: Any = None
    processor: Any = None
    sample_rate: int | None = None

    def describe(self) -> dict:
        """Return a JSON-ready summary (name, family, format, path, class names, parameter count)."""
        n_params = None
        if hasattr(self.model, "parameters"):
            with contextlib.suppress(Exception):
                n_params = int(sum(p.numel() for p in self.model.parameters()))
        return {
            "name": self.name, "family": self.family, "format": self.format,
            "path": str(self.path) if self.path else None, "model": type(self.model).__name__,
            "feature_extractor": type(self.feature_extractor).__name__ if self.feature_extractor else None,
            "tokenizer": type(self.tokenizer).__name__ if self.tokenizer else None,
            "parameters": n_params, "sample_rate": self.sample_rate,
        }

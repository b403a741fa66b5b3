"""What evaluation needs from a model: two narrow protocols (the "system protocol").

``emotk.eval`` imports nothing from ``emotk.models`` except the public ``emotk.models.<task>.infer`` modules, whose
loaders return objects of these protocols:

* :class:`TransferSystem` -- an emotion-style-transfer system (``emotk.models.zest.infer.load_transfer_system``;
  the training-free floors of :mod:`emotk.eval.baselines` follow it too). Options such as the fixed-durations
  ablation or the F0 level are constructor options of the system, not arguments of ``convert``.
* :class:`EmotionEmbedder` -- an utterance emotion embedding for Emo-Sim
  (``emotk.models.zest.infer.load_emotion_embedder``, ``emotk.models.ser.infer.load_emotion_embedder`` and the
  embedders of :mod:`emotk.eval.measures`).

Waveforms are 16 kHz mono float32 numpy arrays (:data:`emotk.core.audio.SAMPLE_RATE`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TransferSystem(Protocol):
    """Converts a source utterance to the emotion of a reference utterance."""

    name: str  # the system's row label in the report

    def convert(self, src_wav: np.ndarray, ref_wav: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """(source (N,), reference (M,)) -> (converted waveform (N',) float32, info: JSON-ready numbers)."""
        ...


@runtime_checkable
class EmotionEmbedder(Protocol):
    """An utterance-level emotion embedding; the backend's ``name`` lands in the report."""

    name: str

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """16 kHz mono float waveform (S,) -> utterance embedding (D,) float32."""
        ...

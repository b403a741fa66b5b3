"""Speaker encoder of S2S-ZEST: ECAPA-TDNN x-vector (frozen) -> 2 FC layers -> speaker embedding s.

Trained with L = CE_spk - lambda_adv^emo CE_emo: the emotion classifier sits behind a gradient-reversal layer
(:class:`emotk.nn.grl.GradientReversal`) whose coefficient follows ``adv_weight * (2 / (1 + e^(-gamma p)) - 1)``,
so minimising CE_spk + CE_emo trains the emotion head while pushing s to carry no emotion.
The x-vector front-end (speechbrain ECAPA from a local directory, ``tiny-ecapa`` in tests) stays frozen, as
in the reference code where x-vectors are computed once per utterance.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from emotk.nn.grl import GradientReversal


class SpeakerEncoder(nn.Module):
    """x-vector (B, xvector_dim) -> s (B, dim); heads give speaker and (adversarial) emotion logits.

    Args: xvector_dim (192 for ecapa-voxceleb), num_speakers, num_emotions, hidden (first FC), dim (s),
    dropout, adv_weight (lambda_adv^emo, thesis 10).
    """

    def __init__(self, xvector_dim: int, num_speakers: int, num_emotions: int, hidden: int = 256, dim: int = 128,
                 dropout: float = 0.0, adv_weight: float = 10.0) -> None:
        super().__init__()
        self.xvector_dim, self.dim = int(xvector_dim), int(dim)
        self.encoder = nn.Sequential(nn.Linear(xvector_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, dim))
        self.speaker_head = nn.Linear(dim, num_speakers)
        self.grl = GradientReversal(adv_weight)
        self.adv_weight = float(adv_weight)
        self.emotion_head = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_emotions))

    def embed(self, xvector: torch.Tensor) -> torch.Tensor:
        """(B, xvector_dim) -> speaker embedding s (B, dim)."""
        return self.encoder(xvector)

    def forward(self, xvector: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, xvector_dim) -> {"speaker_embedding": (B, dim), "speaker_logits": (B, S), "emotion_logits": (B, E)}."""
        s = self.embed(xvector)
        return {"speaker_embedding": s, "speaker_logits": self.speaker_head(s),
                "emotion_logits": self.emotion_head(self.grl(s))}


class XVectorExtractor:
    """Frozen speaker vectors: list of 16 kHz waveforms -> (B, D) float32 numpy (one utterance at a time, so
    padding never enters a statistic). ``name``: hub name of an ECAPA-TDNN (ecapa-voxceleb, tiny-ecapa; thesis) or
    ``resemblyzer`` (the GE2E d-vector that ships inside the resemblyzer wheel: an emotk option with real speaker
    information and no download, used by the demo); ``path``: local copy."""

    def __init__(self, name: str = "ecapa-voxceleb", path: str | None = None, device: str = "cpu") -> None:
        from emotk import hub
        from emotk.compat import ensure_torchaudio_importable

        ensure_torchaudio_importable()  # speechbrain imports torchaudio (hub.tiny's ECAPA builder does not do it first)
        self.name = name
        self.loaded = hub.load(name, path=path, device=device)
        self.device = device
        self._dvector = None
        if self.loaded.family == "resemblyzer":
            from emotk.features.speaker import SpeakerEmbedder

            self._dvector = SpeakerEmbedder(encoder=self.loaded.model)
        self.dim = int(
            self(np.zeros(16000, np.float32) + 1e-3 * np.sin(np.arange(16000, dtype=np.float32)))[0].shape[0]
        )

    def __call__(self, *wavs: np.ndarray) -> list[np.ndarray]:
        if self._dvector is not None:
            return [self._dvector.embed(w) for w in wavs]
        out = []
        with torch.inference_mode():
            for w in wavs:
                x = torch.as_tensor(np.asarray(w, np.float32), device=self.device)[None]
                out.append(self.loaded.model.encode_batch(x).reshape(-1).float().cpu().numpy())
        return out

    def batch(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        """(B,) waveforms -> (B, D) x-vectors."""
        return np.stack(self(*wavs)).astype(np.float32)


def speaker_losses(out: dict[str, torch.Tensor], speaker: torch.Tensor, emotion: torch.Tensor) -> dict[str, Any]:
    """CE_spk + CE_emo (the GRL turns the second into - lambda CE_emo for the encoder). Returns the loss dict."""
    ce_spk = nn.functional.cross_entropy(out["speaker_logits"], speaker)
    ce_emo = nn.functional.cross_entropy(out["emotion_logits"], emotion)
    return {"loss": ce_spk + ce_emo, "ce_speaker": ce_spk.detach(), "ce_emotion": ce_emo.detach()}

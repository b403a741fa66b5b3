"""Emotion encoder of S2S-ZEST: HuBERT (CNN frozen, transformer fine-tuned) -> frame embeddings E -> e-bar.

The hidden states (their sum, as in the reference code, or the last layer) go through two Conv1d(k=5) layers
down to ``dim`` (128) channels: E (B, T, dim). The utterance embedding e-bar is the masked mean of E. A softmax
emotion head classifies e-bar; a speaker head behind a gradient-reversal layer (lambda_adv^spk = 1) makes
e-bar speaker-independent. Frames follow :mod:`emotk.features.frames`: E is cut/padded to ``N // 320`` frames so
frame i describes the same samples as token i and F0 frame i.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emotk.nn.grl import GradientReversal
from emotk.nn.masks import lengths_to_mask
from emotk.nn.pooling import masked_mean

PAD = 40  # samples of zeros on each side of the waveform (emotk.features.frames)


class EmotionEncoder(nn.Module):
    """Waveforms -> ``emotion_frames`` E (B, T, dim), ``emotion_embedding`` e-bar (B, dim) and logits.

    upstream: an :class:`emotk.features.upstream.Upstream` built trainable (its CNN frozen); layers "sum" or
    "last"; num_emotions / num_speakers: head sizes; adv_weight: lambda_adv^spk.
    """

    def __init__(self, upstream: nn.Module, num_emotions: int, num_speakers: int, dim: int = 128,
                 kernel: int = 5, layers: str = "sum", adv_weight: float = 1.0) -> None:
        super().__init__()
        self.upstream = upstream
        self.layers = layers
        width = int(upstream.dim)
        mid = max(dim, min(width, 2 * dim))
        self.reduce = nn.Sequential(nn.Conv1d(width, mid, kernel, padding=kernel // 2), nn.ReLU(),
                                    nn.Conv1d(mid, dim, kernel, padding=kernel // 2))
        self.emotion_head = nn.Linear(dim, num_emotions)
        self.grl = GradientReversal(adv_weight)
        self.adv_weight = float(adv_weight)
        self.speaker_head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, num_speakers))
        self.dim = int(dim)

    def forward(self, wav: torch.Tensor, wav_lengths: torch.Tensor, frames: torch.Tensor) -> dict[str, Any]:
        """wav (B, S) zero-padded 16 kHz, wav_lengths (B,) samples, frames (B,) target frame counts (N // 320).

        Returns {"emotion_frames": (B, T, dim) with T = max(frames) and zeros past each length,
        "emotion_embedding": (B, dim), "emotion_logits": (B, E), "speaker_logits": (B, S), "mask": (B, T)}.
        """
        # 40 zero samples on each side (the soft-HuBERT convention): a 400/320 CNN then gives N // 320 frames
        wav = nn.functional.pad(wav, (PAD, PAD))
        out = self.upstream(wav, lengths=wav_lengths + 2 * PAD)
        hidden = out.hidden.sum(dim=1) if self.layers == "sum" else out.hidden[:, -1]  # (B, T', D)
        t = int(frames.max())
        if hidden.shape[1] < t:  # the frame rule: cut or zero-pad to N // 320 frames
            hidden = nn.functional.pad(hidden, (0, 0, 0, t - hidden.shape[1]))
        hidden = hidden[:, :t]
        mask = lengths_to_mask(frames, t).to(hidden.device)
        hidden = hidden * mask[..., None].to(hidden.dtype)
        m = mask[:, None].to(hidden.dtype)
        e = hidden.transpose(1, 2)
        for layer in self.reduce:  # re-mask after each conv: padding never leaks into valid frames
            e = layer(e)
            if isinstance(layer, nn.Conv1d):
                e = e * m
        e = e.transpose(1, 2)
        e_bar = masked_mean(e, mask)
        return {"emotion_frames": e, "emotion_embedding": e_bar, "emotion_logits": self.emotion_head(e_bar),
                "speaker_logits": self.speaker_head(self.grl(e_bar)), "mask": mask}


def build_upstream(name: str, path: str | None = None, *, hf_config: dict | None = None, normalize: bool | None = None,
                   freeze_cnn: bool = True, device: str = "cpu") -> tuple[nn.Module, dict]:
    """A trainable HuBERT-style upstream: from the hub (pretrained weights) or, with ``hf_config`` (a saved
    ``config.to_dict()``), a randomly initialised model of that shape (weights come from a bundle).

    Returns (upstream, description) where description = {"hf_config": dict, "normalize": bool} is what a
    bundle stores to rebuild the same module.
    """
    from emotk.features.upstream import Upstream

    if hf_config is None:
        up = Upstream.from_hub(name, path=path, trainable=True, device=device, freeze_cnn=freeze_cnn)
    else:
        from emotk.compat import ensure_torchaudio_importable

        ensure_torchaudio_importable()
        import transformers

        cfg = dict(hf_config)
        model_type = cfg.pop("model_type")
        config = transformers.AutoConfig.for_model(model_type, **cfg)
        model = transformers.AutoModel.from_config(config)
        up = Upstream.from_model(model, trainable=True, normalize=normalize, freeze_cnn=freeze_cnn).to(device)
    model = getattr(up, "model", None)
    desc = {"hf_config": model.config.to_dict() if model is not None and hasattr(model, "config") else None,
            "normalize": bool(getattr(up, "normalize", False))}
    return up, desc

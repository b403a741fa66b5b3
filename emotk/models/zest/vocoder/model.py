"""The vocoder's training module: generator + discriminators + the mel front end of the loss.

The building blocks stay one module each (as in NVIDIA BigVGAN): ``activations``, ``resample``, ``amp``,
``generator``, ``discriminators``, ``losses``.
"""

from __future__ import annotations

import torch
from torch import nn

from emotk.models.zest.vocoder.config import VocoderConfig


class VocoderGAN(nn.Module):
    """Generator + MPD + MRD + the mel front end of the reconstruction loss (one module for the trainer)."""

    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        from emotk.models.zest.vocoder.discriminators import build_mpd, build_mrd
        from emotk.models.zest.vocoder.generator import VocoderGenerator
        from emotk.models.zest.vocoder.losses import MelSpectrogram

        self.generator = VocoderGenerator(cfg.generator)
        self.mpd = build_mpd(cfg.discriminator)
        self.mrd = build_mrd(cfg.discriminator)
        self.mel = MelSpectrogram(cfg.loss, cfg.generator.sample_rate)

    def generate(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, frames·320) waveform of a batch dict."""
        return self.generator(batch["tokens"], batch["f0"], batch["speaker"], batch["emotion"])

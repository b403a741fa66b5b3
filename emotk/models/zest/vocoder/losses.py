"""Vocoder losses: LSGAN adversarial terms, feature matching and the log-mel L1 reconstruction loss.

The mel spectrogram is computed with ``torch.stft`` and a Slaney-style mel filterbank (librosa's default),
so nothing here needs torchaudio or librosa.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emotk.features.mel import slaney_mel_filterbank
from emotk.models.zest.vocoder.config import LossConfig


class MelSpectrogram(nn.Module):
    """Waveform (B, N) at ``sr`` -> log-mel (B, n_mels, frames): reflect-padded STFT (no centring),
    magnitude, mel filterbank, ``log(clamp(x, 1e-5))``."""

    def __init__(self, cfg: LossConfig, sr: int = 16000):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.win), persistent=False)
        self.register_buffer("basis", torch.from_numpy(slaney_mel_filterbank(sr, cfg.n_fft, cfg.n_mels, cfg.fmin,
                                                                      cfg.fmax)), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        pad = (c.n_fft - c.hop) // 2
        x = F.pad(wav.float().unsqueeze(1), (pad, pad), mode="reflect" if wav.shape[-1] > pad else "constant")
        spec = torch.stft(x.squeeze(1), c.n_fft, c.hop, c.win, self.window, center=False, return_complex=True)
        mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)
        return torch.log(torch.clamp(self.basis @ mag, min=1e-5))


def mel_l1(mel: MelSpectrogram, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Mean |log-mel(real) - log-mel(fake)| over (B, N) waveforms (unweighted; the loss uses x lambda_mel)."""
    return F.l1_loss(mel(fake), mel(real))


def discriminator_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: Σ_k mean((1 - D_k(real))²) + mean(D_k(fake)²)."""
    total = real_logits[0].new_zeros(())
    for r, g in zip(real_logits, fake_logits):
        total = total + torch.mean((1.0 - r) ** 2) + torch.mean(g ** 2)
    return total


def generator_adversarial_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: Σ_k mean((1 - D_k(fake))²)."""
    total = fake_logits[0].new_zeros(())
    for g in fake_logits:
        total = total + torch.mean((1.0 - g) ** 2)
    return total


def feature_matching_loss(real_fmaps: list[list[torch.Tensor]], fake_fmaps: list[list[torch.Tensor]]) -> torch.Tensor:
    """Σ over sub-discriminators and layers of mean |f_real - f_fake| (real features detached); x lambda_fm later."""
    total = fake_fmaps[0][0].new_zeros(())
    for rs, gs in zip(real_fmaps, fake_fmaps):
        for r, g in zip(rs, gs):
            total = total + torch.mean(torch.abs(r.detach() - g))
    return total

"""BigVGAN discriminators: multi-period (MPD) and multi-resolution spectrogram (MRD).

Each sub-discriminator maps a waveform (B, 1, N) to (logits (B, L), feature maps [tensor, ...]); the
feature maps feed the feature-matching loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from emotk.models.zest.vocoder.config import DiscriminatorConfig

_SLOPE = 0.1


class PeriodDiscriminator(nn.Module):
    """The waveform folded into (B, 1, N/p, p) columns of period ``period``, then 2-D convs along time."""

    def __init__(self, period: int, channels: list[int], kernel: int = 5, stride: int = 3):
        super().__init__()
        self.period = period
        chans = [1, *channels]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(chans[i], chans[i + 1], (kernel, 1),
                                  (stride if i < len(channels) - 1 else 1, 1), padding=(kernel // 2, 0)))
            for i in range(len(channels)))
        self.conv_post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, n = x.shape
        if n % self.period:
            x = F.pad(x, (0, self.period - n % self.period), mode="reflect" if n > self.period else "constant")
        x = x.view(b, c, -1, self.period)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), _SLOPE)
            fmaps.append(x)
        x = self.conv_post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class ResolutionDiscriminator(nn.Module):
    """2-D convs over the STFT magnitude (B, 1, frames, n_fft/2+1) of one resolution [n_fft, hop, win]."""

    def __init__(self, resolution: list[int], channels: int = 32):
        super().__init__()
        self.n_fft, self.hop, self.win = (int(v) for v in resolution)
        self.register_buffer("window", torch.hann_window(self.win), persistent=False)
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, channels, (3, 9), padding=(1, 4))),
            weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))),
        ])
        self.conv_post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, N) -> magnitude (B, 1, frames, n_fft/2+1)."""
        pad = (self.n_fft - self.hop) // 2
        x = F.pad(x, (pad, pad), mode="reflect" if x.shape[-1] > pad else "constant").squeeze(1)
        spec = torch.stft(x, self.n_fft, self.hop, self.win, self.window, center=False, return_complex=True)
        mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)
        return mag.transpose(1, 2).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.spectrogram(x)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), _SLOPE)
            fmaps.append(x)
        x = self.conv_post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class MultiDiscriminator(nn.Module):
    """A list of sub-discriminators applied to real and generated audio alike."""

    def __init__(self, discriminators: list[nn.Module]):
        super().__init__()
        self.discriminators = nn.ModuleList(discriminators)

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[list, list, list, list]:
        """real/fake (B, N) or (B, 1, N) -> (real logits, fake logits, real fmaps, fake fmaps), one entry each."""
        real = real.unsqueeze(1) if real.dim() == 2 else real
        fake = fake.unsqueeze(1) if fake.dim() == 2 else fake
        rl, fl, rf, ff = [], [], [], []
        for d in self.discriminators:
            lr_, fr_ = d(real)
            lf_, ff_ = d(fake)
            rl.append(lr_)
            fl.append(lf_)
            rf.append(fr_)
            ff.append(ff_)
        return rl, fl, rf, ff


def build_mpd(cfg: DiscriminatorConfig) -> MultiDiscriminator:
    """Multi-period discriminator over ``cfg.mpd_periods``."""
    return MultiDiscriminator([PeriodDiscriminator(p, list(cfg.mpd_channels)) for p in cfg.mpd_periods])


def build_mrd(cfg: DiscriminatorConfig) -> MultiDiscriminator:
    """Multi-resolution discriminator over ``cfg.mrd_resolutions``."""
    return MultiDiscriminator([ResolutionDiscriminator(r, cfg.mrd_channels) for r in cfg.mrd_resolutions])

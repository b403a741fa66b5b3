"""The Whisper encoder (Radford et al., 2022) with masks, so that it runs at any input length in batches.

Architecture: log-mel (B, n_mels, M) -> conv1 (kernel 3, stride 1) + GELU -> conv2 (kernel 3, stride 2) + GELU
-> frames (B, T = ceil(M / 2), D) + learned/sinusoidal positions ``[:T]`` -> pre-LayerNorm transformer blocks
(self-attention, GELU feed-forward) -> final LayerNorm. Parameter names are those of transformers'
``WhisperEncoder``, so its ``state_dict()`` loads here unchanged (``strict=True``).

Unlike the released implementations, the input need not be the 30-s window: positions are sliced to the input
length, and a batch of different lengths is masked (conv1 outputs past an item's mel frames are zeroed so conv2
sees the same zeros as the padding of a lone item; attention never looks at padded frames), so an item's frames do
not depend on its batch mates. Given the 30-s window without lengths, the output is the released model's.

:class:`WhisperLogMel` is Whisper's own front end (STFT 400/160, Slaney mel filters, log10, dynamic range 8,
``(x + 4) / 4``) written in torch; the weights come from :mod:`emotk.hub.ct2_whisper` (CTranslate2 files) or any
transformers checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from emotk.core.audio import SAMPLE_RATE
from emotk.errors import DataError
from emotk.features.mel import slaney_mel_filterbank

N_FFT = 400  # STFT size of every Whisper model (25 ms)
MEL_HOP = 160  # samples per mel frame (10 ms); the encoder halves the rate: 320 samples per output frame
CONV_STRIDE = 2  # conv2's stride


@dataclass(frozen=True)
class WhisperEncoderConfig:
    """Sizes of a Whisper encoder; the defaults are tiny / tiny.en (4 blocks, 384-d, 6 heads)."""

    n_mels: int = 80
    d_model: int = 384
    num_layers: int = 4
    num_heads: int = 6
    ffn_dim: int = 1536
    max_positions: int = 1500  # output frames of the 30-s window
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads:
            raise DataError(f"Whisper encoder: d_model {self.d_model} is not divisible by {self.num_heads} heads")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> "WhisperEncoderConfig":
        """Build from a dict (e.g. a cached ``config``); raises DataError naming an unknown key."""
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(data) - known - {"model_type"})
        if extra:
            raise DataError(f"{source}: unknown Whisper encoder config key {extra[0]!r} "
                            f"(known: {', '.join(sorted(known))})")
        return cls(**{k: data[k] for k in known if k in data})

    def to_dict(self) -> dict:
        return {"model_type": "whisper-encoder", **asdict(self)}


# ----------------------------------------------------------------------------------------------------------
# Front end


def whisper_mel_filters(n_mels: int, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 Slaney-normalised triangular filters from 0 Hz to Nyquist
    (``librosa.filters.mel(sr, n_fft, n_mels)``, the matrix in openai-whisper's ``mel_filters.npz``)."""
    return slaney_mel_filterbank(sample_rate, n_fft, n_mels)


class WhisperLogMel(nn.Module):
    """Whisper's log-mel front end: waveform (S,) at 16 kHz -> (n_mels, frames), float32.

    ``forward(wav, frames=None)``: ``frames=None`` gives ``ceil(S / 160)`` frames computed as if the audio were
    followed by silence (so they equal the first frames of the same audio padded to 30 s, including the
    dynamic-range floor ``max - 8``, which only frames that see audio can raise); ``frames=F`` zero-pads (or cuts)
    the audio to ``F * 160`` samples first and returns F frames (the released models' 30-s window: F = 3000).
    """

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        self.n_mels = int(n_mels)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.register_buffer("filters", torch.from_numpy(whisper_mel_filters(self.n_mels)), persistent=False)

    @staticmethod
    def num_frames(num_samples: int) -> int:
        """Mel frames of ``num_samples`` samples at native length: ``ceil(S / 160)``."""
        return -(-int(num_samples) // MEL_HOP)

    def forward(self, wav: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        wav = wav.float()
        if frames is None:
            keep = self.num_frames(wav.shape[0])
            # two extra frames: every frame that can see a sample of audio enters the max below; the frames of
            # the 30-s window after those see only zeros and sit at the floor (log10(1e-10)), below any max
            total = keep + 2
        else:
            keep = total = int(frames)
        padded = F.pad(wav[: total * MEL_HOP], (0, max(0, total * MEL_HOP - wav.shape[0])))
        spec = torch.stft(padded, N_FFT, MEL_HOP, window=self.window, return_complex=True)[:, :-1]
        power = spec.abs() ** 2  # (201, total)
        log_spec = torch.clamp(self.filters @ power, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return ((log_spec + 4.0) / 4.0)[:, :keep]


# ----------------------------------------------------------------------------------------------------------
# Encoder


class WhisperAttention(nn.Module):
    """Multi-head self-attention; key projection without bias (a key bias cancels in the softmax)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attend: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, D); attend: (B, 1, 1, T) bool, True on keys that may be attended (None: all)."""
        b, t, d = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)),
                                             attn_mask=attend)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class WhisperEncoderLayer(nn.Module):
    """Pre-LayerNorm block: x + attn(LN(x)), then x + fc2(GELU(fc1(LN(x))))."""

    def __init__(self, cfg: WhisperEncoderConfig) -> None:
        super().__init__()
        self.self_attn = WhisperAttention(cfg.d_model, cfg.num_heads)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.fc1 = nn.Linear(cfg.d_model, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.d_model)
        self.final_layer_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, attend: torch.Tensor | None) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x), attend)
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder: log-mel (B, n_mels, M) -> L = num_layers + 1 hidden layers (B, ceil(M/2), D).

    ``hidden_states(mel, mel_lengths)`` returns every layer as transformers reports them: the embedding (convs +
    positions), the output of blocks 1..N-1, and the final LayerNorm of block N's output.
    """

    def __init__(self, config: WhisperEncoderConfig | None = None) -> None:
        super().__init__()
        cfg = config or WhisperEncoderConfig()
        self.config = cfg
        self.conv1 = nn.Conv1d(cfg.n_mels, cfg.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(cfg.d_model, cfg.d_model, kernel_size=3, stride=CONV_STRIDE, padding=1)
        self.embed_positions = nn.Embedding(cfg.max_positions, cfg.d_model)
        self.embed_positions.weight.data.copy_(sinusoids(cfg.max_positions, cfg.d_model))
        self.layers = nn.ModuleList(WhisperEncoderLayer(cfg) for _ in range(cfg.num_layers))
        self.layer_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

    @staticmethod
    def output_lengths(mel_frames: torch.Tensor) -> torch.Tensor:
        """(N,) mel frames -> (N,) output frames: ``ceil(M / 2)``."""
        m = torch.as_tensor(mel_frames, dtype=torch.long)
        return (m + CONV_STRIDE - 1) // CONV_STRIDE

    def hidden_states(self, mel: torch.Tensor,
                      mel_lengths: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """mel: (B, n_mels, M) log-mel, zero-padded after each item's ``mel_lengths`` (B,) valid frames (None:
        every item fills M, e.g. the 30-s window). Returns (L tensors (B, ceil(M/2), D), valid frames (B,) long).
        Frames past an item's valid ones are not zeroed (callers slice them off)."""
        b, _, m = mel.shape
        if mel_lengths is None:
            mel_lengths = torch.full((b,), m, dtype=torch.long)
        mel_lengths = mel_lengths.to(mel.device, torch.long)
        x = F.gelu(self.conv1(mel))
        if int(mel_lengths.min()) < m:  # zero past each item's end: conv2 then sees what a lone item's padding is
            x = x * (torch.arange(m, device=mel.device)[None, :] < mel_lengths[:, None]).to(x.dtype)[:, None, :]
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, T, D)
        t = x.shape[1]
        if t > self.config.max_positions:
            raise DataError(f"Whisper encoder: {t} frames exceed its {self.config.max_positions} positions "
                            f"({self.config.max_positions * CONV_STRIDE * MEL_HOP / SAMPLE_RATE:g} s); cut the "
                            "input into windows")
        x = x + self.embed_positions.weight[:t]
        frames = self.output_lengths(mel_lengths)
        attend = None
        if int(frames.min()) < t:
            attend = (torch.arange(t, device=mel.device)[None, :] < frames[:, None])[:, None, None, :]
        out = [x]
        for i, layer in enumerate(self.layers):
            x = layer(x, attend)
            out.append(self.layer_norm(x) if i == len(self.layers) - 1 else x)
        return out, frames

    def forward(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """mel (B, n_mels, M) -> the encoder output (B, ceil(M/2), D) (final LayerNorm)."""
        return self.hidden_states(mel, mel_lengths)[0][-1]


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """(length, channels) Whisper's sinusoidal positions (sin half, cos half); the released weights store them."""
    if channels % 2:
        raise DataError(f"Whisper encoder: sinusoidal positions need an even width, got {channels}")
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float32))
    scaled = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


def build_whisper_encoder(config: WhisperEncoderConfig | Mapping[str, Any] | None = None) -> WhisperEncoder:
    """A randomly initialised encoder (eval mode) of ``config`` (a :class:`WhisperEncoderConfig` or its dict)."""
    if isinstance(config, Mapping):
        config = WhisperEncoderConfig.from_dict(config)
    return WhisperEncoder(config).eval()

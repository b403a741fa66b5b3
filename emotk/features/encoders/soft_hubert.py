"""Soft-HuBERT content encoder (van Niekerk et al., 2022), compatible with bshall/hubert's checkpoints.

Architecture (HuBERT-base): a 7-layer convolutional waveform encoder (kernels 10,3,3,3,3,2,2; strides
5,2,2,2,2,2,2 -> receptive field 400 samples, hop 320 = 20 ms at 16 kHz; group norm after the first layer,
GELU everywhere, no biases), a feature projection (LayerNorm 512 -> Linear 512->768), a grouped positional
convolution (kernel 128, 16 groups, weight-normalised over the kernel axis, the last output frame dropped,
GELU) added to the frames, LayerNorm, 12 post-norm transformer layers (768-d, 12 heads, FFN 3072, GELU),
and a linear projection 768 -> 256 that gives the *soft speech units*. ``label_embedding`` (100 x 256) holds
the discrete-unit codebook the soft units were trained to predict; ``masked_spec_embed`` is the mask vector
used in training.

Frames: the waveform is padded by 40 samples on each side, so N samples give ``N // 320`` frames
(:mod:`emotk.features.frames`).

Checkpoints (upstream key names, ``config.json``) are read and written by :mod:`emotk.hub.soft_hubert`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from emotk.core.audio import HOP
from emotk.errors import DataError

PAD = (400 - HOP) // 2  # samples of zero padding on each side of the waveform
_CONV_LAYERS = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))  # (kernel, stride)


@dataclass(frozen=True)
class SoftHubertConfig:
    """Sizes of a soft-HuBERT model; the defaults are the published HuBERT-base checkpoint."""

    conv_dim: int = 512
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_dim: int = 3072
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    unit_dim: int = 256
    num_label_embeddings: int = 100
    dropout: float = 0.1

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> "SoftHubertConfig":
        """Build from a dict (e.g. a ``config.json``); raises DataError naming an unknown key."""
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(data) - known - {"model_type", "emotk_name"})
        if extra:
            raise DataError(f"{source}: unknown soft-HuBERT config key {extra[0]!r} "
                            f"(known: {', '.join(sorted(known))})")
        return cls(**{k: data[k] for k in known if k in data})

    def to_dict(self) -> dict:
        return {"model_type": "soft-hubert", **asdict(self)}


class ConvFeatureExtractor(nn.Module):
    """Waveform (B, 1, T) -> conv features (B, conv_dim, frames); parameters conv0..conv6, norm0."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        in_ch = 1
        for i, (kernel, stride) in enumerate(_CONV_LAYERS):
            setattr(self, f"conv{i}", nn.Conv1d(in_ch, dim, kernel, stride, bias=False))
            in_ch = dim
        self.norm0 = nn.GroupNorm(dim, dim)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm0(self.conv0(wav)))
        for i in range(1, len(_CONV_LAYERS)):
            x = F.gelu(getattr(self, f"conv{i}")(x))
        return x


class FeatureProjection(nn.Module):
    def __init__(self, conv_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(conv_dim)
        self.projection = nn.Linear(conv_dim, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.projection(self.norm(x)))


class PositionalConvEmbedding(nn.Module):
    """Relative positions from a grouped convolution over time: (B, F, H) -> (B, F, H)."""

    def __init__(self, hidden: int, kernel: int, groups: int) -> None:
        super().__init__()
        if kernel % 2:
            raise ValueError(f"pos_conv_kernel must be even (one output frame is dropped), got {kernel}")
        conv = nn.Conv1d(hidden, hidden, kernel_size=kernel, padding=kernel // 2, groups=groups)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))
        return F.gelu(y[:, :, :-1]).transpose(1, 2)


class TransformerEncoder(nn.Module):
    def __init__(self, cfg: SoftHubertConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(cfg.hidden_size, cfg.num_heads, cfg.ffn_dim, dropout=cfg.dropout,
                                       activation="gelu", batch_first=True)
            for _ in range(cfg.num_layers)
        )

    def forward(self, x: torch.Tensor, num_layers: int | None = None,
                hidden_states: list | None = None) -> torch.Tensor:
        for layer in self.layers[:num_layers]:
            x = layer(x)
            if hidden_states is not None:
                hidden_states.append(x)
        return x


class SoftHubert(nn.Module):
    """Soft-HuBERT: waveform (B, T) at 16 kHz -> soft units (B, T // 320, unit_dim)."""

    def __init__(self, config: SoftHubertConfig | None = None) -> None:
        super().__init__()
        cfg = config or SoftHubertConfig()
        self.config = cfg
        self.feature_extractor = ConvFeatureExtractor(cfg.conv_dim)
        self.feature_projection = FeatureProjection(cfg.conv_dim, cfg.hidden_size, cfg.dropout)
        self.positional_embedding = PositionalConvEmbedding(cfg.hidden_size, cfg.pos_conv_kernel,
                                                            cfg.pos_conv_groups)
        self.norm = nn.LayerNorm(cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = TransformerEncoder(cfg)
        self.proj = nn.Linear(cfg.hidden_size, cfg.unit_dim)
        self.masked_spec_embed = nn.Parameter(torch.empty(cfg.hidden_size).uniform_())
        self.label_embedding = nn.Embedding(cfg.num_label_embeddings, cfg.unit_dim)

    @staticmethod
    def _as_batch(wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() == 1:
            wav = wav[None]
        if wav.dim() == 2:
            wav = wav[:, None, :]
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"soft-HuBERT expects a waveform (T), (B, T) or (B, 1, T); got {tuple(wav.shape)}")
        return wav

    def encode(self, wav: torch.Tensor, layer: int | None = None,
               output_hidden_states: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Waveform (B, T) float at 16 kHz, already padded -> transformer output (B, F, hidden).

        ``layer`` stops after that many transformer layers. With ``output_hidden_states`` also returns
        the list [input to layer 1, output of layer 1, ...] (each (B, F, hidden)).
        """
        x = self.feature_extractor(self._as_batch(wav))
        x = self.feature_projection(x.transpose(1, 2))
        x = x + self.positional_embedding(x)
        x = self.dropout(self.norm(x))
        hidden: list[torch.Tensor] | None = [x] if output_hidden_states else None
        x = self.encoder(x, num_layers=layer, hidden_states=hidden)
        return (x, hidden) if output_hidden_states else x

    def units(self, wav: torch.Tensor) -> torch.Tensor:
        """Waveform (B, T) (or (T)) at 16 kHz -> soft units (B, T // 320, unit_dim).

        Pads 40 samples of silence on each side first (the frame rule of emotk.features.frames). Batched
        inputs must be equally long: the conv group norm and the positional convolution see padding.
        """
        wav = self._as_batch(wav)
        wav = F.pad(wav, (PAD, PAD))
        return self.proj(self.encode(wav))

    def logits(self, units: torch.Tensor) -> torch.Tensor:
        """Soft units (B, F, unit_dim) -> cosine similarity to the codebook / 0.1, (B, F, labels)."""
        sim = torch.cosine_similarity(units.unsqueeze(2), self.label_embedding.weight[None, None], dim=-1)
        return sim / 0.1

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`units`."""
        return self.units(wav)


def build_soft_hubert(config: SoftHubertConfig | None = None) -> SoftHubert:
    """Return a randomly initialised SoftHubert (uses the global torch RNG) in eval mode."""
    return SoftHubert(config).eval()

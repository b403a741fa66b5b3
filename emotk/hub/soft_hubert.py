"""Soft-HuBERT content encoder (van Niekerk et al., 2022), compatible with bshall/hubert's checkpoints.

Architecture (HuBERT-base): a 7-layer convolutional waveform encoder (kernels 10,3,3,3,3,2,2; strides
5,2,2,2,2,2,2 -> receptive field 400 samples, hop 320 = 20 ms at 16 kHz; group norm after the first layer,
GELU everywhere, no biases), a feature projection (LayerNorm 512 -> Linear 512->768), a grouped positional
convolution (kernel 128, 16 groups, weight-normalised over the kernel axis, the last output frame dropped,
GELU) added to the frames, LayerNorm, 12 post-norm transformer layers (768-d, 12 heads, FFN 3072, GELU),
and a linear projection 768 -> 256 that gives the *soft speech units*. ``label_embedding`` (100 x 256) holds
the discrete-unit codebook the soft units were trained to predict; ``masked_spec_embed`` is the mask vector
used in training.

The state-dict keys follow the upstream checkpoint (``feature_extractor.conv0.weight``, ...,
``positional_embedding.conv.weight_g``/``weight_v``, ``encoder.layers.N.self_attn.in_proj_weight``, ...,
``proj.weight``), so ``hubert-soft-0d54a1f4.pt`` loads with ``torch.load(weights_only=True)``.

Frames: the waveform is padded by 40 samples on each side, so N samples give ``N // 320`` frames
(:mod:`emotk.features.frames`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from emotk.errors import DataError

PAD = (400 - 320) // 2  # samples of zero padding on each side of the waveform
HOP = 320
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


def _module_classes():
    """Define the torch modules on first use (keeps ``import emotk.hub`` free of torch)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

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

    return SoftHubert


_CLASS: list = []


def soft_hubert_class():
    """Return the ``SoftHubert`` torch module class (defined lazily)."""
    if not _CLASS:
        _CLASS.append(_module_classes())
    return _CLASS[0]


def build_soft_hubert(config: SoftHubertConfig | None = None):
    """Return a randomly initialised SoftHubert (uses the global torch RNG) in eval mode."""
    model = soft_hubert_class()(config)
    return model.eval()


# ---------------------------------------------------------------------------------------------- checkpoints

_WN_UPSTREAM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}


def to_upstream_state_dict(model) -> dict:
    """Return ``model``'s state dict with bshall/hubert's key names (``...conv.weight_g``/``weight_v``)."""
    out = {}
    for key, value in model.state_dict().items():
        for up, ours in _WN_UPSTREAM.items():
            if key.endswith(ours):
                key = key[: -len(ours)] + up
        out[key] = value.detach().clone()
    return out


def from_upstream_state_dict(state: Mapping[str, Any]) -> dict:
    """Map an upstream soft-HuBERT state dict (optionally ``module.``-prefixed, weight_g/weight_v or
    ``weight`` for the positional conv) onto this module's key names. Returns a new dict."""
    import torch

    out: dict = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module."):]
        for up, ours in _WN_UPSTREAM.items():
            if key.endswith("." + up):
                key = key[: -len(up)] + ours
        out[key] = value
    # A checkpoint saved after torch's remove_weight_norm holds a plain weight: split it into g and v.
    plain = "positional_embedding.conv.weight"
    if plain in out and isinstance(out[plain], torch.Tensor):
        w = out.pop(plain)
        out["positional_embedding.conv." + _WN_UPSTREAM["weight_g"]] = torch.linalg.vector_norm(
            w, dim=(0, 1), keepdim=True)
        out["positional_embedding.conv." + _WN_UPSTREAM["weight_v"]] = w
    return out


def infer_config(state: Mapping[str, Any]) -> SoftHubertConfig:
    """Derive the sizes of a soft-HuBERT from its (upstream or emotk) state dict."""
    state = from_upstream_state_dict(state)
    try:
        conv_dim = state["feature_extractor.conv0.weight"].shape[0]
        hidden = state["feature_projection.projection.weight"].shape[0]
        layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layers."))
        ffn = state["encoder.layers.0.linear1.weight"].shape[0]
        unit_dim, _ = state["proj.weight"].shape
        labels = state["label_embedding.weight"].shape[0]
        v = state["positional_embedding.conv.parametrizations.weight.original1"]
    except (KeyError, ValueError) as err:
        raise DataError(f"not a soft-HuBERT state dict (missing {err})") from None
    kernel = v.shape[2]
    groups = hidden // v.shape[1]
    heads = SoftHubertConfig.num_heads if hidden == SoftHubertConfig.hidden_size else max(1, hidden // 64)
    return SoftHubertConfig(conv_dim=conv_dim, hidden_size=hidden, num_layers=layers, num_heads=heads,
                            ffn_dim=ffn, pos_conv_kernel=kernel, pos_conv_groups=groups, unit_dim=unit_dim,
                            num_label_embeddings=labels)


def load_soft_hubert(path: str | Path, device: str = "cpu"):
    """Load a soft-HuBERT from a ``.pt`` file or a folder (``config.json`` + one ``*.pt``/``*.pth``).

    Uses ``torch.load(weights_only=True)``. The sizes come from ``config.json`` when present (the number of
    attention heads cannot be read off the weights), else from the state dict (12 heads for 768-d).
    Returns the model in eval mode on ``device``. Raises DataError for a missing, unreadable or mismatched
    checkpoint.
    """
    import torch

    path = Path(path)
    config: SoftHubertConfig | None = None
    if path.is_dir():
        cfg_file = path / "config.json"
        if cfg_file.is_file():
            try:
                config = SoftHubertConfig.from_dict(json.loads(cfg_file.read_text(encoding="utf-8")), str(cfg_file))
            except json.JSONDecodeError as err:
                raise DataError(f"{cfg_file}: not valid JSON ({err.msg}, line {err.lineno})") from None
        weights = sorted([*path.glob("*.pt"), *path.glob("*.pth")])
        if len(weights) != 1:
            raise DataError(f"{path}: expected exactly one soft-HuBERT .pt/.pth file, found {len(weights)}")
        path = weights[0]
    if not path.is_file():
        raise DataError(f"{path}: soft-HuBERT checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"{path}: cannot read the soft-HuBERT checkpoint ({type(err).__name__}: {err})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a state dict, found {type(state).__name__}")
    model = soft_hubert_class()(config or infer_config(state))
    try:
        model.load_state_dict(from_upstream_state_dict(state), strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise DataError(f"{path}: checkpoint does not fit the soft-HuBERT architecture ({first})") from None
    return model.to(device).eval()


def save_soft_hubert(model, directory: str | Path) -> Path:
    """Write ``model`` as ``config.json`` + ``hubert-soft.pt`` (upstream key names) into ``directory``.

    Returns the directory. Files are written atomically.
    """
    import torch

    from emotk.core.io import atomic_path, atomic_write_json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_json(directory / "config.json", model.config.to_dict())
    with atomic_path(directory / "hubert-soft.pt") as tmp:
        torch.save(to_upstream_state_dict(model), tmp)
    return directory

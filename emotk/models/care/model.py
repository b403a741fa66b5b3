"""The CARE network (METHODS.md §1): speech trunk + common encoder, acoustic encoder, frozen semantic encoder.

Layout (thesis sizes in brackets)::

    wav (16 kHz) -> CNN feature extractor (320x down, 50 Hz) -> feature projection [768]     = view "projection"
      -> positional conv + layer norm -> common encoder: speech layers 0..C-1 [6]             = views common_1..C
         |-> acoustic encoder: speech layers C..C+A-1 [6] -> FC [768 -> 256] -> frame targets (masked MSE)
         |-> semantic encoder: K [6] frozen text layers (the LAST K of a text model), each wrapped as
             Conv1d(D_s, D_t, k=5, s=3, pad=2) -> text layer -> ConvTranspose1d(D_t, D_s, k=5, s=3, pad=2)
             -> masked mean over time -> (Linear to the target width if it differs) -> y_text (MSE)

Lengths: with padding ``k - s`` (2 for k=5, s=3) the down-convolution gives ``ceil(T / 3)`` frames for every
T >= 1, and the transposed convolution is asked for exactly T frames (``output_size``; the output padding it
picks is ``T - 3 ceil(T/3) + 2`` in {0, 1, 2}), so every input length is restored exactly. Padded frames are
zeroed before each convolution and masked in every attention, so an item's outputs never depend on its batch
mates (the CNN and positional conv run per group of equal lengths: the group-norm CNN of WavLM-base normalises
over all time steps).

Widths: the speech width D_s and text width D_t may differ (e.g. WavLM 768 + MiniLM 384): the adapters then map
D_s -> D_t -> D_s themselves (Conv1d(D_s, D_t) / ConvTranspose1d(D_t, D_s)); without adapters a Linear pair does
it (identity when equal). The pooled semantic output is compared with y_text directly when its width is D_s
(thesis: RoBERTa-base 768 = WavLM 768), else through a Linear(D_s, dim(y_text)).

Families: WavLM (relative position bias computed by layer 0 and handed to the later layers, the acoustic ones
included), HuBERT, wav2vec2, data2vec-audio (post-LN "base" layouts; ``do_stable_layer_norm`` models are
refused). Text: any transformers encoder whose layers sit in ``encoder.layer`` (RoBERTa, BERT, MiniLM). No
LayerDrop is applied.

Compat modes: ``thesis`` trains everything but the frozen text layers; ``reference`` (the CARE reference code)
freezes CNN, projection and positional conv and blocks the acoustic loss's gradient from the common encoder (the
acoustic branch gets a detached copy of the common output and of WavLM's position bias).
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emotk.errors import ConfigError, UsageError

# hf-config:<family> -> (config class, model class)
HF_FAMILIES = {
    "wavlm": ("WavLMConfig", "WavLMModel"),
    "hubert": ("HubertConfig", "HubertModel"),
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"),
    "data2vec-audio": ("Data2VecAudioConfig", "Data2VecAudioModel"),
    "roberta": ("RobertaConfig", "RobertaModel"),
    "bert": ("BertConfig", "BertModel"),
}
SPEECH_FAMILIES = ("wavlm", "hubert", "wav2vec2", "data2vec-audio")


@dataclass
class CareArch:
    """Everything that fixes the module shapes besides the two transformers configs (stored in exports)."""

    common_layers: int = 6
    acoustic_layers: int = 6
    semantic_layers: int = 6
    adapters: bool = True
    adapter_kernel: int = 5
    adapter_stride: int = 3
    acoustic_dim: int = 256
    semantic_dim: int = 768  # width of y_text
    compat: str = "thesis"
    text_trainable: bool = False
    semantic_frames: bool = False  # frame-level semantic target: no pooling, a (B, T, semantic_dim) output


# ------------------------------------------------------------------------------------------------ sources
def _transformers():
    from emotk.compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()
    import transformers

    return transformers


def hf_config_model(spec: str, num_layers: int | None = None) -> nn.Module:
    """``hf-config:<family>`` (or ``hf-config:tiny-<family>``) -> a randomly initialised transformers model.

    The default transformers config of the family is the base size (WavLMConfig() == WavLM-base layout,
    RobertaConfig() == RoBERTa-base); ``tiny-*`` uses emotk's tiny test config. num_layers: override of
    ``num_hidden_layers`` (only as many layers as CARE needs are built). Seeded by the caller.
    """
    tf = _transformers()
    name = spec.split(":", 1)[1]
    if name.startswith("tiny-"):
        from emotk.hub.tiny import HF_CONFIGS

        if name not in HF_CONFIGS:
            raise ConfigError(f"{spec}: no tiny config named {name!r}; choose one of {', '.join(sorted(HF_CONFIGS))}")
        cfg_cls, model_cls, kwargs = HF_CONFIGS[name]
        kwargs = dict(kwargs)
    else:
        if name not in HF_FAMILIES:
            raise ConfigError(f"{spec}: unknown family {name!r}; choose one of {', '.join(HF_FAMILIES)}")
        cfg_cls, model_cls = HF_FAMILIES[name]
        kwargs = {}
    if num_layers is not None:
        kwargs["num_hidden_layers"] = int(num_layers)
    config = getattr(tf, cfg_cls)(**kwargs)
    return getattr(tf, model_cls)(config)


def load_source(source: str, path: str | None, init: str, num_layers: int, text: bool) -> nn.Module:
    """A transformers base model for a CARE source: registry name / HF folder / hf-config:<family>.

    init "random" keeps the source's architecture (config) and draws fresh weights. Returns the base model
    (task wrappers unwrapped), on CPU.
    """
    if source.startswith("hf-config:"):
        return hf_config_model(source, num_layers)
    tf = _transformers()
    p = Path(os.path.expanduser(source))
    if path is None and p.is_dir():
        try:
            model = tf.AutoModel.from_pretrained(str(p), local_files_only=True)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{p}: not a usable transformers model ({str(e).splitlines()[0][:160]})") from None
    elif text and (source in ("minilm", "all-minilm-l6-v2") and path is None):
        from emotk.features.text import load_text_model

        model, _ = load_text_model(source)
    else:
        from emotk import hub

        model = hub.load(source, path=path).model
    model = getattr(model, "base_model", model)
    if init == "random":
        model = type(model)(model.config)
    return model.cpu()


def text_layers_of(model: nn.Module) -> nn.ModuleList:
    """The transformer layers of a transformers text encoder (``encoder.layer``)."""
    enc = getattr(model, "encoder", None)
    layers = getattr(enc, "layer", None) if enc is not None else None
    if layers is None:
        raise ConfigError(f"{type(model).__name__}: no encoder.layer list; the semantic encoder needs a BERT-style "
                          "text encoder (RoBERTa, BERT, MiniLM)")
    return layers


def _down_length(n: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    pad = kernel - stride
    return torch.div(n + 2 * pad - kernel, stride, rounding_mode="floor") + 1


def lengths_mask(lengths: torch.Tensor, total: int) -> torch.Tensor:
    """(B,) valid counts -> (B, total) bool, True on valid positions."""
    return torch.arange(total, device=lengths.device)[None, :] < lengths[:, None]


def _layer_out(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


# ------------------------------------------------------------------------------------------------ modules
class SpeechTrunk(nn.Module):
    """CNN + projection + positional conv + the speech transformer layers (common, then acoustic).

    Built from a transformers WavLM/HuBERT/wav2vec2/data2vec-audio base model whose layers are split into
    ``common`` (first C) and ``acoustic`` (next A); later layers are dropped.
    """

    def __init__(self, base: nn.Module, n_common: int, n_acoustic: int) -> None:
        super().__init__()
        cfg = base.config
        self.family = str(cfg.model_type)
        if self.family not in SPEECH_FAMILIES:
            raise ConfigError(f"model.speech.source: a {self.family} model is not a speech SSL model "
                              f"({', '.join(SPEECH_FAMILIES)})")
        if getattr(cfg, "do_stable_layer_norm", False):
            raise ConfigError(f"model.speech.source: {self.family} with do_stable_layer_norm (the 'large' layout) is "
                              "not supported by CARE; use a base-size model")
        layers = list(base.encoder.layers)
        if len(layers) < n_common + n_acoustic:
            raise ConfigError(f"model.speech: the source has {len(layers)} layers but common_layers + acoustic_layers "
                              f"= {n_common + n_acoustic}")
        self.config = cfg
        self.feature_extractor = base.feature_extractor
        self.feature_projection = base.feature_projection
        self.pos_conv_embed = base.encoder.pos_conv_embed
        self.layer_norm = base.encoder.layer_norm
        self.dropout = base.encoder.dropout
        self.common = nn.ModuleList(layers[:n_common])
        self.acoustic = nn.ModuleList(layers[n_common:n_common + n_acoustic])
        self.conv = [(int(k), int(s)) for k, s in zip(cfg.conv_kernel, cfg.conv_stride)]
        self.dim = int(cfg.hidden_size)

    def output_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        """(N,) samples -> (N,) 50 Hz frames of the CNN (0 when shorter than its receptive field)."""
        n = torch.as_tensor(num_samples, dtype=torch.long)
        for k, s in self.conv:
            n = torch.where(n >= k, torch.div(n - k, s, rounding_mode="floor") + 1, torch.zeros_like(n))
        return n

    def embed(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """wavs (B, S) zero-padded, lengths (B,) samples -> (projection (B, T, D), encoder input (B, T, D),
        frames (B,)). Items of equal length share one call (the result equals running each item alone)."""
        frames = self.output_lengths(lengths.cpu()).to(wavs.device)
        t_max = int(frames.max())
        groups: dict[int, list[int]] = {}
        for b, n in enumerate(lengths.tolist()):
            groups.setdefault(int(n), []).append(b)
        proj_out = wavs.new_zeros((wavs.shape[0], t_max, self.dim))
        enc_in = wavs.new_zeros((wavs.shape[0], t_max, self.dim))
        for n, idx in groups.items():
            rows = torch.tensor(idx, device=wavs.device)
            feats = self.feature_extractor(wavs[rows, :n]).transpose(1, 2)
            proj = _layer_out(self.feature_projection(feats))
            h = proj + self.pos_conv_embed(proj)
            h = self.dropout(self.layer_norm(h))
            t = proj.shape[1]
            proj_out = proj_out.index_copy(0, rows, nn.functional.pad(proj, (0, 0, 0, t_max - t)))
            enc_in = enc_in.index_copy(0, rows, nn.functional.pad(h, (0, 0, 0, t_max - t)))
        return proj_out, enc_in, frames

    def run(self, layers: nn.ModuleList, h: torch.Tensor, mask: torch.Tensor, position_bias: Any = None,
            ) -> tuple[list[torch.Tensor], Any]:
        """Run ``layers`` on h (B, T, D) with frame mask (B, T) bool -> (outputs of each layer, position bias)."""
        full = bool(mask.all())
        outs = []
        ext = None
        if self.family != "wavlm" and not full:
            from transformers.masking_utils import create_bidirectional_mask

            ext = create_bidirectional_mask(config=self.config, inputs_embeds=h, attention_mask=mask.long())
        keep = mask[..., None].to(h.dtype)
        with warnings.catch_warnings():
            # WavLM hands torch a bool key-padding mask next to its float position bias; torch warns, result is right
            warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
            for layer in layers:
                if self.family == "wavlm":
                    h, position_bias = layer(h, attention_mask=None if full else mask.long(),
                                             position_bias=position_bias)
                else:
                    h = _layer_out(layer(h, attention_mask=ext))
                h = h * keep
                outs.append(h)
        return outs, position_bias


class SemanticEncoder(nn.Module):
    """K text layers, each between a down-sampling Conv1d and an up-sampling ConvTranspose1d (trainable)."""

    def __init__(self, layers: list[nn.Module], text_config: Any, speech_dim: int, arch: CareArch) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.text_config = text_config
        d_t = int(text_config.hidden_size)
        self.kernel, self.stride, self.adapters = arch.adapter_kernel, arch.adapter_stride, arch.adapters
        pad = self.kernel - self.stride
        if self.adapters:
            self.down = nn.ModuleList(nn.Conv1d(speech_dim, d_t, self.kernel, self.stride, padding=pad)
                                      for _ in layers)
            self.up = nn.ModuleList(nn.ConvTranspose1d(d_t, speech_dim, self.kernel, self.stride, padding=pad)
                                    for _ in layers)
        else:
            same = d_t == speech_dim
            self.down = nn.ModuleList(nn.Identity() if same else nn.Linear(speech_dim, d_t) for _ in layers)
            self.up = nn.ModuleList(nn.Identity() if same else nn.Linear(d_t, speech_dim) for _ in layers)

    def down_lengths(self, frames: torch.Tensor) -> torch.Tensor:
        """(B,) frames -> (B,) frames after a down-sampling adapter (ceil(T/3) for k=5, s=3)."""
        if not self.adapters:
            return frames
        return torch.where(frames > 0, _down_length(frames, self.kernel, self.stride), torch.zeros_like(frames))

    def _text_mask(self, d: torch.Tensor, mask: torch.Tensor) -> Any:
        if bool(mask.all()):
            return None
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.text_config, inputs_embeds=d, attention_mask=mask.long())

    def forward(self, h: torch.Tensor, frames: torch.Tensor) -> list[torch.Tensor]:
        """h (B, T, D_s) common-encoder output, frames (B,) valid -> K outputs (B, T, D_s), padding zeroed."""
        t = h.shape[1]
        mask = lengths_mask(frames, t)
        keep = mask[..., None].to(h.dtype)
        dlen = self.down_lengths(frames)
        outs = []
        for layer, down, up in zip(self.layers, self.down, self.up):
            h = h * keep
            if self.adapters:
                d = down(h.transpose(1, 2)).transpose(1, 2)
                dmask = lengths_mask(dlen, d.shape[1])
                d = _layer_out(layer(d, attention_mask=self._text_mask(d, dmask)))
                d = d * dmask[..., None].to(d.dtype)
                h = up(d.transpose(1, 2), output_size=[t]).transpose(1, 2)
            else:
                d = _layer_out(layer(down(h), attention_mask=self._text_mask(h, mask)))
                h = up(d)
            h = h * keep
            outs.append(h)
        return outs


class CareModel(nn.Module):
    """CARE. ``forward(wavs, lengths)`` -> dict:

    ``semantic`` (B, dim(y_text)) pooled + projected semantic output ((B, T, dim) for a frame-level target);
    ``acoustic`` (B, T, acoustic_dim) frame predictions; ``frames`` (B,) valid 50 Hz frames; ``mask`` (B, T)
    bool. ``layers(wavs, lengths)`` gives the per-layer outputs used by the upstream views.
    """

    def __init__(self, speech_base: nn.Module, text_layers: list[nn.Module], text_config: Any, arch: CareArch) -> None:
        super().__init__()
        self.arch = arch
        self.trunk = SpeechTrunk(speech_base, arch.common_layers, arch.acoustic_layers)
        d = self.trunk.dim
        self.semantic = SemanticEncoder(text_layers, text_config, d, arch)
        self.acoustic_head = nn.Linear(d, arch.acoustic_dim)
        self.semantic_head = nn.Identity() if arch.semantic_dim == d else nn.Linear(d, arch.semantic_dim)
        self.speech_config = self.trunk.config
        self.text_config = text_config
        self._apply_freezing()

    # -- construction -------------------------------------------------------------------------------------
    def _apply_freezing(self) -> None:
        for p in self.semantic.layers.parameters():
            p.requires_grad_(self.arch.text_trainable)
        if self.arch.compat == "reference":
            for mod in (self.trunk.feature_extractor, self.trunk.feature_projection, self.trunk.pos_conv_embed):
                for p in mod.parameters():
                    p.requires_grad_(False)

    def train(self, mode: bool = True) -> "CareModel":
        """Like ``nn.Module.train``; frozen text layers stay in eval mode (no dropout: a fixed function)."""
        super().train(mode)
        if not self.arch.text_trainable:
            self.semantic.layers.eval()
        return self

    @property
    def dim(self) -> int:
        return self.trunk.dim

    def output_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        return self.trunk.output_lengths(num_samples)

    # -- forward --------------------------------------------------------------------------------------------
    def layers(self, wavs: torch.Tensor, lengths: torch.Tensor, acoustic: bool = True, semantic: bool = True,
               detach_acoustic: bool | None = None) -> dict[str, Any]:
        """Per-layer outputs: ``projection`` (B, T, D), ``common`` / ``acoustic`` / ``semantic`` lists of
        (B, T, D) (empty when not requested), ``frames`` (B,), ``mask`` (B, T) bool. detach_acoustic: None =
        as the compat mode says (reference: the acoustic branch sees a detached common output)."""
        proj, h, frames = self.trunk.embed(wavs, lengths)
        mask = lengths_mask(frames, h.shape[1])
        h = h * mask[..., None].to(h.dtype)
        common, pb = self.trunk.run(self.trunk.common, h, mask)
        top = common[-1]
        out: dict[str, Any] = {"projection": proj, "common": common, "acoustic": [], "semantic": [],
                               "frames": frames, "mask": mask}
        if acoustic:
            detach = self.arch.compat == "reference" if detach_acoustic is None else detach_acoustic
            a_in, a_pb = (top.detach(), pb.detach() if isinstance(pb, torch.Tensor) else pb) if detach else (top, pb)
            out["acoustic"], _ = self.trunk.run(self.trunk.acoustic, a_in, mask, a_pb)
        if semantic:
            out["semantic"] = self.semantic(top, frames)
        return out

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        from emotk.nn.pooling import masked_mean

        res = self.layers(wavs, lengths)
        last = res["semantic"][-1]
        if self.arch.semantic_frames:  # frame-level target: (B, T, semantic_dim), padding zeroed
            semantic = self.semantic_head(last) * res["mask"][..., None].to(last.dtype)
        else:
            semantic = self.semantic_head(masked_mean(last, res["mask"]))
        return {"semantic": semantic, "acoustic": self.acoustic_head(res["acoustic"][-1]),
                "frames": res["frames"], "mask": res["mask"]}

    # -- bookkeeping ------------------------------------------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the whole model and of the inference views (heads excluded from the views)."""
        def n(*mods: nn.Module) -> int:
            return int(sum(p.numel() for m in mods for p in m.parameters()))

        t = self.trunk
        common = n(t.feature_extractor, t.feature_projection, t.pos_conv_embed, t.layer_norm, t.common)
        return {"total": n(self), "common": common, "acoustic+common": common + n(t.acoustic),
                "semantic+common": common + n(self.semantic), "care_views": common + n(t.acoustic, self.semantic),
                "trainable": int(sum(p.numel() for p in self.parameters() if p.requires_grad))}

    def export_spec(self) -> dict[str, Any]:
        """JSON-ready description to rebuild the architecture without the sources (see :func:`from_spec`)."""
        return {"arch": asdict(self.arch), "speech_config": self.speech_config.to_dict(),
                "text_config": self.text_config.to_dict()}


def build_care(cfg: Any, acoustic_dim: int, semantic_dim: int, semantic_frames: bool = False) -> CareModel:
    """A :class:`CareModel` from ``CareModelConfig`` ``cfg``, initialised from its sources.

    acoustic_dim: width of the frame targets; semantic_dim: width of y_text. Speech layers 0..C-1 -> common,
    C..C+A-1 -> acoustic; text: the LAST K layers of the text source. semantic_frames: frame-level y_text.
    """
    arch = CareArch(common_layers=cfg.speech.common_layers, acoustic_layers=cfg.speech.acoustic_layers,
                    semantic_layers=cfg.semantic_layers, adapters=cfg.text.adapters,
                    adapter_kernel=cfg.text.adapter_kernel, adapter_stride=cfg.text.adapter_stride,
                    acoustic_dim=int(acoustic_dim), semantic_dim=int(semantic_dim), compat=cfg.compat,
                    text_trainable=cfg.text.trainable, semantic_frames=bool(semantic_frames))
    speech = load_source(cfg.speech.source, cfg.speech.path, cfg.speech.init,
                         cfg.speech.common_layers + cfg.speech.acoustic_layers, text=False)
    text = load_source(cfg.text.source, cfg.text.path, cfg.text.init, cfg.semantic_layers, text=True)
    layers = list(text_layers_of(text))
    if len(layers) < cfg.semantic_layers:
        raise ConfigError(f"model.text.source: {cfg.text.source} has {len(layers)} layers, fewer than "
                          f"model.semantic_layers = {cfg.semantic_layers}")
    return CareModel(speech, layers[-cfg.semantic_layers:], copy.deepcopy(text.config), arch)


def from_spec(spec: dict[str, Any]) -> CareModel:
    """Rebuild a (randomly initialised) CareModel from :meth:`CareModel.export_spec` (weights loaded after)."""
    tf = _transformers()
    arch = CareArch(**spec["arch"])
    sc, tc = dict(spec["speech_config"]), dict(spec["text_config"])
    speech_cls = {f: HF_FAMILIES[f] for f in SPEECH_FAMILIES}.get(sc.get("model_type"))
    text_cls = {"roberta": HF_FAMILIES["roberta"], "bert": HF_FAMILIES["bert"]}.get(tc.get("model_type"))
    if speech_cls is None or text_cls is None:
        raise UsageError(f"CARE export: unsupported model types {sc.get('model_type')!r} / {tc.get('model_type')!r}")
    sc["num_hidden_layers"] = arch.common_layers + arch.acoustic_layers
    tc["num_hidden_layers"] = arch.semantic_layers
    speech = getattr(tf, speech_cls[1])(getattr(tf, speech_cls[0]).from_dict(sc))
    text = getattr(tf, text_cls[1])(getattr(tf, text_cls[0]).from_dict(tc), add_pooling_layer=False)
    return CareModel(speech, list(text_layers_of(text)), text.config, arch)

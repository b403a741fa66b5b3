"""emotion2vec (Ma et al., 2024) in plain PyTorch: the inference path of its data2vec 2.0 audio encoder.

emotion2vec base and emotion2vec+ base/large share one architecture (fairseq's ``data2vec_multi`` audio model,
re-packaged by FunASR as ``Emotion2vec``):

1. waveform (16 kHz) layer-normalised over the whole utterance when the config says ``normalize``;
2. a wav2vec 2.0 convolutional feature extractor (default spec: 512 channels, kernels 10,3,3,3,3,2,2, strides
   5,2,2,2,2,2,2 -> 20 ms hop, receptive field 400 samples; no conv bias; a layer norm over channels after every
   conv in ``layer_norm`` mode, or a group norm after the first conv only in ``default`` mode; GELU);
3. LayerNorm + Linear (conv channels -> ``embed_dim``);
4. a relative positional encoder added to the frames: ``pos_conv_depth`` grouped convolutions over time
   (kernel ``max(3, conv_pos_width // conv_pos_depth)``, "same" padding) each followed by a layer norm without
   affine parameters and GELU (optionally a LayerNorm before the stack);
5. ``num_extra_tokens`` learned tokens prepended;
6. the "prenet" (context encoder): an optional LayerNorm, then ``prenet_depth`` transformer blocks;
7. ``depth`` transformer blocks, then a final LayerNorm only for pre-norm models;
8. the extra tokens dropped: frame features (B, T, embed_dim).

The transformer blocks (data2vec 2.0's ``AltBlock``) are post-norm for emotion2vec (``x = norm1(x + attn(x));
x = norm2(x + mlp(x))``). Their self-attention adds an ALiBi bias ``-slope_h * |i - j|`` (the slopes of Press et
al., scaled by a learned non-negative ``alibi_scale`` per head and optionally per layer; zero for the extra
tokens) to the first ``num_alibi_heads`` heads. The utterance embedding is the mean of the frame features, the
``granularity="utterance"`` output of FunASR's ``AutoModel.generate``.

Padding: ``forward`` takes a padded batch plus the valid lengths; each waveform is normalised over its own samples,
padded frames are zeroed before every positional convolution and masked as attention keys, and the group norm of
``default`` mode pools over valid frames only, so an item's output does not depend on what it is batched with.

Checkpoints are read and written by :mod:`emotk.hub.emotion2vec` (upstream key names, FunASR / fairseq
layouts); this module is the network only.
"""

from __future__ import annotations

import ast
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, NamedTuple, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from emotk.errors import DataError, UsageError
from emotk.nn.masks import lengths_to_mask
from emotk.nn.pooling import masked_mean

STANDARD_CONV_LAYERS = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2  # (channels, kernel, stride)
_WAVEFORM_EPS = 1e-5  # F.layer_norm's default, as in the reference's waveform normalisation
_FEATURE_EPS = 1e-5  # conv-feature, projection and positional layer norms (torch / fairseq defaults)


@dataclass(frozen=True)
class Emotion2vecConfig:
    """Sizes of an emotion2vec encoder; the defaults are emotion2vec base / emotion2vec+ base.

    ``conv_layers``: (channels, kernel, stride) per convolution. ``pos_conv_kernel``: the kernel of each of the
    ``pos_conv_depth`` positional convolutions (upstream: ``max(3, conv_pos_width // conv_pos_depth)``).
    ``normalize``: layer-normalise each waveform before the encoder.
    """

    embed_dim: int = 768
    depth: int = 8
    prenet_depth: int = 4
    num_heads: int = 12
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-5
    norm_affine: bool = True
    layer_norm_first: bool = False
    conv_layers: tuple[tuple[int, int, int], ...] = STANDARD_CONV_LAYERS
    extractor_mode: str = "layer_norm"
    pos_conv_kernel: int = 19
    pos_conv_depth: int = 5
    pos_conv_groups: int = 16
    pos_conv_pre_norm: bool = False
    num_extra_tokens: int = 10
    use_alibi: bool = True
    num_alibi_heads: int = 12
    alibi_scale_per_head: bool = True
    alibi_scale_per_layer: bool = False
    normalize: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "conv_layers", tuple(tuple(int(v) for v in c) for c in self.conv_layers))
        problems = []
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.embed_dim % self.pos_conv_groups:
            problems.append(f"embed_dim {self.embed_dim} is not divisible by pos_conv_groups {self.pos_conv_groups}")
        if self.extractor_mode not in ("layer_norm", "default"):
            problems.append(f"extractor_mode must be 'layer_norm' or 'default', not {self.extractor_mode!r}")
        if not self.conv_layers or any(len(c) != 3 or min(c) < 1 for c in self.conv_layers):
            problems.append(f"conv_layers must be (channels, kernel, stride) triples, got {self.conv_layers}")
        if self.use_alibi and not 1 <= self.num_alibi_heads <= self.num_heads:
            problems.append(f"num_alibi_heads {self.num_alibi_heads} must be in 1..num_heads ({self.num_heads})")
        if self.pos_conv_depth < 1 or self.pos_conv_kernel < 1:
            problems.append("pos_conv_depth and pos_conv_kernel must be >= 1")
        if problems:
            raise DataError("emotion2vec config: " + "; ".join(problems))

    @property
    def hop(self) -> int:
        """Samples per output frame (320 = 20 ms for the standard spec)."""
        return math.prod(c[2] for c in self.conv_layers)

    @property
    def receptive_field(self) -> int:
        """Samples seen by one output frame, the shortest input that gives one frame (400 for the standard spec)."""
        field, jump = 1, 1
        for _, kernel, stride in self.conv_layers:
            field += (kernel - 1) * jump
            jump *= stride
        return field

    def num_frames(self, num_samples: int) -> int:
        """Output frames of a waveform of ``num_samples`` samples (0 when it is too short)."""
        n = int(num_samples)
        for _, kernel, stride in self.conv_layers:
            n = (n - kernel) // stride + 1 if n >= kernel else 0
        return n

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> "Emotion2vecConfig":
        """Build from emotk's own field names (:meth:`to_dict`); raises DataError naming an unknown key."""
        known = {f.name for f in fields(cls)}
        extra = sorted(set(data) - known - {"model_type"})
        if extra:
            raise DataError(f"{source}: unknown emotion2vec config key {extra[0]!r} "
                            f"(known: {', '.join(sorted(known))})")
        return cls(**{k: data[k] for k in known if k in data})

    def to_dict(self) -> dict:
        out = {"model_type": "emotion2vec", **asdict(self)}
        out["conv_layers"] = [list(c) for c in self.conv_layers]
        return out

    @classmethod
    def from_upstream(cls, model_conf: Mapping[str, Any], normalize: bool | None = None,
                      source: str = "config") -> "Emotion2vecConfig":
        """Build from an upstream model config: FunASR's ``model_conf`` or fairseq's ``cfg["model"]`` (field names
        of data2vec 2.0's ``Data2VecMultiConfig``, the audio part under ``modalities.audio``).

        Missing fields take data2vec 2.0's defaults. ``normalize`` (from fairseq's ``cfg["task"]``) overrides
        ``model_conf["normalize"]``; when neither says, True. Raises DataError for a variant emotk does not
        implement (learned ALiBi biases) or a malformed field.
        """
        conf = dict(model_conf)
        audio = dict((conf.get("modalities") or {}).get("audio") or {})

        def get(section: Mapping[str, Any], key: str, default: Any, kind: type) -> Any:
            value = section.get(key)
            if value is None or (isinstance(value, str) and value.startswith("${")):  # unresolved interpolation
                return default
            try:
                return kind(value) if kind is not bool or isinstance(value, bool) else _as_bool(value)
            except (TypeError, ValueError):
                raise DataError(f"{source}: {key}={value!r} is not a valid {kind.__name__}") from None

        if get(audio, "learned_alibi", False, bool):
            raise DataError(f"{source}: learned ALiBi biases (modalities.audio.learned_alibi) are not supported by "
                            "emotk's emotion2vec")
        num_heads = get(conf, "num_heads", 12, int)
        spec = audio.get("feature_encoder_spec")
        conv_layers = parse_conv_spec(spec, source) if spec else STANDARD_CONV_LAYERS
        pos_depth = get(audio, "conv_pos_depth", 5, int)
        pos_width = get(audio, "conv_pos_width", 95, int)
        if normalize is None:
            normalize = get(conf, "normalize", True, bool)
        return cls(
            embed_dim=get(conf, "embed_dim", 768, int),
            depth=get(conf, "depth", 8, int),
            prenet_depth=get(audio, "prenet_depth", 4, int),
            num_heads=num_heads,
            mlp_ratio=get(conf, "mlp_ratio", 4.0, float),
            norm_eps=get(conf, "norm_eps", 1e-6, float),
            norm_affine=get(conf, "norm_affine", True, bool),
            layer_norm_first=get(conf, "layer_norm_first", False, bool),
            conv_layers=conv_layers,
            extractor_mode=str(audio.get("extractor_mode") or "layer_norm"),
            pos_conv_kernel=max(3, pos_width // max(1, pos_depth)),
            pos_conv_depth=pos_depth,
            pos_conv_groups=get(audio, "conv_pos_groups", 16, int),
            pos_conv_pre_norm=get(audio, "conv_pos_pre_ln", False, bool),
            num_extra_tokens=get(audio, "num_extra_tokens", 0, int),
            use_alibi=get(audio, "use_alibi_encoder", False, bool),
            num_alibi_heads=get(audio, "num_alibi_heads", num_heads, int),
            alibi_scale_per_head=get(audio, "learned_alibi_scale_per_head", False, bool),
            alibi_scale_per_layer=get(audio, "learned_alibi_scale_per_layer", False, bool),
            normalize=bool(normalize),
        )

    def to_funasr_conf(self) -> dict:
        """The FunASR ``model_conf`` of this config (what :meth:`from_upstream` reads back, plus the fields FunASR's
        own ``Emotion2vec`` class needs to build; dropouts 0)."""
        audio = {
            "type": "AUDIO", "prenet_depth": self.prenet_depth, "prenet_layerdrop": 0.0, "prenet_dropout": 0.0,
            "start_drop_path_rate": 0.0, "end_drop_path_rate": 0.0, "num_extra_tokens": self.num_extra_tokens,
            "init_extra_token_zero": True, "local_grad_mult": 1.0, "use_alibi_encoder": self.use_alibi,
            "alibi_scale": 1.0, "learned_alibi": False, "alibi_max_pos": None, "learned_alibi_scale": True,
            "learned_alibi_scale_per_head": self.alibi_scale_per_head,
            "learned_alibi_scale_per_layer": self.alibi_scale_per_layer, "num_alibi_heads": self.num_alibi_heads,
            "model_depth": self.depth, "decoder": None, "extractor_mode": self.extractor_mode,
            "feature_encoder_spec": conv_spec_text(self.conv_layers),
            "conv_pos_width": self.pos_conv_kernel * self.pos_conv_depth, "conv_pos_groups": self.pos_conv_groups,
            "conv_pos_depth": self.pos_conv_depth, "conv_pos_pre_ln": self.pos_conv_pre_norm,
        }
        return {
            "depth": self.depth, "num_heads": self.num_heads, "embed_dim": self.embed_dim,
            "mlp_ratio": self.mlp_ratio, "norm_eps": self.norm_eps, "norm_affine": self.norm_affine,
            "layer_norm_first": self.layer_norm_first, "end_of_block_targets": False,
            "start_drop_path_rate": 0.0, "end_drop_path_rate": 0.0, "encoder_dropout": 0.0, "post_mlp_drop": 0.0,
            "attention_dropout": 0.0, "activation_dropout": 0.0, "dropout_input": 0.0, "layerdrop": 0.0,
            "normalize": self.normalize, "modalities": {"audio": audio},
        }


def _as_bool(value: Any) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise ValueError(value)


def parse_conv_spec(text: str, source: str = "config") -> tuple[tuple[int, int, int], ...]:
    """Read a ``feature_encoder_spec`` such as ``"[(512, 10, 5)] + [(512, 3, 2)] * 4"`` without ``eval``.

    Accepts lists of integer triples joined by ``+`` and repeated by ``* n``. Returns the (channels, kernel,
    stride) triples. Raises DataError naming ``source`` for anything else.
    """

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Add) and isinstance(left, list) and isinstance(right, list):
                return left + right
            if isinstance(node.op, ast.Mult) and isinstance(left, list) and isinstance(right, int) and right >= 0:
                return left * right
        raise ValueError(ast.dump(node))

    try:
        layers = value(ast.parse(str(text).strip(), mode="eval").body)
        if not isinstance(layers, list) or not layers:
            raise ValueError("not a non-empty list")
        out = tuple(tuple(int(v) for v in layer) for layer in layers)
        if any(len(layer) != 3 for layer in out):
            raise ValueError("not (channels, kernel, stride) triples")
    except (SyntaxError, ValueError, TypeError, RecursionError):
        raise DataError(f"{source}: cannot read feature_encoder_spec {text!r} (expected a list of (channels, kernel, "
                        "stride) triples such as '[(512, 10, 5)] + [(512, 3, 2)] * 4')") from None
    return out


def conv_spec_text(layers: Sequence[Sequence[int]]) -> str:
    """The ``feature_encoder_spec`` text of (channels, kernel, stride) triples, runs of equal layers as ``* n``."""
    runs: list[list[Any]] = []
    for layer in layers:
        triple = tuple(int(v) for v in layer)
        if runs and runs[-1][0] == triple:
            runs[-1][1] += 1
        else:
            runs.append([triple, 1])
    return " + ".join(f"[{t}]" + (f" * {n}" if n > 1 else "") for t, n in runs)


def alibi_slopes(num_heads: int) -> list[float]:
    """The ALiBi slope of each head (Press et al.): a geometric series 2^(-8/n), 2^(-16/n), ... for a power of two
    n; otherwise the series of the largest power of two below, then every other slope of the next power."""
    if num_heads < 1:
        raise UsageError(f"ALiBi needs at least one head, got {num_heads}")
    power = 2 ** int(math.floor(math.log2(num_heads)))
    base = 2.0 ** (-8.0 / power)
    slopes = [base ** (i + 1) for i in range(power)]
    if power < num_heads:
        slopes += alibi_slopes(2 * power)[0::2][: num_heads - power]
    return slopes


class Emotion2vecOutput(NamedTuple):
    """``frames`` (B, T, D) float frame features (zeros on padding), ``mask`` (B, T) bool, True on valid frames,
    ``lengths`` (B,) long valid frames per item."""

    frames: Any
    mask: Any
    lengths: Any


class ConvLayer(nn.Module):
    """One conv of the feature extractor: conv (no bias) -> [norm] -> GELU on (B, C, T)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, norm: str | None) -> None:
        super().__init__()
        self.stride, self.kernel = stride, kernel
        self.conv = nn.Conv1d(in_ch, out_ch, kernel, stride=stride, bias=False)
        self.norm_kind = norm
        if norm == "layer":
            self.norm = nn.LayerNorm(out_ch, eps=_FEATURE_EPS)
        elif norm == "group":  # one group per channel, statistics over valid frames
            self.norm = nn.GroupNorm(out_ch, out_ch, eps=_FEATURE_EPS)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, S) -> (B, C_out, T); ``mask`` (B, T) True on the valid output frames."""
        x = self.conv(x)
        if self.norm_kind == "layer":
            x = self.norm(x.transpose(1, 2).float()).transpose(1, 2).to(x.dtype)
        elif self.norm_kind == "group":
            w = mask[:, None, :].to(x.dtype)
            count = w.sum(-1, keepdim=True).clamp_min(1.0)
            mean = (x * w).sum(-1, keepdim=True) / count
            var = (((x - mean) * w) ** 2).sum(-1, keepdim=True) / count
            x = (x - mean) / torch.sqrt(var + self.norm.eps)
            x = x * self.norm.weight[None, :, None] + self.norm.bias[None, :, None]
        return F.gelu(x)


class FeatureExtractor(nn.Module):
    """Waveform (B, S) -> conv features (B, T, C) and their valid-frame mask (B, T)."""

    def __init__(self, cfg: Emotion2vecConfig) -> None:
        super().__init__()
        layers, in_ch = [], 1
        for i, (ch, kernel, stride) in enumerate(cfg.conv_layers):
            norm = "layer" if cfg.extractor_mode == "layer_norm" else ("group" if i == 0 else None)
            layers.append(ConvLayer(in_ch, ch, kernel, stride, norm))
            in_ch = ch
        self.layers = nn.ModuleList(layers)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = wav[:, None, :]
        for layer in self.layers:
            lengths = torch.where(lengths >= layer.kernel, (lengths - layer.kernel) // layer.stride + 1, 0)
            x = layer(x, lengths_to_mask(lengths, max_len=(x.shape[-1] - layer.kernel) // layer.stride + 1))
        return x.transpose(1, 2), lengths


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection and an additive bias (ALiBi + key padding)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """x (B, N, D), bias (B or 1, heads, N, N) float added to the logits (-inf masks a key)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """Feed-forward part of a block: Linear -> GELU -> Linear on (B, N, D)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """data2vec 2.0 transformer block: post-norm, or pre-norm when ``layer_norm_first``."""

    def __init__(self, cfg: Emotion2vecConfig) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.pre_norm = cfg.layer_norm_first
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps, elementwise_affine=cfg.norm_affine)
        self.attn = Attention(dim, cfg.num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps, elementwise_affine=cfg.norm_affine)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn(self.norm1(x), bias)
            h = self.mlp(self.norm2(x))
            return h + h  # data2vec 2.0's pre-norm block adds the MLP output to itself, not to x (kept as is)
        x = self.norm1(x + self.attn(x, bias))
        return self.norm2(x + self.mlp(x))


class Emotion2vec(nn.Module):
    """emotion2vec encoder: 16 kHz waveforms (B, S) + lengths -> frame features (B, T, embed_dim)."""

    def __init__(self, config: Emotion2vecConfig | None = None) -> None:
        super().__init__()
        cfg = config or Emotion2vecConfig()
        self.config = cfg
        dim = cfg.embed_dim
        self.feature_extractor = FeatureExtractor(cfg)
        self.feature_norm = nn.LayerNorm(cfg.conv_layers[-1][0], eps=_FEATURE_EPS)
        self.feature_projection = nn.Linear(cfg.conv_layers[-1][0], dim)
        if cfg.pos_conv_pre_norm:
            self.pos_pre_norm = nn.LayerNorm(dim, eps=_FEATURE_EPS)
        k = cfg.pos_conv_kernel
        self.pos_convs = nn.ModuleList(nn.Conv1d(dim, dim, k, padding=k // 2, groups=cfg.pos_conv_groups)
                                       for _ in range(cfg.pos_conv_depth))
        if cfg.num_extra_tokens:
            self.extra_tokens = nn.Parameter(torch.zeros(1, cfg.num_extra_tokens, dim))
        if cfg.use_alibi:
            shape = (cfg.prenet_depth + cfg.depth if cfg.alibi_scale_per_layer else 1, 1,
                     cfg.num_alibi_heads if cfg.alibi_scale_per_head else 1, 1, 1)
            self.alibi_scale = nn.Parameter(torch.ones(shape))
            self.register_buffer("slopes", torch.tensor(alibi_slopes(cfg.num_alibi_heads)), persistent=False)
        if not cfg.layer_norm_first:
            self.prenet_norm = nn.LayerNorm(dim, eps=cfg.norm_eps, elementwise_affine=cfg.norm_affine)
        self.prenet = nn.ModuleList(Block(cfg) for _ in range(cfg.prenet_depth))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        if cfg.layer_norm_first:
            self.final_norm = nn.LayerNorm(dim, eps=cfg.norm_eps, elementwise_affine=cfg.norm_affine)

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) sample counts -> (B,) output frame counts."""
        for _, kernel, stride in self.config.conv_layers:
            lengths = torch.where(lengths >= kernel, (lengths - kernel) // stride + 1, 0)
        return lengths

    def _normalize(self, wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(wav)
        for i, n in enumerate(lengths.tolist()):
            seg = wav[i, :n]
            out[i, :n] = F.layer_norm(seg, seg.shape, eps=_WAVEFORM_EPS) if self.config.normalize else seg
        return out

    def _positions(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Relative positional encoding of (B, T, D) frames; padded frames are zeros in every conv's input."""
        if self.config.pos_conv_pre_norm:
            x = self.pos_pre_norm(x)
        keep = mask[:, :, None]
        for conv in self.pos_convs:
            y = conv(x.masked_fill(~keep, 0.0).transpose(1, 2))
            if conv.kernel_size[0] % 2 == 0:  # even kernel: "same" padding gives one frame too many
                y = y[:, :, :-1]
            x = F.gelu(F.layer_norm(y.transpose(1, 2), (y.shape[1],), eps=_FEATURE_EPS))
        return x

    def _attention_bias(self, mask: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor | None]:
        """Per transformer layer (prenet first), the additive logits bias (B, heads, N, N), N = extra + T."""
        cfg = self.config
        b, t = mask.shape
        e = cfg.num_extra_tokens
        keys = torch.cat([mask.new_ones(b, e), mask], dim=1)  # extra tokens are always valid keys
        pad = torch.zeros(b, 1, 1, e + t, dtype=dtype, device=mask.device)
        pad = pad.masked_fill(~keys[:, None, None], -math.inf)
        layers = cfg.prenet_depth + cfg.depth
        if not cfg.use_alibi:
            return [pad] * layers
        pos = torch.arange(t, device=mask.device)
        distance = -(pos[None, :] - pos[:, None]).abs().to(dtype)  # (T, T)
        alibi = F.pad(self.slopes.to(dtype)[:, None, None] * distance, (e, 0, e, 0))  # (Ha, N, N)
        scale = self.alibi_scale.clamp_min(0).to(dtype)  # (L or 1, 1, Ha or 1, 1, 1)

        def layer_bias(i: int) -> torch.Tensor:
            bias = alibi * scale[i, 0]  # scale[i, 0]: (Ha or 1, 1, 1)
            if cfg.num_alibi_heads < cfg.num_heads:  # heads beyond num_alibi_heads get no positional bias
                bias = F.pad(bias, (0, 0, 0, 0, 0, cfg.num_heads - cfg.num_alibi_heads))
            return bias[None] + pad

        if scale.shape[0] == 1:  # one scale for all layers: one tensor shared by every layer
            return [layer_bias(0)] * layers
        return [layer_bias(i) for i in range(layers)]

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None) -> Emotion2vecOutput:
        """Padded waveforms (B, S) float at 16 kHz and their valid lengths in samples (B,) (None: all S) ->
        :class:`Emotion2vecOutput` with frames (B, T, D), T = frames of the longest item.

        Raises UsageError for a wrong shape or an item too short for one frame
        (``config.receptive_field`` samples).
        """
        if wav.dim() == 1:
            wav = wav[None]
        if wav.dim() != 2:
            raise UsageError(f"emotion2vec expects waveforms (B, S), got shape {tuple(wav.shape)}")
        b, s = wav.shape
        dev = wav.device
        lengths = (torch.full((b,), s, dtype=torch.long, device=dev) if lengths is None
                   else torch.as_tensor(lengths, dtype=torch.long, device=dev))
        if lengths.shape != (b,) or bool((lengths > s).any()):
            raise UsageError(f"lengths {lengths.tolist()} do not fit waveforms of shape {tuple(wav.shape)}")
        if bool((lengths < self.config.receptive_field).any()):
            raise UsageError(f"emotion2vec needs at least {self.config.receptive_field} samples per waveform, "
                             f"got lengths {lengths.tolist()}")
        x = self._normalize(wav.float(), lengths)
        x, frames = self.feature_extractor(x, lengths)
        mask = lengths_to_mask(frames, max_len=x.shape[1])
        x = self.feature_projection(self.feature_norm(x))
        x = x + self._positions(x, mask)
        e = self.config.num_extra_tokens
        if e:
            x = torch.cat([self.extra_tokens.expand(b, -1, -1).to(x.dtype), x], dim=1)
        biases = self._attention_bias(mask, x.dtype)
        if not self.config.layer_norm_first:
            x = self.prenet_norm(x)
        for block, bias in zip([*self.prenet, *self.blocks], biases):
            x = block(x, bias)
        if self.config.layer_norm_first:
            x = self.final_norm(x)
        x = x[:, e:].masked_fill(~mask[:, :, None], 0.0)
        return Emotion2vecOutput(x, mask, frames)

    def embed(self, wav: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """Utterance embeddings (B, D): the mean of each item's valid frame features (see :meth:`forward`)."""
        out = self.forward(wav, lengths)
        return masked_mean(out.frames, out.mask)


def build_emotion2vec(config: Emotion2vecConfig | None = None) -> Emotion2vec:
    """Return a randomly initialised Emotion2vec (uses the global torch RNG) in eval mode."""
    return Emotion2vec(config).eval()

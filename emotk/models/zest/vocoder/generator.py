"""The S2S-ZEST BigVGAN generator: 50 Hz (tokens, F0, s, ē) conditioning -> 16 kHz waveform.

Conditioning (B, 512, T) = token embedding (128) ‖ F0 encoder (CNN over log(F0+1) -> BiLSTM, 128) ‖ s (128)
‖ ē (128), each frame repeated for the speaker and emotion vectors. The up-sampling stack then turns each frame
into exactly ``hop`` = 320 samples: conv_pre -> [transposed conv (rate u_i) -> mean of AMP blocks] x 5 ->
anti-aliased SnakeBeta -> conv_post -> tanh.

The network is split into :meth:`VocoderGenerator.condition` (cheap, whole utterance: the BiLSTM needs it)
and :meth:`VocoderGenerator.decode` (the convolutional stack, which :mod:`.synthesis` runs in chunks).
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from emotk.models.zest.vocoder.activations import make_activation
from emotk.models.zest.vocoder.amp import AMPBlock, _init_conv
from emotk.models.zest.vocoder.config import GeneratorConfig
from emotk.models.zest.vocoder.resample import AntiAliasedActivation


def check_hop(upsample_rates: list[int]) -> None:
    """Raise ConfigError unless prod(upsample_rates) == emotk.core.audio.HOP (320)."""
    from emotk.core.audio import FRAME_RATE, HOP, SAMPLE_RATE
    from emotk.errors import ConfigError

    prod = math.prod(upsample_rates)
    if prod != HOP:
        raise ConfigError(
            f"generator.upsample_rates {list(upsample_rates)} multiply to {prod}, but every 50 Hz conditioning "
            f"frame must become exactly HOP = {HOP} samples ({SAMPLE_RATE} Hz / {FRAME_RATE:g} Hz); choose rates "
            f"whose product is {HOP}, e.g. [5, 4, 4, 2, 2]")


class F0Encoder(nn.Module):
    """F0 (B, T) in Hz (0 = unvoiced) -> (B, out_dim, T): convs over log(F0 + 1) then a bidirectional LSTM."""

    def __init__(self, out_dim: int = 128, layers: int = 2, kernel: int = 3):
        super().__init__()
        convs: list[nn.Module] = []
        ch = 1
        for _ in range(layers):
            convs += [nn.Conv1d(ch, out_dim, kernel, padding=kernel // 2), nn.ReLU()]
            ch = out_dim
        self.convs = nn.Sequential(*convs)
        self.lstm = nn.LSTM(out_dim, out_dim // 2, batch_first=True, bidirectional=True)

    def forward(self, f0: torch.Tensor) -> torch.Tensor:
        x = torch.log1p(f0.clamp(min=0.0).to(self.convs[0].weight.dtype)).unsqueeze(1)
        x = self.convs(x)
        y, _ = self.lstm(x.transpose(1, 2))
        return y.transpose(1, 2)


class VocoderGenerator(nn.Module):
    """BigVGAN generator of :class:`GeneratorConfig` ``cfg``.

    ``forward(tokens, f0, speaker, emotion)``: tokens (B, T) int64 in [0, K), f0 (B, T) Hz, speaker (B, S),
    emotion (B, E) -> waveform (B, T·320) in [-1, 1]. Unbatched inputs ((T,), (T,), (S,), (E,)) give (T·320,).
    """

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        check_hop(cfg.upsample_rates)
        cfg.validate()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.num_tokens, cfg.token_dim)
        self.f0_encoder = F0Encoder(cfg.f0_dim, cfg.f0_conv_layers, cfg.f0_kernel)
        ch = cfg.initial_channels
        self.conv_pre = weight_norm(nn.Conv1d(cfg.cond_channels, ch, cfg.conv_pre_kernel,
                                              padding=cfg.conv_pre_kernel // 2))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernels)):
            c_in, c_out = ch // 2 ** i, ch // 2 ** (i + 1)
            up = weight_norm(nn.ConvTranspose1d(c_in, c_out, k, u, padding=(k - u) // 2))
            _init_conv(up)
            self.ups.append(up)
            self.resblocks.append(nn.ModuleList(
                AMPBlock(c_out, rk, rd, cfg.activation, cfg.snake_logscale, cfg.antialias_kernel)
                for rk, rd in zip(cfg.resblock_kernels, cfg.resblock_dilations)))
        c_last = ch // 2 ** len(cfg.upsample_rates)
        self.act_post = AntiAliasedActivation(make_activation(cfg.activation, c_last, cfg.snake_logscale), 2,
                                              cfg.antialias_kernel)
        self.conv_post = weight_norm(nn.Conv1d(c_last, 1, 7, padding=3, bias=False))
        _init_conv(self.conv_post)

    @property
    def hop(self) -> int:
        return math.prod(self.cfg.upsample_rates)

    def condition(self, tokens: torch.Tensor, f0: torch.Tensor, speaker: torch.Tensor,
                  emotion: torch.Tensor) -> torch.Tensor:
        """(B, T) tokens, (B, T) F0 Hz, (B, S), (B, E) -> conditioning (B, cond_channels, T) at 50 Hz."""
        cfg = self.cfg
        if tokens.shape != f0.shape:
            from emotk.errors import DataError

            raise DataError(f"vocoder input: tokens {tuple(tokens.shape)} and f0 {tuple(f0.shape)} must have the "
                            "same (batch, frames) shape (one F0 value per 50 Hz token frame)")
        if speaker.shape[-1] != cfg.speaker_dim or emotion.shape[-1] != cfg.emotion_dim:
            from emotk.errors import DataError

            raise DataError(f"vocoder input: speaker/emotion embeddings are {speaker.shape[-1]}/{emotion.shape[-1]}"
                            f"-d, the generator expects {cfg.speaker_dim}/{cfg.emotion_dim}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= cfg.num_tokens):
            from emotk.errors import DataError

            raise DataError(f"vocoder input: token ids must be in [0, {cfg.num_tokens}), got "
                            f"[{int(tokens.min())}, {int(tokens.max())}] (tokenizer K differs from the generator's)")
        t = tokens.shape[1]
        emb = self.token_embedding(tokens.long()).transpose(1, 2)
        f0e = self.f0_encoder(f0)
        s = speaker.to(emb.dtype).unsqueeze(-1).expand(-1, -1, t)
        e = emotion.to(emb.dtype).unsqueeze(-1).expand(-1, -1, t)
        return torch.cat([emb, f0e, s, e], dim=1)

    def decode(self, cond: torch.Tensor) -> torch.Tensor:
        """Conditioning (B, cond_channels, T) -> waveform (B, T·hop)."""
        x = self.conv_pre(cond)
        for up, blocks in zip(self.ups, self.resblocks):
            x = up(x)
            x = sum(block(x) for block in blocks) / len(blocks)
        x = self.conv_post(self.act_post(x))
        x = torch.tanh(x) if self.cfg.use_tanh else x.clamp(-1.0, 1.0)
        return x.squeeze(1)

    def forward(self, tokens: torch.Tensor, f0: torch.Tensor, speaker: torch.Tensor,
                emotion: torch.Tensor) -> torch.Tensor:
        single = tokens.dim() == 1
        if single:
            tokens, f0, speaker, emotion = tokens[None], f0[None], speaker[None], emotion[None]
        wav = self.decode(self.condition(tokens, f0, speaker, emotion))
        return wav[0] if single else wav

    def remove_weight_norm(self) -> "VocoderGenerator":
        """Fold every weight norm into plain weights (faster inference; identical outputs). Returns self."""
        from torch.nn.utils import parametrize

        for module in self.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        return self

    def receptive_field_frames(self) -> int:
        """Upper bound of the one-sided receptive field of :meth:`decode`, in 50 Hz frames (chunk overlap).

        Sums, in output samples, the half-widths of conv_pre, each transposed conv (plus its stride), the
        widest AMP block (dilated and plain convs plus the anti-aliasing filters) and conv_post. For the base
        config this gives 27 frames; a measured perturbation reaches about 21.
        """
        cfg = self.cfg
        aa = cfg.antialias_kernel // 2
        total = (cfg.conv_pre_kernel // 2) * self.hop
        scale = self.hop
        for u, k in zip(cfg.upsample_rates, cfg.upsample_kernels):
            scale //= u
            total += (k // 2 + u) * scale
            total += max(sum((rk // 2) * d + rk // 2 + aa for d in rd)
                         for rk, rd in zip(cfg.resblock_kernels, cfg.resblock_dilations)) * scale
        total += 3 + aa
        return math.ceil(total / self.hop)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (weight-normalised convs count their magnitude and direction tensors)."""
    return sum(p.numel() for p in module.parameters())


def _bigvgan_key(name: str, kernels_per_stage: int) -> str:
    """An NVIDIA BigVGAN generator tensor name -> this module's name (weight norm, nesting, activation names)."""
    key = name.replace(".weight_g", ".parametrizations.weight.original0").replace(
        ".weight_v", ".parametrizations.weight.original1")
    key = re.sub(r"^ups\.(\d+)\.0\.", r"ups.\1.", key)  # NVIDIA nests each transposed conv in a ModuleList
    flat = re.match(r"^resblocks\.(\d+)\.(convs1|convs2|activations)\.", key)
    if flat:  # NVIDIA keeps the AMP blocks of all stages in one flat list
        n = int(flat.group(1))
        key = f"resblocks.{n // kernels_per_stage}.{n % kernels_per_stage}." + key[len(f"resblocks.{n}."):]
    key = key.replace(".activations.", ".acts.")
    if key.startswith("activation_post."):
        key = "act_post." + key[len("activation_post."):]
    return key


def load_bigvgan_state(generator: VocoderGenerator, state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Copy tensors of a (NVIDIA) BigVGAN generator state dict into ``generator`` where names and shapes match.

    Old-style weight-norm names (``weight_g``/``weight_v``), NVIDIA's flat AMP-block list and activation names
    are mapped to this module's names. Returns ``{"loaded": [...], "skipped": [...]}`` (sorted names of
    ``state``). A pretrained 22/24 kHz BigVGAN differs in conditioning and up-sampling, so typically only the
    later stages (matching channel counts) load.
    """
    own = generator.state_dict()
    per_stage = len(generator.cfg.resblock_kernels)
    loaded, skipped = [], []
    new = {}
    for name, tensor in state.items():
        key = _bigvgan_key(name, per_stage)
        if key in own and tuple(own[key].shape) == tuple(tensor.shape):
            new[key] = tensor.to(own[key].dtype)
            loaded.append(name)
        else:
            skipped.append(name)
    generator.load_state_dict(new, strict=False)
    return {"loaded": sorted(loaded), "skipped": sorted(skipped)}

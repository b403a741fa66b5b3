"""Every hyper-parameter of the S2S-ZEST vocoder (METHODS.md section 6, "Synthesis").

YAML recipes: configs/transfer/vocoder.yaml (thesis values) and vocoder-tiny.yaml (tests, demo).

Plain dataclasses (no torch import). :class:`VocoderConfig` is the schema of ``emotk transfer train --stage
vocoder``; its ``generator`` section is stored with every exported generator, together with the feature
config (:meth:`GeneratorConfig.feature_config`) that the analysis front end must match.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from emotk.errors import ConfigError
from emotk.train.config import OptimConfig, SchedulerConfig, TrainConfig

TASK = "transfer.vocoder"


def _bigvgan_optim() -> OptimConfig:
    # AdamW lr 1e-4, betas (0.8, 0.99); weight decay 0.01 is torch's AdamW default that BigVGAN trains with.
    return OptimConfig(name="adamw", lr=1e-4, betas=[0.8, 0.99], weight_decay=0.01)


def _bigvgan_train() -> TrainConfig:
    return TrainConfig(
        epochs=3100, batch_size=16, optim=_bigvgan_optim(),
        scheduler=SchedulerConfig(name="exponential", gamma=0.9999996),
        select_metric="mel_l1", select_mode="min", log_every_steps=100,
    )


@dataclass
class GeneratorConfig:
    """The BigVGAN generator and its conditioning (all 50 Hz streams, concatenated to ``cond_channels``).

    Conditioning per frame: token embedding (``token_dim``) ‖ F0 encoder output (``f0_dim``, a CNN over
    log(F0 + 1) then a BiLSTM) ‖ speaker embedding s (``speaker_dim``) ‖ utterance emotion embedding ē
    (``emotion_dim``). The product of ``upsample_rates`` must equal ``hop`` (320 samples = one 50 Hz frame).
    """

    sample_rate: int = 16000
    hop: int = 320
    num_tokens: int = 100  # K of the k-means content tokenizer
    token_dim: int = 128
    f0_dim: int = 128
    f0_conv_layers: int = 2
    f0_kernel: int = 3
    speaker_dim: int = 128
    emotion_dim: int = 128
    initial_channels: int = 512
    conv_pre_kernel: int = 7
    upsample_rates: list[int] = field(default_factory=lambda: [5, 4, 4, 2, 2])
    upsample_kernels: list[int] = field(default_factory=lambda: [11, 8, 8, 4, 4])
    resblock_kernels: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilations: list[list[int]] = field(default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    activation: str = "snakebeta"  # snakebeta | snake
    snake_logscale: bool = True
    antialias_kernel: int = 12  # taps of the Kaiser-windowed sinc filters (x2 up/down-sampling)
    use_tanh: bool = True

    @property
    def cond_channels(self) -> int:
        return self.token_dim + self.f0_dim + self.speaker_dim + self.emotion_dim

    def feature_config(self) -> dict:
        """What the analysis front end must produce for this generator (stored with exports, checked at load)."""
        return {"sample_rate": self.sample_rate, "hop": self.hop, "frame_rate": self.sample_rate / self.hop,
                "num_tokens": self.num_tokens, "speaker_dim": self.speaker_dim, "emotion_dim": self.emotion_dim,
                "f0_unit": "Hz, 0 = unvoiced, one value per 50 Hz frame"}

    def validate(self, prefix: str = "generator") -> None:
        from emotk.core.audio import HOP, SAMPLE_RATE

        if self.sample_rate != SAMPLE_RATE or self.hop != HOP:
            raise ConfigError(
                f"config key '{prefix}.sample_rate/hop': the vocoder works on emotk's frame grid "
                f"({SAMPLE_RATE} Hz, hop {HOP} = 50 Hz tokens), got {self.sample_rate} Hz / hop {self.hop}")
        if len(self.upsample_rates) != len(self.upsample_kernels) or not self.upsample_rates:
            raise ConfigError(f"config key '{prefix}.upsample_kernels': need one kernel per upsample rate "
                              f"({len(self.upsample_rates)} rates, {len(self.upsample_kernels)} kernels)")
        prod = math.prod(self.upsample_rates)
        if prod != self.hop:
            raise ConfigError(
                f"config key '{prefix}.upsample_rates': their product {prod} must equal the hop {self.hop} "
                f"(each 50 Hz conditioning frame becomes exactly {self.hop} samples), got {self.upsample_rates}")
        for u, k in zip(self.upsample_rates, self.upsample_kernels):
            if k < u or (k - u) % 2:
                raise ConfigError(f"config key '{prefix}.upsample_kernels': kernel {k} for rate {u} must be >= the "
                                  "rate with (kernel - rate) even, so each stage up-samples exactly")
        if len(self.resblock_kernels) != len(self.resblock_dilations):
            raise ConfigError(f"config key '{prefix}.resblock_dilations': need one dilation list per kernel")
        if self.initial_channels % (2 ** len(self.upsample_rates)):
            raise ConfigError(f"config key '{prefix}.initial_channels': must be divisible by "
                              f"2^{len(self.upsample_rates)} (channels halve at every stage)")
        if self.activation not in ("snakebeta", "snake"):
            raise ConfigError(f"config key '{prefix}.activation': {self.activation!r} is not one of snakebeta, snake")
        if self.antialias_kernel < 4 or self.antialias_kernel % 2:
            raise ConfigError(f"config key '{prefix}.antialias_kernel': must be an even number >= 4")
        for key in ("num_tokens", "token_dim", "f0_dim", "speaker_dim", "emotion_dim", "f0_conv_layers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{prefix}.{key}': must be >= 1")
        if self.f0_dim % 2:
            raise ConfigError(f"config key '{prefix}.f0_dim': must be even (a bidirectional LSTM, half each way)")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DiscriminatorConfig:
    """MPD (one 2-D conv stack per period) + MRD (one per STFT resolution [n_fft, hop, win])."""

    mpd_periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    mpd_channels: list[int] = field(default_factory=lambda: [32, 128, 512, 1024, 1024])
    mrd_resolutions: list[list[int]] = field(
        default_factory=lambda: [[1024, 120, 600], [2048, 240, 1200], [512, 50, 240]])
    mrd_channels: int = 32

    def validate(self, prefix: str = "discriminator") -> None:
        if not self.mpd_periods and not self.mrd_resolutions:
            raise ConfigError(f"config key '{prefix}': need at least one MPD period or MRD resolution")
        for r in self.mrd_resolutions:
            if len(r) != 3 or not r[2] <= r[0] or min(r) < 1:
                raise ConfigError(f"config key '{prefix}.mrd_resolutions': each entry is [n_fft, hop, win] "
                                  f"with win <= n_fft, got {r}")


@dataclass
class LossConfig:
    """LSGAN adversarial loss + feature matching (x ``lambda_fm``) + log-mel L1 (x ``lambda_mel``)."""

    lambda_mel: float = 45.0
    lambda_fm: float = 2.0
    n_mels: int = 80
    n_fft: int = 1024
    hop: int = 256
    win: int = 1024
    fmin: float = 0.0
    fmax: float = 8000.0

    def validate(self, prefix: str = "loss") -> None:
        if self.win > self.n_fft or self.hop < 1 or self.n_mels < 1:
            raise ConfigError(f"config key '{prefix}': need 1 <= hop, win <= n_fft and n_mels >= 1")
        if not 0 <= self.fmin < self.fmax <= 8000.0:
            raise ConfigError(f"config key '{prefix}.fmax': need 0 <= fmin < fmax <= 8000 Hz (Nyquist at 16 kHz)")


@dataclass
class VocoderDataConfig:
    """Segment training: random crops of ``segment_samples`` (a whole number of frames) per utterance."""

    segment_samples: int = 8960  # 28 frames of 320 samples
    valid_frames: int = 100  # validation crops (from the start of each utterance, 2 s)
    valid_fraction: float = 0.02  # share of items held out when no validation set is given (0 = none)
    epoch_repeats: int = 1  # each utterance appears this many times per epoch (new random crop each time)

    def validate(self, prefix: str = "data") -> None:
        from emotk.core.audio import HOP

        if self.segment_samples < HOP or self.segment_samples % HOP:
            raise ConfigError(f"config key '{prefix}.segment_samples': must be a positive multiple of the hop {HOP} "
                              f"(segments are cut on the 50 Hz frame grid), got {self.segment_samples}")
        if self.valid_frames < 1:
            raise ConfigError(f"config key '{prefix}.valid_frames': must be >= 1")
        if self.epoch_repeats < 1:
            raise ConfigError(f"config key '{prefix}.epoch_repeats': must be >= 1")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ConfigError(f"config key '{prefix}.valid_fraction': must be in [0, 1)")


@dataclass
class SynthesisConfig:
    """Chunked synthesis: ``chunk_frames`` of output per chunk, ``context_frames`` of overlap on each side."""

    # at most 6 s of output per chunk (balanced chunks): the base generator's largest activation of a 6 s chunk
    # plus its overlap stays below glibc's 32 MiB mmap threshold, so freed blocks are reused (no page faults)
    chunk_frames: int = 300
    context_frames: int | None = None  # None = the generator's receptive field (output equals whole synthesis)

    def validate(self, prefix: str = "synthesis") -> None:
        if self.chunk_frames < 1 or (self.context_frames is not None and self.context_frames < 0):
            raise ConfigError(f"config key '{prefix}': chunk_frames >= 1 and context_frames >= 0 (or null) needed")


@dataclass
class VocoderConfig:
    """The vocoder stage of ``emotk transfer train`` (generator, discriminators, losses, data, training)."""

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: VocoderDataConfig = field(default_factory=VocoderDataConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    train: TrainConfig = field(default_factory=_bigvgan_train)
    warmup_generator_steps: int = 0  # generator-only warm-up: mel loss only, no discriminator, for N steps
    init_from: str = ""  # optional BigVGAN generator state dict (.pt/.safetensors); tensors copied where shapes match

    def validate(self) -> None:
        self.generator.validate()
        self.discriminator.validate()
        self.loss.validate()
        self.data.validate()
        self.synthesis.validate()
        self.train.validate()
        if self.warmup_generator_steps < 0:
            raise ConfigError("config key 'warmup_generator_steps': must be >= 0")

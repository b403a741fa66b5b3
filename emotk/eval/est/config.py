"""The schema of task ``evaluate.est`` (configs/evaluate/*.yaml): settings, systems, measures, noise, baseline."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from emotk.errors import ConfigError
from emotk.eval.pairs import SETTINGS, PairOptions

TASK = "evaluate.est"


@dataclass
class EstMeasures:
    """Which backend computes each measure (thesis: emotion2vec, Whisper large-v3, Resemblyzer, CTC word timings)."""

    # auto: emotion2vec when a local copy resolves (emotion2vec-plus-base, then emotion2vec-base), else the first
    # model bundle's own emotion encoder (named in the report); zest:BUNDLE_DIR | ser:EXPORT_DIR (SER class
    # posteriors) | upstream:NAME[:LAYER] | emotion2vec[:PATH|:NAME]
    emotion: str = "auto"
    # auto: Whisper large-v3 when a local copy resolves (faster-whisper, HF or openai-whisper format), else the
    # bundled faster-whisper tiny.en; or faster-whisper | openai-whisper | hf-whisper with asr_model
    asr: Literal["auto", "faster-whisper", "openai-whisper", "hf-whisper"] = "auto"
    asr_model: str = ""
    beam_size: int = 5
    # a fixed decoding temperature: 0 = deterministic beam search (no sampling fallback), so resumed or sharded
    # runs give the same transcripts; -1 = Whisper's fallback schedule (samples when the beams fail)
    temperature: float = 0.0
    normalize_text: bool = True  # Whisper's English text normaliser before WER/CER
    transcript_field: str = "text"  # the source transcript in the manifest (Whisper on the source when absent)
    speaker: Literal["resemblyzer"] = "resemblyzer"
    rate: Literal["asr-words"] = "asr-words"  # word timings from Whisper's word timestamps


@dataclass
class EstNoise:
    """Additive-noise robustness (thesis: 20 and 10 dB SNR added to the sources)."""

    snr_db: list[float] = field(default_factory=list)
    folder: str = ""  # recorded noise (every audio file below it); "" = generated coloured noise
    color: Literal["white", "pink", "brown"] = "white"
    seed: int = 0
    systems: list[str] = field(default_factory=list)  # [] = every system


@dataclass
class EstBaseline:
    """The training-free world-baseline system."""

    f0: bool = True  # map log-F0 mean and range onto the reference's
    tempo: bool = True  # stretch to the reference's syllable rate
    max_tempo_change: float = 0.4  # the +-40 % clamp of the thesis's durations
    f0_backend: Literal["world", "yaapt", "harvest"] = "world"
    f0_method: Literal["dio", "harvest"] = "dio"


@dataclass
class EstConfig:
    """Task ``evaluate.est`` (configs/evaluate/*.yaml)."""

    settings: list[str] = field(default_factory=list)  # [] = those of --pairs, or SSST..DSDT when pairs are built
    systems: list[str] = field(default_factory=list)  # [] = every --model + world-baseline + copy-source
    synth: str = ""  # world | bigvgan for the model bundles ("" = each bundle's transfer.synth)
    limit: int = 0  # pairs per setting, evenly spaced over the file (0 = all)
    pairs: PairOptions = field(default_factory=PairOptions)  # how pairs are built from --data / --references
    measures: EstMeasures = field(default_factory=EstMeasures)
    noise: EstNoise = field(default_factory=EstNoise)
    baseline: EstBaseline = field(default_factory=EstBaseline)
    save_audio: bool = False  # keep the converted audio under OUT/audio/<system>/<pair>.wav

    def validate(self) -> None:
        bad = [s for s in self.settings if s not in SETTINGS]
        if bad:
            raise ConfigError(f"config key 'settings': unknown setting '{bad[0]}' (known: {', '.join(SETTINGS)})")
        if self.limit < 0:
            raise ConfigError(f"config key 'limit': must be >= 0, got {self.limit}")
        if self.synth not in ("", "world", "bigvgan"):
            raise ConfigError(f"config key 'synth': {self.synth!r} is not world, bigvgan or empty")
        for v in self.noise.snr_db:
            if not math.isfinite(v):
                raise ConfigError(f"config key 'noise.snr_db': {v} is not a finite number of dB")
        if not 0.0 < self.baseline.max_tempo_change < 1.0:
            raise ConfigError("config key 'baseline.max_tempo_change': must be in (0, 1)")
        if self.measures.beam_size < 1:
            raise ConfigError("config key 'measures.beam_size': must be >= 1")

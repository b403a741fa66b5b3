"""Floors for every emotion-style-transfer table: systems that need no training.

* ``copy-source``: the source itself, unchanged. Its Spk-Sim and WER are the ceiling a converter can keep; its
  Emo-Sim is what a converter must beat to have transferred anything.
* ``world-baseline``: WORLD re-synthesis of the source with its log-F0 mean and range mapped onto the reference's
  (voiced frames; ``exp((ln f - mu_src) / sigma_src * sigma_ref + mu_ref)``) and its tempo scaled to the
  reference's syllable rate, a uniform time-stretch clamped to +-``max_tempo_change`` (the thesis's +-40 % duration
  clamp). The syllable rate is the number of voiced runs (>= 2 frames) per second between the first and the last
  voiced frame: a text-free proxy, so the baseline works for different-text settings too.

Both take and return 16 kHz mono float32 waveforms, and both are :class:`emotk.eval.systems.TransferSystem`
(:class:`WorldProsodyBaseline`, :class:`CopySource`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from emotk.core.audio import HOP, SAMPLE_RATE
from emotk.errors import AudioError


@dataclass
class ProsodyStats:
    """Voiced log-F0 mean/std (ln Hz) and syllable rate (voiced runs per second; None without 2 voiced runs)."""

    log_f0_mean: float | None
    log_f0_std: float | None
    syllable_rate: float | None
    frames: int


def prosody_stats(f0: np.ndarray, min_run: int = 2) -> ProsodyStats:
    """Statistics of a 50 Hz F0 track (Hz, 0 = unvoiced) -> :class:`ProsodyStats`.

    Runs of voiced frames shorter than ``min_run`` are not counted as syllables (octave/voicing blips).
    """
    f = np.asarray(f0, dtype=np.float64).reshape(-1)
    voiced = f > 0
    if not voiced.any():
        return ProsodyStats(None, None, None, int(f.size))
    logf = np.log(f[voiced])
    edges = np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    runs = int(np.sum((ends - starts) >= min_run))
    span = (ends[-1] - starts[0]) * HOP / SAMPLE_RATE
    rate = runs / span if runs >= 2 and span > 0 else None
    return ProsodyStats(float(logf.mean()), float(logf.std()), rate, int(f.size))


def map_log_f0(f0: np.ndarray, source: ProsodyStats, target: ProsodyStats, min_std: float = 1e-3) -> np.ndarray:
    """Voiced frames of ``f0`` (Hz) moved from the source's log-F0 mean/range to the target's; unvoiced stay 0."""
    f = np.asarray(f0, dtype=np.float64).reshape(-1)
    out = np.zeros_like(f)
    if source.log_f0_mean is None or target.log_f0_mean is None:
        out[:] = f
        return out
    voiced = f > 0
    z = (np.log(f[voiced]) - source.log_f0_mean) / max(source.log_f0_std or 0.0, min_std)
    out[voiced] = np.exp(z * max(target.log_f0_std or 0.0, min_std) + target.log_f0_mean)
    return out


def tempo_ratio(source: ProsodyStats, target: ProsodyStats, max_change: float = 0.4) -> float:
    """Output length / source length that gives the source the target's syllable rate, within +-``max_change``
    (1.0 when either rate is unknown)."""
    if not source.syllable_rate or not target.syllable_rate:
        return 1.0
    return float(np.clip(source.syllable_rate / target.syllable_rate, 1.0 - max_change, 1.0 + max_change))


def stretch_track(f0: np.ndarray, length: int) -> np.ndarray:
    """A 50 Hz F0 track resampled to ``length`` frames: log-F0 interpolated between voiced frames, voicing of the
    nearest source frame."""
    f = np.asarray(f0, dtype=np.float64).reshape(-1)
    if length <= 0 or f.size == 0:
        return np.zeros(max(length, 0))
    pos = (np.arange(length) + 0.5) * f.size / length - 0.5
    nearest = np.clip(np.rint(pos).astype(np.int64), 0, f.size - 1)
    voiced = f > 0
    out = np.zeros(length)
    if not voiced.any():
        return out
    logf = np.interp(pos, np.flatnonzero(voiced), np.log(f[voiced]))
    keep = voiced[nearest]
    out[keep] = np.exp(logf[keep])
    return out


class WorldProsodyBaseline:
    """The training-free ``world-baseline`` system (module docstring).

    f0 / tempo: switch each transformation on or off; max_tempo_change: the clamp of the stretch;
    f0_backend: the F0 tracker of both analyses (:class:`emotk.features.f0.F0Config` backend, WORLD by default:
    fast and voicing-robust); f0_method: WORLD's own analysis in the synthesiser (dio | harvest).
    """

    name = "world-baseline"

    def __init__(self, f0: bool = True, tempo: bool = True, max_tempo_change: float = 0.4,
                 f0_backend: str = "world", f0_method: str = "dio") -> None:
        from emotk.features.f0 import F0Config

        self.f0, self.tempo, self.max_change = bool(f0), bool(tempo), float(max_tempo_change)
        self.f0_cfg = F0Config(backend=f0_backend)
        self.f0_method = f0_method

    def track(self, wav: np.ndarray) -> np.ndarray:
        from emotk.features.f0 import extract_f0

        return extract_f0(wav, SAMPLE_RATE, self.f0_cfg)

    def convert(self, source: np.ndarray, reference: np.ndarray,
                reference_f0: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """source, reference: (N,) 16 kHz float -> (converted (M,) float32, info with the statistics used).

        reference_f0: the reference's F0 track when already known (skips its extraction)."""
        from emotk.features.world_synth import world_synthesize

        src = np.asarray(source, dtype=np.float32).reshape(-1)
        frames = src.size // HOP
        if frames < 2:
            raise AudioError(f"world-baseline: source too short ({src.size} samples)")
        src = src[: frames * HOP]
        f0_src = self.track(src)[:frames]
        f0_ref = self.track(reference) if reference_f0 is None else np.asarray(reference_f0)
        s, r = prosody_stats(f0_src), prosody_stats(f0_ref)
        f0_new = map_log_f0(f0_src, s, r) if self.f0 else f0_src.astype(np.float64)
        ratio = tempo_ratio(s, r, self.max_change) if self.tempo else 1.0
        out_frames = max(1, int(round(frames * ratio)))
        f0_out = stretch_track(f0_new, out_frames)
        wav = world_synthesize(src, SAMPLE_RATE, [frames], [out_frames], f0_out, f0_method=self.f0_method)
        info = {"tempo_ratio": round(out_frames / frames, 4),
                "log_f0_source": s.log_f0_mean, "log_f0_reference": r.log_f0_mean,
                "syllable_rate_source": s.syllable_rate, "syllable_rate_reference": r.syllable_rate}
        return wav, info


def copy_source(source: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The ``copy-source`` system: the source unchanged (float32 copy)."""
    return np.asarray(source, dtype=np.float32).reshape(-1).copy(), {}


class CopySource:
    """:func:`copy_source` as a transfer system."""

    name = "copy-source"

    def convert(self, source: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        return copy_source(source, reference)


#: the training-free floors of every EST table, in their table order
BASELINES = ("world-baseline", "copy-source")

__all__ = ["BASELINES", "CopySource", "ProsodyStats", "WorldProsodyBaseline", "copy_source", "map_log_f0",
           "prosody_stats", "stretch_track", "tempo_ratio"]

"""Fundamental frequency (F0) at 50 Hz, aligned 1:1 with content tokens.

Three backends:

* ``yaapt`` -- pYAAPT (amfm_decompy) with the thesis settings (METHODS.md §6): 25 ms frames, 20 ms frame
  space, ``nccf_thresh1`` 0.25, ``tda_frame_length`` 25 ms, F0 searched in 60-400 Hz. The reference.
* ``world`` -- WORLD DIO + StoneMask (pyworld), tuned to agree with YAAPT at several times its speed
  (benchmarks/f0_backends.py): DIO runs on a 4x down-sampled signal; its voicing is gated by YAAPT's own
  voicing cue (the normalised low-frequency energy ratio, NLFER); short unvoiced gaps inside voiced stretches
  and a few frames at the edges of voiced stretches that the NLFER calls voiced are filled; octave jumps
  against the local median are folded back; remaining outliers and one-frame voiced islands are dropped.
* ``harvest`` -- WORLD Harvest (slow, robust), with the same voicing gate and post-processing.

Inputs shorter than 0.5 s are mirror-padded for WORLD (DIO's voicing check needs about 0.2 s of signal).

Frame alignment (emotk.features.frames): the result always has exactly ``num_frames(N)`` frames for N
samples at 16 kHz. With ``alignment="centre"`` (default) frame ``i`` is the analysis window centred on
sample ``320*i + 160``, the middle of ``[320*i, 320*(i+1))`` -- the same centre as the HuBERT receptive field
with 40 samples of padding. YAAPT gets this by padding ``frame_size/2 - 160`` samples (40 for 25 ms) on the
left (and the rest of the thesis's 2 x 200 samples on the right); WORLD analyses every 10 ms (DIO/Harvest
frame k sits on sample 160*k) and frame i is its frame 2i+1. With ``alignment="thesis"`` the input is padded
by ``pad`` (200) samples on each side exactly as the thesis does, so frame ``i`` is centred on sample
``320*i`` (half a frame early; WORLD frame 2i), and the trailing frame that pYAAPT adds beyond ``N // 320``
(whenever N is not a multiple of 320) is dropped. Unvoiced frames are 0 Hz.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from emotk.core.audio import HOP, SAMPLE_RATE
from emotk.errors import AudioError, ConfigError, DataError
from emotk.features.frames import num_frames

MIN_SECONDS = 0.1  # shorter inputs give all-zero F0
MIN_WORLD_SECONDS = 0.5  # shorter inputs are mirror-padded for DIO/Harvest
SILENCE_PEAK = 1e-4  # peak |amplitude| below which an input counts as silent (-80 dBFS)
_NLFER_NFFT = 1024


@dataclass
class F0Config:
    """F0 extraction settings; defaults are the thesis's YAAPT settings and the tuned WORLD pipeline."""

    backend: Literal["yaapt", "world", "harvest"] = "yaapt"
    alignment: Literal["centre", "thesis"] = "centre"
    f0_floor: float = 60.0  # Hz, lowest F0 searched (pYAAPT f0_min)
    f0_ceil: float = 400.0  # Hz, highest F0 searched (pYAAPT f0_max)
    # --- YAAPT (thesis, METHODS.md §6)
    frame_length: float = 25.0  # ms, analysis window
    frame_space: float = 20.0  # ms, must equal the 20 ms hop
    tda_frame_length: float = 25.0  # ms, time-domain (NCCF) window
    nccf_thresh1: float = 0.25
    pad: int = 200  # samples of zeros on each side (alignment "thesis")
    # --- WORLD (dio + stonemask) and harvest
    dio_speed: int = 4  # DIO analyses the signal down-sampled by this factor (1..12)
    dio_allowed_range: float = 0.12  # DIO's voicing threshold (larger = more frames voiced)
    dio_channels_in_octave: float = 2.0
    stonemask: bool = True  # refine DIO's F0 with StoneMask
    voicing_threshold: float = 0.6  # NLFER gate: voiced only where NLFER > this (0 disables the gate)
    max_gap: int = 5  # fill unvoiced gaps of <= this many frames between voiced frames (NLFER-voiced only)
    edge_extend: int = 3  # extend voiced stretches by <= this many NLFER-voiced frames, holding the edge F0
    octave_fix: bool = True  # halve/double frames ~an octave off the local median
    outlier: float = 0.3  # unvoice frames with |ln f0 - local median| > this (0 disables)
    local_window: int = 5  # half-width (frames) of the local median window
    min_voiced: int = 2  # drop voiced islands shorter than this many frames
    median: int = 3  # median filter length over log F0 within voiced stretches (1 = off; odd)

    def check(self) -> None:
        """Raise ConfigError for inconsistent settings."""
        if self.backend not in ("yaapt", "world", "harvest"):
            raise ConfigError(f"f0.backend: {self.backend!r} is not one of 'yaapt', 'world', 'harvest'")
        if self.alignment not in ("centre", "thesis"):
            raise ConfigError(f"f0.alignment: {self.alignment!r} is not one of 'centre', 'thesis'")
        if not 0 < self.f0_floor < self.f0_ceil < SAMPLE_RATE / 4:
            raise ConfigError(f"f0.f0_floor/f0_ceil: need 0 < floor < ceil < 4000 Hz, "
                              f"got {self.f0_floor}/{self.f0_ceil}")
        hop_ms = 1000.0 * HOP / SAMPLE_RATE
        if abs(self.frame_space - hop_ms) > 1e-9:
            raise ConfigError(f"f0.frame_space: must be {hop_ms:g} ms (one 50 Hz frame), got {self.frame_space}")
        if not 2.0 <= self.frame_length <= 100.0 or not 2.0 <= self.tda_frame_length <= 100.0:
            raise ConfigError("f0.frame_length/tda_frame_length: must be within 2-100 ms")
        if self.pad < 0:
            raise ConfigError(f"f0.pad: must be >= 0, got {self.pad}")
        if not 1 <= self.dio_speed <= 12:
            raise ConfigError(f"f0.dio_speed: must be within 1-12, got {self.dio_speed}")
        if self.median < 1 or self.median % 2 == 0:
            raise ConfigError(f"f0.median: must be an odd number >= 1, got {self.median}")
        for key in ("max_gap", "edge_extend", "local_window", "min_voiced"):
            if getattr(self, key) < 0:
                raise ConfigError(f"f0.{key}: must be >= 0, got {getattr(self, key)}")


# ----------------------------------------------------------------------------------------------- public API


def extract_f0(wav: np.ndarray, sr: int = SAMPLE_RATE, cfg: F0Config | None = None) -> np.ndarray:
    """F0 track of a mono waveform.

    Args:
        wav: (N,) samples (any float/int dtype); other rates than 16 kHz are resampled first.
        sr: sample rate of ``wav`` in Hz.
        cfg: settings (default ``F0Config()``, i.e. YAAPT with the thesis settings).

    Returns:
        (num_frames(N16),) float32 F0 in Hz per 50 Hz frame (N16 = length at 16 kHz), 0 where unvoiced.
        Inputs shorter than 0.1 s or silent inputs give all zeros.
    """
    cfg = cfg or F0Config()
    cfg.check()
    x = _prepare(wav, sr)
    n = num_frames(len(x))
    if n == 0 or len(x) < MIN_SECONDS * SAMPLE_RATE or float(np.max(np.abs(x))) < SILENCE_PEAK:
        return np.zeros(n, dtype=np.float32)
    if cfg.backend == "yaapt":
        f0 = _yaapt(x, n, cfg)
    else:
        f0 = _world(x, n, cfg)
    f0 = np.nan_to_num(np.asarray(f0, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    f0[f0 < 0] = 0.0
    return f0.astype(np.float32)


def speaker_logf0_stats(f0_list: Sequence[np.ndarray]) -> tuple[float, float]:
    """Mean and standard deviation of ln F0 over the voiced (> 0) frames of all tracks in ``f0_list``.

    Raises DataError when no track has a voiced frame.
    """
    voiced = [np.log(np.asarray(f, dtype=np.float64)[np.asarray(f) > 0]) for f in f0_list]
    values = np.concatenate(voiced) if voiced else np.zeros(0)
    if values.size == 0:
        raise DataError(f"speaker_logf0_stats: no voiced frames in {len(voiced)} F0 track(s)")
    return float(values.mean()), float(values.std())


def normalize_logf0(f0: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(T,) F0 in Hz -> (T,) float32 ``(ln f0 - mean) / std`` on voiced frames, 0 on unvoiced frames."""
    f0 = np.asarray(f0, dtype=np.float64)
    out = np.zeros(f0.shape, dtype=np.float32)
    voiced = f0 > 0
    out[voiced] = (np.log(f0[voiced]) - mean) / max(float(std), 1e-8)
    return out


def voicing_agreement(estimate: np.ndarray | Sequence[np.ndarray],
                      reference: np.ndarray | Sequence[np.ndarray]) -> float:
    """Fraction of frames whose voiced (> 0) / unvoiced state agrees, pooled over all frames.

    ``estimate``/``reference``: one (T,) track each, or equally long sequences of tracks of equal lengths.
    """
    agree = total = 0
    for est, ref in _track_pairs(estimate, reference):
        agree += int(((est > 0) == (ref > 0)).sum())
        total += est.size
    return agree / total if total else float("nan")


def gross_pitch_error(
    estimate: np.ndarray | Sequence[np.ndarray],
    reference: np.ndarray | Sequence[np.ndarray],
    tolerance: float = 0.2,
) -> float:
    """Fraction of the frames voiced in both tracks where ``|est - ref| > tolerance * ref`` (pooled).

    Same inputs as :func:`voicing_agreement`; NaN when no frame is voiced in both.
    """
    errors = both_total = 0
    for est, ref in _track_pairs(estimate, reference):
        both = (est > 0) & (ref > 0)
        errors += int((np.abs(est[both] - ref[both]) > tolerance * ref[both]).sum())
        both_total += int(both.sum())
    return errors / both_total if both_total else float("nan")


# ---------------------------------------------------------------------------------------------- internals


def _track_pairs(estimate, reference) -> list[tuple[np.ndarray, np.ndarray]]:
    single = isinstance(estimate, np.ndarray) and estimate.ndim == 1
    ests = [estimate] if single else list(estimate)
    refs = [reference] if single else list(reference)
    if len(ests) != len(refs):
        raise DataError(f"F0 measures: {len(ests)} estimated tracks but {len(refs)} reference tracks")
    pairs = []
    for i, (e, r) in enumerate(zip(ests, refs)):
        e, r = np.asarray(e, dtype=np.float64), np.asarray(r, dtype=np.float64)
        if e.shape != r.shape or e.ndim != 1:
            raise DataError(f"F0 measures: track {i}: estimate shape {e.shape} != reference shape {r.shape}")
        pairs.append((e, r))
    return pairs


def _prepare(wav: np.ndarray, sr: int) -> np.ndarray:
    """Validate and convert to (N,) float64 at 16 kHz."""
    x = np.asarray(wav)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise AudioError(f"extract_f0: expected mono (N,) audio, got shape {x.shape}")
    if x.dtype.kind in "iu":
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max)
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise AudioError("extract_f0: audio contains NaN or infinite samples")
    if int(sr) <= 0:
        raise AudioError(f"extract_f0: bad sample rate {sr}")
    if int(sr) != SAMPLE_RATE and x.size:
        from emotk.data.audio import resample

        x = resample(x, int(sr), SAMPLE_RATE)
    return np.ascontiguousarray(x, dtype=np.float64)


def _centre_offset(cfg: F0Config) -> int:
    """Sample (relative to ``320*i``) on which frame ``i`` is centred."""
    return HOP // 2 if cfg.alignment == "centre" else 0


def _yaapt(x: np.ndarray, n: int, cfg: F0Config) -> np.ndarray:
    from amfm_decompy import basic_tools, pYAAPT

    frame_size = int(cfg.frame_length * SAMPLE_RATE / 1000)
    tda_size = int(cfg.tda_frame_length * SAMPLE_RATE / 1000)
    if cfg.alignment == "thesis":
        left, skip = cfg.pad, 0
    else:
        # pYAAPT's frame k is centred on padded sample frame_size//2 + k*HOP; choose the left padding so
        # that this is original sample 320*i + 160 (skipping leading frames when the window is < 20 ms).
        base = frame_size // 2 - _centre_offset(cfg)
        skip = max(0, math.ceil(-base / HOP))
        left = base + skip * HOP
    # Same total padding as the thesis (2 * pad): the zeros enter pYAAPT's utterance-level energy
    # normalisation, so the amount changes its voicing slightly. Grow it only if frames would be missing.
    right = max(0, 2 * cfg.pad - left)
    while _yaapt_frames(left + x.size + right, frame_size, tda_size) < n + skip:
        right += HOP
    padded = np.concatenate([np.zeros(left), x, np.zeros(right)])
    signal = basic_tools.SignalObj(padded, float(SAMPLE_RATE))
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pitch = pYAAPT.yaapt(
                signal,
                frame_length=cfg.frame_length,
                frame_space=cfg.frame_space,
                tda_frame_length=cfg.tda_frame_length,
                nccf_thresh1=cfg.nccf_thresh1,
                f0_min=cfg.f0_floor,
                f0_max=cfg.f0_ceil,
            )
    except (ValueError, IndexError, AssertionError, ZeroDivisionError, FloatingPointError) as e:
        # pYAAPT fails when (almost) nothing is voiced (its spectral track interpolates over < 2 points).
        from emotk.core.log import get_logger

        get_logger("features.f0").debug("pYAAPT found no pitch track (%s); returning unvoiced", e)
        return np.zeros(n)
    values = np.asarray(pitch.samp_values, dtype=np.float64)[skip:]
    out = np.zeros(n)
    out[: min(n, values.size)] = values[:n]
    return out


def _yaapt_frames(padded_size: int, frame_size: int, tda_size: int) -> int:
    """Frames for which pYAAPT produces both its spectral and its time-domain (NCCF) estimates."""
    spectral = len(range(frame_size // 2, padded_size - frame_size // 2, HOP))
    temporal = (padded_size - (tda_size - HOP)) // HOP
    return min(spectral, temporal)


def _import_pyworld():
    with warnings.catch_warnings():  # pyworld imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        import pyworld

    return pyworld


def _world(x: np.ndarray, n: int, cfg: F0Config) -> np.ndarray:
    pw = _import_pyworld()
    # WORLD analyses at t = k * 10 ms, i.e. on samples 160 * k: frame i sits on 320*i + 160 (odd k, "centre")
    # or on 320*i (even k, "thesis"). Short inputs are mirror-padded by whole 20 ms frames on both sides:
    # DIO's voicing check needs about 0.2 s of signal.
    ext = HOP * math.ceil(max(0.0, MIN_WORLD_SECONDS * SAMPLE_RATE - x.size) / 2 / HOP)
    xp = np.pad(x, ext, mode="reflect") if ext else x
    select = 2 * (ext // HOP) + (1 if cfg.alignment == "centre" else 0) + 2 * np.arange(n)
    period = 1000.0 * HOP / SAMPLE_RATE / 2
    if cfg.backend == "harvest":
        f0, t = pw.harvest(xp, SAMPLE_RATE, f0_floor=cfg.f0_floor, f0_ceil=cfg.f0_ceil, frame_period=period)
        f0 = f0[select]
    else:
        f0, t = pw.dio(
            xp,
            SAMPLE_RATE,
            f0_floor=cfg.f0_floor,
            f0_ceil=cfg.f0_ceil,
            channels_in_octave=cfg.dio_channels_in_octave,
            frame_period=period,
            speed=cfg.dio_speed,
            allowed_range=cfg.dio_allowed_range,
        )
        f0, t = np.ascontiguousarray(f0[select]), np.ascontiguousarray(t[select])
        if cfg.stonemask:
            f0 = pw.stonemask(xp, f0, t, SAMPLE_RATE)
    out = np.asarray(f0, dtype=np.float64)
    out[(out < cfg.f0_floor * 0.5) | (out > cfg.f0_ceil * 2.0)] = 0.0
    if cfg.voicing_threshold <= 0:
        return out if cfg.backend == "harvest" else _postprocess(out, None, cfg)
    voiced_cue = nlfer(x, n, cfg) > cfg.voicing_threshold
    return _postprocess(out, voiced_cue, cfg)


def nlfer(x: np.ndarray, n: int, cfg: F0Config | None = None) -> np.ndarray:
    """YAAPT's normalised low-frequency energy ratio per frame.

    Args:
        x: (N,) 16 kHz samples. n: number of frames. cfg: gives the frame length, F0 range and alignment.

    Returns:
        (n,) float64: sum of |FFT| of a Hann-windowed frame (``frame_length`` ms, centred per ``alignment``)
        over ``[2*f0_floor, f0_ceil]`` Hz, divided by its mean over the utterance. Voiced speech is > ~0.6.
    """
    cfg = cfg or F0Config()
    frames = frame_matrix(x, n, int(cfg.frame_length * SAMPLE_RATE / 1000), _centre_offset(cfg))
    frames = frames * np.hanning(frames.shape[1] + 2)[1:-1]
    spec = np.abs(np.fft.rfft(frames, _NLFER_NFFT, axis=1))
    lo = max(1, int(round(2 * cfg.f0_floor / SAMPLE_RATE * _NLFER_NFFT)))
    hi = int(round(cfg.f0_ceil / SAMPLE_RATE * _NLFER_NFFT))
    energy = spec[:, lo - 1 : hi].sum(axis=1)
    mean = energy.mean() if energy.size else 0.0
    return energy / mean if mean > 0 else np.zeros(n)


def frame_matrix(x: np.ndarray, n: int, width: int, offset: int = HOP // 2) -> np.ndarray:
    """(n, width) view of ``x`` (zero-padded at both ends) whose row ``i`` is centred on ``320*i + offset``."""
    left = width // 2 + HOP
    xp = np.concatenate([np.zeros(left, dtype=x.dtype), x, np.zeros(width + 2 * HOP, dtype=x.dtype)])
    starts = HOP * np.arange(n) + offset - width // 2 + left
    return np.lib.stride_tricks.sliding_window_view(xp, width)[starts]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1-D boolean mask."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _local_log_median(f0: np.ndarray, half: int) -> np.ndarray:
    """Median of ln F0 over the voiced frames within ±half frames of each voiced frame (0 elsewhere)."""
    n = f0.size
    voiced = f0 > 0
    logs = np.full(n + 2 * half, np.nan)
    logs[half : half + n][voiced] = np.log(f0[voiced])
    windows = np.lib.stride_tricks.sliding_window_view(logs, 2 * half + 1)[voiced]
    out = np.zeros(n)
    out[voiced] = np.nanmedian(windows, axis=1)
    return out


def _postprocess(f0: np.ndarray, voiced_cue: np.ndarray | None, cfg: F0Config) -> np.ndarray:
    """Voicing gate, gap filling, edge extension, octave fix, outlier removal, island removal, smoothing."""
    n = f0.size
    out = f0.copy()
    if voiced_cue is not None:
        out[~voiced_cue] = 0.0
        have = out > 0
        if have.any() and (cfg.max_gap > 0 or cfg.edge_extend > 0):
            idx = np.arange(n)
            ref = np.exp(np.interp(idx, idx[have], np.log(out[have])))
            filled = out.copy()
            for s, e in _runs(~have):
                interior = s > 0 and e < n
                if interior and e - s <= cfg.max_gap:
                    take = voiced_cue[s:e]
                    filled[s:e][take] = ref[s:e][take]
                    continue
                if s > 0:  # extend the voiced stretch that ends at s - 1 forwards
                    k = s
                    while k < min(e, s + cfg.edge_extend) and voiced_cue[k]:
                        filled[k] = out[s - 1]
                        k += 1
                if e < n:  # extend the voiced stretch that starts at e backwards
                    k = e - 1
                    while k >= max(s, e - cfg.edge_extend) and voiced_cue[k] and filled[k] == 0:
                        filled[k] = out[e]
                        k -= 1
            out = filled
    if cfg.local_window > 0 and (cfg.octave_fix or cfg.outlier > 0) and (out > 0).any():
        if cfg.octave_fix:
            med = _local_log_median(out, cfg.local_window)
            voiced = out > 0
            dev = np.zeros(n)
            dev[voiced] = np.log2(out[voiced]) - med[voiced] / math.log(2)
            out[voiced & (dev > 0.75)] /= 2.0
            out[voiced & (dev < -0.75)] *= 2.0
        if cfg.outlier > 0:
            med = _local_log_median(out, cfg.local_window)
            voiced = out > 0
            bad = np.zeros(n, dtype=bool)
            bad[voiced] = np.abs(np.log(out[voiced]) - med[voiced]) > cfg.outlier
            out[bad] = 0.0
    if cfg.min_voiced > 1:
        for s, e in _runs(out > 0):
            if e - s < cfg.min_voiced:
                out[s:e] = 0.0
    if cfg.median > 1:
        from scipy.signal import medfilt

        for s, e in _runs(out > 0):
            if e - s >= cfg.median:
                out[s:e] = np.exp(medfilt(np.log(out[s:e]), cfg.median))
    return out

"""Frame-level acoustic targets for CARE's acoustic encoder (METHODS.md §1), at 50 Hz.

Three kinds (``AcousticConfig.kind``):

* ``lld`` (default) -- a built-in descriptor set in the spirit of PASE+'s worker targets, computed with numpy:
  25 ms Hann frames centred on sample ``320*i + 160`` (frame ``i`` describes ``[320*i, 320*(i+1))``, see
  emotk.features.frames), 512-point FFT of 16 kHz audio. Layout with the defaults (256 columns, in order):

  ====================  =====  =========================================================================
  block                 width  content
  ====================  =====  =========================================================================
  log-mel               80     ln of HTK-mel filterbank power, 0-8000 Hz (``n_mels``)
  MFCC                  40     DCT-II (orthonormal) of the log-mel, c0..c39 (``n_mfcc``)
  delta-MFCC            40     regression deltas over ±2 frames (``deltas``; 0 columns when off)
  long log-mel          80     log-mel averaged over ±``long_context`` frames (0 columns when 0)
  prosody               4      ln F0 (interpolated through unvoiced frames; emotk.features.f0, WORLD backend
                               by default), voicing (1/0), zero-crossing rate (crossings per sample),
                               ln frame energy
  spectral              12     centroid, spread, rolloff-85% (kHz), skewness, ln kurtosis, flatness,
                               entropy (0-1), flux (mean squared log-mel change), slope (dB/kHz), alpha
                               ratio and Hammarberg index (dB), ln crest factor
  ====================  =====  =========================================================================

  When the blocks do not add up to ``dim``, ``fit`` decides: ``project`` multiplies by a fixed Gaussian random
  matrix (entries N(0, 1/D), numpy PCG64 seeded with ``seed``) after standardising each descriptor over the
  utterance, so no block dominates by its units; ``truncate_pad`` keeps the first ``dim`` columns or pads
  with zeros.
* ``precomputed`` -- frame features of an external extractor (e.g. PASE+ at 100 Hz): ``<utt_id>.npy``,
  ``<utt_id>.pt`` or ``<utt_id>.safetensors`` in ``source`` (a folder), or the tensor named ``utt_id`` in
  ``source`` (one .safetensors file). Arrays are (T, D) (a leading batch axis of 1 is dropped). Rates that are
  an integer multiple of 50 Hz are decimated by averaging consecutive groups (pairs at 100 Hz, as the thesis
  does); other rates are linearly interpolated to the 50 Hz frame centres.
* ``egemaps`` -- the 25 eGeMAPSv02 low-level descriptors of openSMILE (optional package ``opensmile``),
  100 Hz decimated to 50 Hz by pair averaging.

Every kind returns exactly ``num_frames(N16)`` frames (N16: the input length at 16 kHz, ``round(N * 16000 /
sr)``); sources a few frames off are cut or padded by repeating the last frame. Per-utterance normalisation
over time (``normalize``): ``none``, ``standard`` ((x - mean) / std) or ``reference`` ((x - mean) / (std + 1),
the CARE reference code).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from emotk.core.audio import FRAME_RATE, HOP, SAMPLE_RATE
from emotk.errors import AudioError, ConfigError, DataError, EmotkError
from emotk.features.f0 import F0Config, extract_f0, frame_matrix
from emotk.features.frames import fit_frames, num_frames

N_PROSODY = 4
N_SPECTRAL = 12
EGEMAPS_RATE = 100.0
_EPS = 1e-10


@dataclass
class AcousticConfig:
    """Acoustic-target settings (section ``acoustic`` of a CARE config)."""

    kind: Literal["lld", "precomputed", "egemaps"] = "lld"
    normalize: Literal["none", "standard", "reference"] = "reference"
    # --- lld
    dim: int = 256  # lld output width
    fit: Literal["project", "truncate_pad"] = "project"  # when the lld blocks do not add up to dim
    seed: int = 0  # projection matrix seed
    n_fft: int = 512
    win_ms: float = 25.0
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    n_mfcc: int = 40
    deltas: bool = True
    long_context: int = 5  # frames each side averaged into the long log-mel block (0 = no block)
    f0: F0Config = field(default_factory=lambda: F0Config(backend="world"))
    # --- precomputed
    source: str = ""  # folder of <utt_id>.{npy,pt,safetensors}, or one .safetensors file keyed by utt id
    source_rate: float = 100.0  # frames per second of the stored features
    key: str = ""  # tensor name inside a per-utterance .pt/.safetensors file ("" = its only tensor)
    max_length_mismatch: int = 4  # 50 Hz frames a source may differ from num_frames before it is an error
    # --- egemaps / precomputed
    expect_dim: int = 0  # required feature width for precomputed/egemaps (0 = any)

    def lld_dim(self) -> int:
        """Width of the concatenated lld blocks before fitting to ``dim``."""
        return (
            self.n_mels
            + self.n_mfcc * (2 if self.deltas else 1)
            + (self.n_mels if self.long_context > 0 else 0)
            + N_PROSODY
            + N_SPECTRAL
        )

    def out_dim(self) -> int | None:
        """Output width: ``dim`` for lld, 25 for egemaps, ``expect_dim`` (or None = unknown) for precomputed."""
        if self.kind == "lld":
            return self.dim
        if self.kind == "egemaps":
            return 25
        return self.expect_dim or None

    def check(self) -> None:
        """Raise ConfigError for inconsistent settings."""
        if self.kind not in ("lld", "precomputed", "egemaps"):
            raise ConfigError(f"acoustic.kind: {self.kind!r} is not one of 'lld', 'precomputed', 'egemaps'")
        if self.normalize not in ("none", "standard", "reference"):
            raise ConfigError(f"acoustic.normalize: {self.normalize!r} is not one of 'none', 'standard', 'reference'")
        if self.kind == "lld":
            if self.dim < 1:
                raise ConfigError(f"acoustic.dim: must be >= 1, got {self.dim}")
            if self.fit not in ("project", "truncate_pad"):
                raise ConfigError(f"acoustic.fit: {self.fit!r} is not one of 'project', 'truncate_pad'")
            win = int(self.win_ms * SAMPLE_RATE / 1000)
            if not 0 < win <= self.n_fft:
                raise ConfigError(f"acoustic.win_ms: a {self.win_ms} ms window does not fit n_fft={self.n_fft}")
            if not 0 <= self.fmin < self.fmax <= SAMPLE_RATE / 2:
                raise ConfigError(f"acoustic.fmin/fmax: need 0 <= fmin < fmax <= 8000, got {self.fmin}/{self.fmax}")
            if self.n_mels < 1 or not 0 < self.n_mfcc <= self.n_mels:
                raise ConfigError(f"acoustic.n_mfcc: need 0 < n_mfcc <= n_mels ({self.n_mels}), got {self.n_mfcc}")
            if self.long_context < 0:
                raise ConfigError(f"acoustic.long_context: must be >= 0, got {self.long_context}")
            self.f0.check()
        if self.kind == "precomputed":
            if not self.source:
                raise ConfigError("acoustic.source: precomputed targets need a folder or .safetensors file")
            if self.source_rate <= 0:
                raise ConfigError(f"acoustic.source_rate: must be > 0, got {self.source_rate}")


# ----------------------------------------------------------------------------------------------- public API


def acoustic_targets(
    wav: np.ndarray, sr: int = SAMPLE_RATE, cfg: AcousticConfig | None = None, utt_id: str | None = None
) -> np.ndarray:
    """Frame-level acoustic targets of one utterance.

    Args:
        wav: (N,) mono samples at ``sr`` Hz (for ``precomputed`` only its length is used).
        sr: sample rate of ``wav``.
        cfg: settings (default: the 256-d lld set, reference normalisation).
        utt_id: utterance id; required for ``precomputed``.

    Returns:
        (num_frames(N16), D) float32, frame ``i`` describing 16 kHz samples ``[320*i, 320*(i+1))``.
    """
    cfg = cfg or AcousticConfig()
    cfg.check()
    wav = np.asarray(wav)
    if wav.ndim == 2 and 1 in wav.shape:
        wav = wav.reshape(-1)
    if wav.ndim != 1:
        raise AudioError(f"acoustic_targets: expected mono (N,) audio, got shape {wav.shape}")
    if int(sr) <= 0:
        raise AudioError(f"acoustic_targets: bad sample rate {sr}")
    n16 = int(round(wav.size * SAMPLE_RATE / int(sr)))
    n = num_frames(n16)
    if cfg.kind == "precomputed":
        if not utt_id:
            raise DataError("acoustic_targets: precomputed targets need the utterance id (utt_id)")
        feats = load_precomputed(cfg, utt_id, n)
    else:
        x = _to_16k(wav, sr)
        if cfg.kind == "lld":
            feats = lld(x, cfg)
        else:
            feats = egemaps(x, n)
        feats = fit_frames(feats, n, pad_value=None)
    if cfg.expect_dim and cfg.kind != "lld" and feats.shape[1] != cfg.expect_dim:
        where = f" for {utt_id}" if utt_id else ""
        raise DataError(f"acoustic targets{where}: width {feats.shape[1]} != acoustic.expect_dim {cfg.expect_dim}")
    return normalize(feats, cfg.normalize)


def normalize(x: np.ndarray, mode: str) -> np.ndarray:
    """Per-utterance normalisation over time of (T, D) features -> (T, D) float32.

    ``none``; ``standard``: (x - mean) / std (std < 1e-5 treated as 1); ``reference``: (x - mean) / (std + 1).
    """
    x = np.asarray(x, dtype=np.float64)
    if mode == "none" or x.shape[0] == 0:
        return x.astype(np.float32)
    mean = x.mean(axis=0, keepdims=True)
    std = x.std(axis=0, keepdims=True)
    if mode == "standard":
        return ((x - mean) / np.where(std < 1e-5, 1.0, std)).astype(np.float32)
    if mode == "reference":
        return ((x - mean) / (std + 1.0)).astype(np.float32)
    raise ConfigError(f"acoustic.normalize: {mode!r} is not one of 'none', 'standard', 'reference'")


def lld(x: np.ndarray, cfg: AcousticConfig | None = None) -> np.ndarray:
    """Built-in descriptors (layout in the module docstring) of (N,) 16 kHz audio -> (num_frames(N), dim)."""
    cfg = cfg or AcousticConfig()
    x = np.ascontiguousarray(x, dtype=np.float64)
    n = num_frames(x.size)
    win = int(cfg.win_ms * SAMPLE_RATE / 1000)
    frames = frame_matrix(x, n, win, HOP // 2)
    power = np.abs(np.fft.rfft(frames * _hann(win), cfg.n_fft, axis=1)) ** 2  # (n, n_fft/2 + 1)
    freqs = np.fft.rfftfreq(cfg.n_fft, 1.0 / SAMPLE_RATE)

    logmel = np.log(power @ mel_filterbank(cfg.n_mels, cfg.n_fft, cfg.fmin, cfg.fmax).T + _EPS)
    blocks = [logmel]
    from scipy.fft import dct

    mfcc = dct(logmel, type=2, norm="ortho", axis=1)[:, : cfg.n_mfcc] if n else np.zeros((0, cfg.n_mfcc))
    blocks.append(mfcc)
    if cfg.deltas:
        blocks.append(deltas(mfcc))
    if cfg.long_context > 0:
        blocks.append(_moving_average(logmel, cfg.long_context))
    blocks.append(_prosody(x, frames, n, cfg))
    blocks.append(_spectral(power, freqs, logmel))
    feats = np.concatenate(blocks, axis=1)
    feats = np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0)
    return _fit_dim(feats, cfg).astype(np.float32)


def deltas(x: np.ndarray, width: int = 2) -> np.ndarray:
    """Regression deltas of (T, D) features over ±``width`` frames (edges repeated) -> (T, D)."""
    if x.shape[0] == 0:
        return x.copy()
    padded = np.concatenate([np.repeat(x[:1], width, 0), x, np.repeat(x[-1:], width, 0)])
    t = x.shape[0]
    num = sum(k * (padded[width + k : width + k + t] - padded[width - k : width - k + t]) for k in range(1, width + 1))
    return num / (2 * sum(k * k for k in range(1, width + 1)))


def decimate(x: np.ndarray, source_rate: float, target_rate: float = FRAME_RATE) -> np.ndarray:
    """Resample (T, D) frame features from ``source_rate`` to ``target_rate`` frames per second.

    Integer ratios average consecutive groups (the last, partial group over the frames it has): 100 -> 50 Hz
    averages pairs, as the thesis does. Other ratios interpolate linearly between frame centres
    (frame j of a rate-r stream is centred at (j + 0.5) / r seconds).
    """
    x = np.asarray(x, dtype=np.float64)
    ratio = source_rate / target_rate
    if abs(ratio - 1.0) < 1e-9 or x.shape[0] == 0:
        return x
    if abs(ratio - round(ratio)) < 1e-9 and ratio > 1:
        r = int(round(ratio))
        t = math.ceil(x.shape[0] / r)
        sums = np.add.reduceat(x, np.arange(0, x.shape[0], r), axis=0)
        counts = np.minimum(r, x.shape[0] - np.arange(0, x.shape[0], r))[:, None]
        return sums[:t] / counts
    t = max(1, int(round(x.shape[0] / ratio)))
    src = (np.arange(x.shape[0]) + 0.5) / source_rate
    dst = (np.arange(t) + 0.5) / target_rate
    return np.stack([np.interp(dst, src, x[:, d]) for d in range(x.shape[1])], axis=1)


def load_precomputed(cfg: AcousticConfig, utt_id: str, n: int) -> np.ndarray:
    """Stored features of ``utt_id`` at ``cfg.source_rate`` -> (n, D) float64 at 50 Hz.

    Raises DataError when the file/tensor is missing, not 2-D, non-finite, or more than
    ``cfg.max_length_mismatch`` frames away from ``n`` after decimation.
    """
    source = Path(cfg.source)
    raw, where = _read_source(source, utt_id, cfg.key)
    arr = np.asarray(raw, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise DataError(f"{where}: expected (frames, dims) features, got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise DataError(f"{where}: features contain NaN or infinite values")
    feats = decimate(arr, cfg.source_rate)
    if cfg.max_length_mismatch >= 0 and abs(feats.shape[0] - n) > cfg.max_length_mismatch:
        raise DataError(
            f"{where}: {arr.shape[0]} frames at {cfg.source_rate:g} Hz give {feats.shape[0]} at 50 Hz, but the audio "
            f"has {n} (more than acoustic.max_length_mismatch={cfg.max_length_mismatch} apart; wrong file or rate?)"
        )
    return fit_frames(feats, n, pad_value=None)


def egemaps(x: np.ndarray, n: int | None = None) -> np.ndarray:
    """eGeMAPSv02 LLDs (25) of (N,) 16 kHz audio via openSMILE -> (frames at 50 Hz, 25) float64."""
    try:
        import opensmile
    except ImportError:
        raise EmotkError(
            "acoustic.kind=egemaps needs the optional package opensmile: pip install opensmile"
        ) from None
    smile = _smile(opensmile)
    table = smile.process_signal(np.asarray(x, dtype=np.float32), SAMPLE_RATE)
    feats = decimate(np.asarray(table.to_numpy(), dtype=np.float64), EGEMAPS_RATE)
    return feats if n is None else fit_frames(feats, n, pad_value=None)


# ---------------------------------------------------------------------------------------------- internals


def _to_16k(wav: np.ndarray, sr: int) -> np.ndarray:
    x = wav.astype(np.float32) / float(np.iinfo(wav.dtype).max) if wav.dtype.kind in "iu" else wav.astype(np.float32)
    if not np.isfinite(x).all():
        raise AudioError("acoustic_targets: audio contains NaN or infinite samples")
    if int(sr) != SAMPLE_RATE and x.size:
        from emotk.data.audio import resample

        x = resample(x, int(sr), SAMPLE_RATE)
    return np.asarray(x, dtype=np.float64)


@lru_cache(maxsize=8)
def _hann(win: int) -> np.ndarray:
    return np.hanning(win + 2)[1:-1]


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(n_mels: int, n_fft: int, fmin: float = 0.0, fmax: float = SAMPLE_RATE / 2) -> np.ndarray:
    """(n_mels, n_fft/2 + 1) triangular HTK-mel filters (peak 1), edges equally spaced in mel."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / SAMPLE_RATE)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (freqs[None, :] - lower) / (centre - lower)
    fall = (upper - freqs[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rise, fall))


def _moving_average(x: np.ndarray, half: int) -> np.ndarray:
    """Mean of (T, D) over ±half frames (window shrinks at the edges)."""
    t = x.shape[0]
    if t == 0:
        return x.copy()
    csum = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    lo = np.maximum(0, np.arange(t) - half)
    hi = np.minimum(t, np.arange(t) + half + 1)
    return (csum[hi] - csum[lo]) / (hi - lo)[:, None]


def _prosody(x: np.ndarray, frames: np.ndarray, n: int, cfg: AcousticConfig) -> np.ndarray:
    """(n, 4): ln F0 (interpolated over unvoiced frames), voicing, zero-crossing rate, ln energy."""
    f0 = extract_f0(x, SAMPLE_RATE, cfg.f0).astype(np.float64) if n else np.zeros(0)
    voiced = f0 > 0
    logf0 = np.zeros(n)
    if voiced.any():
        idx = np.arange(n)
        logf0 = np.interp(idx, idx[voiced], np.log(f0[voiced]))
    # zero-crossing rate and energy over the hop the frame describes ([320i, 320(i+1)))
    hop = frame_matrix(x, n, HOP, HOP // 2)
    signs = np.signbit(hop)
    zcr = (signs[:, 1:] != signs[:, :-1]).mean(axis=1) if n else np.zeros(0)
    energy = np.log((frames**2).sum(axis=1) + _EPS)
    return np.stack([logf0, voiced.astype(np.float64), zcr, energy], axis=1)


def _spectral(power: np.ndarray, freqs: np.ndarray, logmel: np.ndarray) -> np.ndarray:
    """(T, 12) spectral shape descriptors of a (T, F) power spectrum (frequencies in Hz)."""
    t = power.shape[0]
    if t == 0:
        return np.zeros((0, N_SPECTRAL))
    p = power + _EPS
    khz = freqs / 1000.0
    total = p.sum(axis=1, keepdims=True)
    w = p / total
    centroid = (w * khz).sum(axis=1)
    dev = khz[None, :] - centroid[:, None]
    spread = np.sqrt((w * dev**2).sum(axis=1))
    skew = (w * dev**3).sum(axis=1) / np.maximum(spread, 1e-6) ** 3
    kurt = np.log((w * dev**4).sum(axis=1) / np.maximum(spread, 1e-6) ** 4 + _EPS)
    cum = np.cumsum(p, axis=1)
    rolloff = khz[np.minimum((cum < 0.85 * total).sum(axis=1), khz.size - 1)]
    flatness = np.exp(np.log(p).mean(axis=1)) / p.mean(axis=1)
    entropy = -(w * np.log(w)).sum(axis=1) / math.log(p.shape[1])
    flux = np.concatenate([[0.0], ((logmel[1:] - logmel[:-1]) ** 2).mean(axis=1)])
    db = 10.0 * np.log10(p)
    kc = khz - khz.mean()
    slope = (db - db.mean(axis=1, keepdims=True)) @ kc / (kc @ kc)
    low, high = (freqs >= 50) & (freqs < 1000), (freqs >= 1000) & (freqs < 5000)
    alpha = 10.0 * np.log10(p[:, low].sum(axis=1) / p[:, high].sum(axis=1))
    hammarberg = db[:, freqs < 2000].max(axis=1) - db[:, (freqs >= 2000) & (freqs < 5000)].max(axis=1)
    crest = np.log(p.max(axis=1) / p.mean(axis=1))
    return np.stack(
        [centroid, spread, rolloff, skew, kurt, flatness, entropy, flux, slope, alpha, hammarberg, crest], axis=1
    )


@lru_cache(maxsize=8)
def _projection(d_in: int, d_out: int, seed: int) -> np.ndarray:
    """(d_in, d_out) fixed Gaussian random matrix, entries N(0, 1/d_in), drawn from numpy's PCG64 with ``seed``
    (the same numbers on every platform); unit-variance independent inputs give unit-variance outputs."""
    return np.random.default_rng(seed).standard_normal((d_in, d_out)) / math.sqrt(d_in)


def _fit_dim(feats: np.ndarray, cfg: AcousticConfig) -> np.ndarray:
    d = feats.shape[1]
    if d == cfg.dim:
        return feats
    if cfg.fit == "truncate_pad":
        if d > cfg.dim:
            return feats[:, : cfg.dim]
        return np.concatenate([feats, np.zeros((feats.shape[0], cfg.dim - d))], axis=1)
    # standardise each descriptor over the utterance so no block dominates the projection by its units
    z = feats - feats.mean(axis=0, keepdims=True) if feats.shape[0] else feats
    std = z.std(axis=0, keepdims=True) if feats.shape[0] else np.ones((1, d))
    z = z / np.where(std < 1e-8, 1.0, std)
    return z @ _projection(d, cfg.dim, cfg.seed)


def _read_source(source: Path, utt_id: str, key: str) -> tuple[np.ndarray, str]:
    """The stored array for ``utt_id`` and a description of where it came from (for messages)."""
    if os.path.isabs(utt_id) or ".." in Path(utt_id).parts:
        raise DataError(f"acoustic.source: utterance id {utt_id!r} is not a safe file name")
    if source.is_file():
        if source.suffix != ".safetensors":
            raise DataError(f"{source}: a single-file feature source must be .safetensors "
                            "(one tensor per utterance id)")
        return _safetensors_tensor(source, utt_id), f"{source}[{utt_id}]"
    if not source.is_dir():
        raise DataError(f"{source}: precomputed feature source not found (acoustic.source)")
    for suffix in (".npy", ".pt", ".safetensors"):
        path = source / f"{utt_id}{suffix}"
        if path.is_file():
            break
    else:
        raise DataError(f"{source}: no {utt_id}.npy, {utt_id}.pt or {utt_id}.safetensors (acoustic.source)")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False), str(path)
        if suffix == ".pt":
            return _torch_file(path, key), str(path)
        return _safetensors_tensor(path, key or None), str(path)
    except (ValueError, OSError, RuntimeError, EOFError) as e:
        raise DataError(f"{path}: cannot read features ({str(e).strip().splitlines()[0][:160]})") from None


def _safetensors_tensor(path: Path, name: str | None) -> np.ndarray:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            names = sorted(f.keys())
            if name is None:
                if len(names) != 1:
                    raise DataError(f"{path}: holds {len(names)} tensors ({', '.join(names[:5])}); set acoustic.key")
                name = names[0]
            if name not in names:
                raise DataError(f"{path}: no tensor named {name!r} ({len(names)} tensors)")
            try:
                return f.get_tensor(name)
            except (TypeError, ValueError):  # dtypes numpy lacks (bfloat16): read through torch
                pass
        with safe_open(str(path), framework="pt") as f:
            return f.get_tensor(name).float().numpy()
    except DataError:
        raise
    except Exception as e:  # safetensors raises its own SafetensorError for corrupt headers
        raise DataError(f"{path}: cannot read safetensors ({str(e).strip().splitlines()[0][:160]})") from None


def _torch_file(path: Path, key: str) -> np.ndarray:
    import torch

    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if key:
            if key not in tensors:
                raise DataError(f"{path}: no tensor named {key!r} (keys: {', '.join(sorted(tensors)[:5])})")
            obj = tensors[key]
        elif len(tensors) == 1:
            obj = next(iter(tensors.values()))
        else:
            raise DataError(f"{path}: holds {len(tensors)} tensors; set acoustic.key")
    if not isinstance(obj, torch.Tensor):
        raise DataError(f"{path}: expected a tensor, got {type(obj).__name__}")
    return obj.detach().float().numpy()


@lru_cache(maxsize=1)
def _smile(opensmile_module):
    return opensmile_module.Smile(
        feature_set=opensmile_module.FeatureSet.eGeMAPSv02,
        feature_level=opensmile_module.FeatureLevel.LowLevelDescriptors,
    )

"""WORLD re-synthesis with new token durations and F0 (DSP, no trained model): the S2S-ZEST ``world`` synthesiser
backend (beyond the thesis: converted speech without a trained vocoder) and the ``world-baseline`` EST floor.

The source is analysed with WORLD (F0 by DIO + StoneMask or Harvest, CheapTrick spectral envelope, D4C
aperiodicity) on a 5 ms grid, four analysis frames per 50 Hz token frame. The envelope and aperiodicity are
time-warped token by token: the i-th de-duplicated token segment, ``d_i`` source frames long, is stretched or
compressed to ``d̂_i`` frames (piecewise-linear time map, log-envelope interpolated). The predicted F0 (50 Hz,
0 = unvoiced) is imposed and WORLD re-synthesises the waveform. CPU-only, works for any input length, used by
the demo and by users without a trained BigVGAN.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from emotk.errors import AudioError, DataError

TOKEN_MS = 20.0  # one 50 Hz token frame
FRAME_PERIOD_MS = 5.0  # WORLD analysis/synthesis frame period (a divisor of TOKEN_MS)


def _import_pyworld() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyworld imports pkg_resources (a deprecation warning)
        import pyworld

    return pyworld


def _durations(d: Any, name: str) -> np.ndarray:
    arr = np.asarray(d)
    if arr.ndim != 1 or arr.size == 0:
        raise DataError(f"world_synthesize: '{name}' must be a non-empty 1-D sequence of frame counts")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(np.abs(arr - np.round(arr)) > 1e-6):
        raise DataError(f"world_synthesize: '{name}' must hold whole, non-negative frame counts")
    return np.round(arr).astype(np.int64)


def warp_map(source_durations: np.ndarray, predicted_durations: np.ndarray, sub: int) -> np.ndarray:
    """Source analysis-frame positions (float) for every output analysis frame.

    Token segment i spans source frames ``[S_i, S_i + d_i)`` and output frames ``[P_i, P_i + d̂_i)`` (token
    frames, each ``sub`` analysis frames); output analysis frame k (centre at (k + 0.5)/sub token frames)
    maps linearly within its segment. Returns (sum(d̂)·sub,) positions in source analysis frames.
    """
    src_edges = np.concatenate([[0], np.cumsum(source_durations)]).astype(np.float64)
    out_edges = np.concatenate([[0], np.cumsum(predicted_durations)]).astype(np.float64)
    n_out = int(out_edges[-1]) * sub
    centres = (np.arange(n_out) + 0.5) / sub  # in output token frames
    seg = np.clip(np.searchsorted(out_edges, centres, side="right") - 1, 0, len(predicted_durations) - 1)
    rel = (centres - out_edges[seg]) / np.maximum(predicted_durations[seg], 1)
    src = src_edges[seg] + rel * source_durations[seg]  # in source token frames
    return src * sub - 0.5


def _interp_frames(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Rows of ``x`` (frames, dims) linearly interpolated at fractional positions ``pos``."""
    pos = np.clip(pos, 0.0, x.shape[0] - 1.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, x.shape[0] - 1)
    w = (pos - lo)[:, None]
    return (1.0 - w) * x[lo] + w * x[hi]


def f0_to_analysis_grid(f0: np.ndarray, sub: int) -> np.ndarray:
    """50 Hz F0 (0 = unvoiced) -> ``sub`` times finer grid: log-F0 linear between voiced frame centres,
    voicing of the nearest token frame (so voiced/unvoiced boundaries stay on the token grid)."""
    n = f0.shape[0]
    out_n = n * sub
    voiced = f0 > 0
    fine = np.zeros(out_n, dtype=np.float64)
    if not voiced.any():
        return fine
    centres = np.arange(n) + 0.5
    t = (np.arange(out_n) + 0.5) / sub
    logf = np.interp(t, centres[voiced], np.log(f0[voiced]))
    mask = np.repeat(voiced, sub)
    fine[mask] = np.exp(logf[mask])
    return fine


def world_synthesize(source_wav: np.ndarray, sr: int, source_durations: Sequence[int],
                     predicted_durations: Sequence[int], f0_conv: np.ndarray, frame_period_ms: float = FRAME_PERIOD_MS,
                     f0_method: str = "dio", f0_floor: float = 60.0, f0_ceil: float = 500.0) -> np.ndarray:
    """Re-synthesise ``source_wav`` with predicted token durations and F0 (WORLD vocoder).

    Args:
        source_wav: (N,) mono source waveform (any float/int dtype).
        sr: its sample rate in Hz (the output has the same rate).
        source_durations: (U,) frames of each de-duplicated source token (50 Hz frames; sum <= N·50/sr + 1).
        predicted_durations: (U,) frames of each token in the output (0 drops a token).
        f0_conv: (sum(predicted_durations),) F0 in Hz per output 50 Hz frame, 0 = unvoiced.
        frame_period_ms: WORLD frame period; must divide 20 ms.
        f0_method: ``dio`` (DIO + StoneMask, fast) or ``harvest`` (slower, more robust) for the source analysis.

    Returns:
        (sum(predicted_durations) · sr/50,) float32 waveform at ``sr``.
    """
    pw = _import_pyworld()
    x = np.asarray(source_wav)
    if x.ndim != 1:
        raise AudioError(f"world_synthesize: expected mono (N,) audio, got shape {x.shape}")
    x = x.astype(np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise AudioError("world_synthesize: the source audio is empty or holds NaN/infinite samples")
    sub_f = TOKEN_MS / frame_period_ms
    sub = int(round(sub_f))
    if sub < 1 or abs(sub - sub_f) > 1e-9:
        raise DataError(f"world_synthesize: frame_period_ms={frame_period_ms} must divide {TOKEN_MS:g} ms")
    d_src = _durations(source_durations, "source_durations")
    d_out = _durations(predicted_durations, "predicted_durations")
    if d_src.shape != d_out.shape:
        raise DataError(f"world_synthesize: {d_src.size} source durations but {d_out.size} predicted durations "
                        "(one each per de-duplicated token)")
    f0_conv = np.asarray(f0_conv, dtype=np.float64).reshape(-1)
    n_out = int(d_out.sum())
    if f0_conv.size != n_out:
        raise DataError(f"world_synthesize: f0_conv has {f0_conv.size} frames, the predicted durations sum to {n_out}")
    if not np.all(np.isfinite(f0_conv)) or np.any(f0_conv < 0):
        raise DataError("world_synthesize: f0_conv must be finite and >= 0 (0 = unvoiced)")
    hop = sr * TOKEN_MS / 1000.0
    n_src_frames = int(d_src.sum())
    if n_src_frames > x.size / hop + 1:
        raise DataError(f"world_synthesize: source durations cover {n_src_frames} frames, the audio only "
                        f"{x.size / hop:.1f} ({x.size} samples at {sr} Hz)")
    out_len = int(round(n_out * hop))
    if n_out == 0:
        return np.zeros(0, dtype=np.float32)

    if f0_method == "dio":
        f0, t = pw.dio(x, sr, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period_ms)
        f0 = pw.stonemask(x, f0, t, sr)
    elif f0_method == "harvest":
        f0, t = pw.harvest(x, sr, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period_ms)
    else:
        raise DataError(f"world_synthesize: f0_method {f0_method!r} is not one of dio, harvest")
    sp = pw.cheaptrick(x, f0, t, sr)
    ap = pw.d4c(x, f0, t, sr)
    # WORLD frame j is centred at j·period; token-grid analysis frame m (of token m // sub) is centred at
    # (m + 0.5)·period, i.e. at WORLD position m + 0.5.
    pos = warp_map(d_src, d_out, sub) + 0.5
    log_sp = _interp_frames(np.log(np.maximum(sp, 1e-16)), pos)
    ap_w = np.clip(_interp_frames(ap, pos), 0.0, 1.0)
    f0_fine = f0_to_analysis_grid(f0_conv, sub)
    # WORLD synthesis frame j is centred at j·period: shift the token grid by half a frame to align.
    f0_syn = np.concatenate([f0_fine[:1], f0_fine])
    sp_syn = np.exp(np.concatenate([log_sp[:1], log_sp]))
    ap_syn = np.concatenate([ap_w[:1], ap_w])
    y = pw.synthesize(np.ascontiguousarray(f0_syn), np.ascontiguousarray(sp_syn), np.ascontiguousarray(ap_syn),
                      sr, frame_period_ms)
    # Synthesis frame j sits at j·period; our frame m (centre (m + 0.5)·period) is index m + 1 there, so the
    # output starts half a period early: drop it.
    start = int(round(0.5 * frame_period_ms * sr / 1000.0))
    y = y[start:start + out_len]
    if y.size < out_len:
        y = np.pad(y, (0, out_len - y.size))
    return y.astype(np.float32)

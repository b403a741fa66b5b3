"""``emotk evaluate zest-analysis``: objective evaluation of the S2S-ZEST analysis models on parallel speech
(same speaker, same sentence).

For a pair (source = a neutral utterance, target = an emotional utterance of the same speaker and text) the
bundle analyses the source, takes the target as the reference (:func:`~emotk.models.zest.infer.analyse_reference`)
and converts (:func:`~emotk.models.zest.infer.convert`): predicted unit durations d-hat (clamped) and the
predicted F0 f-hat of the converted utterance (``sum(d-hat)`` frames). The prediction is then compared with what
the speaker actually did in the target:

* **alignment** -- the source and the target are aligned with DTW (:func:`dtw_path`) on per-utterance normalised
  MFCC frames (:func:`dtw_features`, 50 Hz, 320-sample hop). The converted utterance is the source re-timed by the
  known duration warp: source unit u (d_u frames) becomes d-hat_u frames, and inside a unit time is stretched
  linearly (:func:`warp_positions`, the continuous version of ``dup``). Composing the two
  (:func:`compose_alignment`) gives every target frame (a) the converted frame and (b) the source frame aligned
  to it;
* **F0** (:func:`f0_metrics`) over the target's frames: RMSE in Hz and in cents over frames voiced in both the
  prediction and the target, gross pitch error (> 20 %), voicing accuracy (voiced = F0 > ``voiced_threshold``
  Hz for the prediction, > 0 for the target's extracted F0), and the difference of the utterances' mean voiced
  ln F0 (:func:`log_f0_level_error`, each track over its own voiced frames, no alignment);
* **durations** (:func:`duration_metrics`): the target duration of source unit u is the number of target frames
  aligned to the source frames of u (:func:`aligned_durations`); per-unit MSE of d-hat against it (frames^2) and
  the total-length error ``sum(d-hat) - T_target`` in frames.

The **copy-the-source baseline** is the same measures with the source's own F0 track (read through the same DTW
path) and its own durations d, i.e. no conversion at all. **Reconstruction** (:func:`evaluate_reconstruction`)
uses the source as its own reference and compares with its own extracted F0 and durations d (the converted frames
are mapped back to source frames by the known duration warp; no DTW): how well the predictors reproduce what they
were trained to reproduce; the copy baseline is trivially exact there and is reported as a check.

The alignment and metric helpers are pure numpy functions. torch, the bundle and audio I/O are only touched by
:func:`evaluate_pair`, :func:`evaluate_reconstruction`, :func:`evaluate_pairs` and :func:`evaluate_manifest`
(``emotk evaluate zest-analysis``). The bundle is used through its public inference module
(:mod:`emotk.models.zest.infer`) only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emotk.core.audio import HOP, SAMPLE_RATE
from emotk.errors import DataError

METHODS = ("predictor", "copy_source")


# ----------------------------------------------------------------------------------------------- DTW
def local_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances between frames: x (T1, D), y (T2, D) -> (T1, T2) float64."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise DataError(f"DTW: expected (T1, D) and (T2, D) frames, got {x.shape} and {y.shape}")
    sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return np.sqrt(np.maximum(sq, 0.0))


def accumulated_cost(cost: np.ndarray) -> np.ndarray:
    """DTW accumulated cost of a local cost matrix (T1, T2) -> (T1, T2) float64.

    ``D[i, j] = cost[i, j] + min(D[i-1, j-1], D[i-1, j], D[i, j-1])`` with ``D[0, 0] = cost[0, 0]`` (steps
    (1,1), (1,0), (0,1), each weight 1). One row at a time: the chain along a row is a running minimum of
    ``a[k] - P[k]`` plus the prefix sum ``P[j]`` of the row's costs, so the loop is over rows only.
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2 or 0 in c.shape:
        raise DataError(f"DTW: expected a non-empty (T1, T2) cost matrix, got shape {c.shape}")
    n, m = c.shape
    acc = np.empty_like(c)
    acc[0] = np.cumsum(c[0])
    for i in range(1, n):
        prev = acc[i - 1]
        a = c[i] + prev  # from above
        if m > 1:
            a[1:] = c[i, 1:] + np.minimum(prev[1:], prev[:-1])  # from above or the diagonal
        p = np.cumsum(c[i])
        acc[i] = p + np.minimum.accumulate(a - p)  # ... or from the left along this row
    return acc


def dtw_path(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Optimal monotone alignment of frames x (T1, D) and y (T2, D) -> path (L, 2) int64 of (i, j) pairs.

    The path starts at (0, 0), ends at (T1 - 1, T2 - 1) and moves by (1, 1), (1, 0) or (0, 1); it minimises the
    sum of Euclidean frame distances along it (:func:`accumulated_cost`). Ties prefer the diagonal step.
    max(T1, T2) <= L <= T1 + T2 - 1. O(T1 * T2) time and memory (fine for utterances under ~20 s).
    """
    acc = accumulated_cost(local_distances(x, y))
    i, j = acc.shape[0] - 1, acc.shape[1] - 1
    path = [(i, j)]
    while i > 0 or j > 0:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            diag, up, left = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
            if diag <= up and diag <= left:
                i, j = i - 1, j - 1
            elif up <= left:
                i -= 1
            else:
                j -= 1
        path.append((i, j))
    return np.asarray(path[::-1], dtype=np.int64)


def dtw_features(wav: np.ndarray, n_mfcc: int = 20, n_mels: int = 40) -> np.ndarray:
    """Frames for DTW: wav (N,) 16 kHz -> (N // 320, n_mfcc) float32 MFCCs of band-mean-normalised log-mel
    frames (:func:`emotk.features.tokens.utterance_cmvn` ``mean``), each coefficient then standardised over the
    utterance (zero mean, unit variance), so level, channel and speaking effort do not dominate the distance."""
    from emotk.features.tokens import mfcc_frames

    f = mfcc_frames(np.asarray(wav, dtype=np.float32), n_mfcc=n_mfcc, n_mels=n_mels, cmvn="mean").astype(np.float64)
    if len(f) == 0:
        return f.astype(np.float32)
    f = (f - f.mean(0)) / np.maximum(f.std(0), 1e-6)
    return f.astype(np.float32)


# ----------------------------------------------------------------------------------------------- warps
def _check_durations(durations: np.ndarray, what: str) -> np.ndarray:
    d = np.asarray(durations)
    if d.ndim != 1 or d.size == 0:
        raise DataError(f"{what}: expected a non-empty 1-D array of unit durations, got shape {d.shape}")
    if np.any(d < 1) or np.any(np.mod(d, 1) != 0):
        raise DataError(f"{what}: unit durations must be whole numbers of frames >= 1")
    return d.astype(np.int64)


def unit_of_frames(durations: np.ndarray) -> np.ndarray:
    """(U,) unit durations in frames -> (sum d,) int64: the unit index of every frame (``dup(arange(U), d)``)."""
    d = _check_durations(durations, "unit_of_frames")
    return np.repeat(np.arange(len(d), dtype=np.int64), d)


def warp_positions(positions: np.ndarray, durations: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Source frame positions -> converted frame indices under the duration warp d -> d-hat.

    positions: (N,) float source frame indices (frame i covers time [i, i+1) in frames; fractional positions come
    from averaging); durations d (U,) and predicted d-hat (U,) int frames >= 1. Unit u occupies source time
    [S_u, S_{u+1}) and converted time [C_u, C_{u+1}) (S, C cumulative sums); the map is linear inside each unit,
    applied to the frame centre ``position + 0.5``. Returns (N,) int64 converted frame indices in
    [0, sum(d-hat) - 1]; an integer source frame of unit u always lands on a converted frame of unit u, so the
    token there is the same (``dup(t', d-hat)[k] == dup(t', d)[i]``). d == d-hat gives the identity.
    """
    d = _check_durations(durations, "warp_positions: durations")
    dh = _check_durations(predicted, "warp_positions: predicted durations")
    if d.shape != dh.shape:
        raise DataError(f"warp_positions: {d.shape} source durations but {dh.shape} predicted durations")
    s = np.concatenate([[0], np.cumsum(d)]).astype(np.float64)
    c = np.concatenate([[0], np.cumsum(dh)]).astype(np.float64)
    y = np.interp(np.asarray(positions, dtype=np.float64) + 0.5, s, c)
    return np.clip(np.floor(y), 0, c[-1] - 1).astype(np.int64)


def source_to_converted(durations: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(sum d,) int64: the converted frame that carries each source frame (:func:`warp_positions` of 0..T-1)."""
    n = int(np.sum(_check_durations(durations, "source_to_converted")))
    return warp_positions(np.arange(n, dtype=np.float64), durations, predicted)


def target_positions(path: np.ndarray, n_target: int) -> np.ndarray:
    """Mean source frame index of each target frame along a DTW path (L, 2) of (source, target) -> (n_target,)."""
    p = np.asarray(path, dtype=np.int64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise DataError(f"target_positions: expected an (L, 2) path, got shape {p.shape}")
    counts = np.bincount(p[:, 1], minlength=n_target)
    if len(counts) != n_target or np.any(counts == 0):
        raise DataError(f"target_positions: the path does not cover target frames 0..{n_target - 1} exactly")
    return np.bincount(p[:, 1], weights=p[:, 0].astype(np.float64), minlength=n_target) / counts


def compose_alignment(path: np.ndarray, durations: np.ndarray, predicted: np.ndarray,
                      n_target: int) -> tuple[np.ndarray, np.ndarray]:
    """DTW path (source, target) composed with the duration warp -> (source_idx, converted_idx), each (n_target,)
    int64: for target frame j, the source frame aligned to it (mean aligned source position, rounded) and the
    converted frame that carries that source position (:func:`warp_positions` of the unrounded mean)."""
    pos = target_positions(path, n_target)
    n_source = int(np.sum(_check_durations(durations, "compose_alignment")))
    source_idx = np.clip(np.floor(pos + 0.5), 0, n_source - 1).astype(np.int64)
    return source_idx, warp_positions(pos, durations, predicted)


def aligned_durations(source_idx: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """Target duration of every source unit: (n_target,) aligned source frame per target frame and d (U,) ->
    (U,) int64, the number of target frames whose aligned source frame lies in unit u (sums to n_target; a unit
    the target skipped gets 0)."""
    units = unit_of_frames(durations)
    idx = np.asarray(source_idx, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(units)):
        raise DataError(f"aligned_durations: source frame index out of range 0..{len(units) - 1}")
    return np.bincount(units[idx], minlength=len(durations)).astype(np.int64)


# ----------------------------------------------------------------------------------------------- metrics
def _r(x: float | None, digits: int = 4) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def f0_metrics(predicted: np.ndarray, target: np.ndarray, voiced_threshold: float = 0.0) -> dict[str, Any]:
    """Frame-wise F0 measures of a predicted track against a target track of equal length (T,), both in Hz.

    Voiced: ``predicted > voiced_threshold`` and ``target > 0`` (extracted F0 is 0 when unvoiced). Returns
    ``frames``, ``voiced_target`` / ``voiced_predicted`` / ``voiced_both`` (frame counts), ``voicing_accuracy``
    (fraction of frames whose voiced/unvoiced state agrees), and over the frames voiced in both: ``f0_rmse_hz``,
    ``f0_rmse_cents`` (1200 log2(pred / target)), ``gross_pitch_error`` (fraction with |pred - target| > 0.2
    target). Measures without any frame to average over are None. Pooling = calling it on concatenated tracks.
    """
    p = np.asarray(predicted, dtype=np.float64).reshape(-1)
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise DataError(f"f0_metrics: predicted track has {p.size} frames, target {t.size}")
    vp, vt = p > voiced_threshold, t > 0
    both = vp & vt
    out: dict[str, Any] = {"frames": int(p.size), "voiced_target": int(vt.sum()), "voiced_predicted": int(vp.sum()),
                           "voiced_both": int(both.sum()),
                           "voicing_accuracy": float(np.mean(vp == vt)) if p.size else None,
                           "f0_rmse_hz": None, "f0_rmse_cents": None, "gross_pitch_error": None}
    if both.any():
        pb, tb = p[both], t[both]
        out["f0_rmse_hz"] = float(np.sqrt(np.mean((pb - tb) ** 2)))
        out["f0_rmse_cents"] = float(np.sqrt(np.mean((1200.0 * np.log2(pb / tb)) ** 2)))
        out["gross_pitch_error"] = float(np.mean(np.abs(pb - tb) > 0.2 * tb))
    return out


def mean_log_f0(f0: np.ndarray, voiced_threshold: float = 0.0) -> float | None:
    """Mean of ln(F0 / Hz) over the frames with F0 > ``voiced_threshold`` of a (T,) track; None if none."""
    f = np.asarray(f0, dtype=np.float64).reshape(-1)
    v = f[f > max(voiced_threshold, 0.0)]
    return float(np.log(v).mean()) if v.size else None


def log_f0_level_error(predicted: np.ndarray, target: np.ndarray, voiced_threshold: float = 0.0) -> float | None:
    """Mean voiced ln F0 of ``predicted`` minus that of ``target`` (each over its own voiced frames, any lengths;
    prediction voiced above ``voiced_threshold``, target above 0). Positive = predicted too high; x 1200 / ln 2
    gives cents. None when either track has no voiced frame."""
    a, b = mean_log_f0(predicted, voiced_threshold), mean_log_f0(target, 0.0)
    return None if a is None or b is None else a - b


def duration_metrics(predicted: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    """Per-unit durations (U,) in frames, predicted vs target -> ``units``, ``duration_mse`` (frames^2),
    ``duration_mae`` (frames), ``length_error`` = sum(predicted) - sum(target) (frames, signed). Pooling the
    per-unit measures = calling it on concatenated units."""
    p = np.asarray(predicted, dtype=np.float64).reshape(-1)
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise DataError(f"duration_metrics: {p.size} predicted units, {t.size} target units")
    if not p.size:
        return {"units": 0, "duration_mse": None, "duration_mae": None, "length_error": 0.0}
    e = p - t
    return {"units": int(p.size), "duration_mse": float(np.mean(e * e)), "duration_mae": float(np.mean(np.abs(e))),
            "length_error": float(e.sum())}


# ----------------------------------------------------------------------------------------------- pairs
@dataclass
class Tracks:
    """What one method (predictor or copy-source) says about one utterance, aligned to the reference frames.

    f0 (T,) Hz on the reference frames; reference_f0 (T,) Hz; durations / reference_durations (U,) frames;
    native_f0: the method's own F0 track (any length) for the level error; durations_raw: the predictor's
    unclamped fractional durations (U,) or None.
    """

    f0: np.ndarray
    reference_f0: np.ndarray
    durations: np.ndarray
    reference_durations: np.ndarray
    native_f0: np.ndarray
    reference_native_f0: np.ndarray
    durations_raw: np.ndarray | None = None


@dataclass
class PairResult:
    """One evaluated pair: ids and labels (``info``) plus the per-method :class:`Tracks`."""

    info: dict[str, Any]
    methods: dict[str, Tracks] = field(default_factory=dict)


def align_pair(source_features: np.ndarray, target_features: np.ndarray, durations: np.ndarray,
               predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Pure alignment of one pair: DTW of source (T_s, D) and target (T_t, D) frames, composed with d -> d-hat.

    Returns ``path`` (L, 2), ``source_idx`` / ``converted_idx`` (T_t,) and ``target_durations`` (U,).
    """
    d = _check_durations(durations, "align_pair")
    if len(source_features) != int(d.sum()):
        raise DataError(f"align_pair: {len(source_features)} source frames but durations sum to {int(d.sum())}")
    path = dtw_path(source_features, target_features)
    src_idx, conv_idx = compose_alignment(path, d, predicted, len(target_features))
    return {"path": path, "source_idx": src_idx, "converted_idx": conv_idx,
            "target_durations": aligned_durations(src_idx, d)}


def pair_tracks(source_f0: np.ndarray, durations: np.ndarray, converted_f0: np.ndarray, predicted: np.ndarray,
                target_f0: np.ndarray, alignment: dict[str, np.ndarray],
                predicted_raw: np.ndarray | None = None) -> dict[str, Tracks]:
    """Per-method tracks of a conversion pair from its :func:`align_pair` result (pure).

    source_f0 (T_s,), durations d (U,), converted_f0 (sum d-hat,), predicted d-hat (U,), target_f0 (T_t,), Hz
    and frames. ``predictor``: f-hat at the converted frame of each target frame, d-hat; ``copy_source``: the
    source's F0 at the aligned source frame, d.
    """
    src_f0, conv_f0, tgt_f0 = (np.asarray(x, dtype=np.float64) for x in (source_f0, converted_f0, target_f0))
    if len(conv_f0) != int(np.sum(predicted)):
        raise DataError(f"pair_tracks: {len(conv_f0)} converted F0 frames but d-hat sums to {int(np.sum(predicted))}")
    td = alignment["target_durations"]
    return {
        "predictor": Tracks(conv_f0[alignment["converted_idx"]], tgt_f0, np.asarray(predicted), td, conv_f0, tgt_f0,
                            None if predicted_raw is None else np.asarray(predicted_raw, dtype=np.float64)),
        "copy_source": Tracks(src_f0[alignment["source_idx"]], tgt_f0, np.asarray(durations), td, src_f0, tgt_f0),
    }


def reconstruction_tracks(source_f0: np.ndarray, durations: np.ndarray, converted_f0: np.ndarray,
                          predicted: np.ndarray, predicted_raw: np.ndarray | None = None) -> dict[str, Tracks]:
    """Per-method tracks of a reconstruction (the source as its own reference), on the source's frames (pure):
    ``predictor`` reads f-hat through the duration warp (:func:`source_to_converted`) and compares d-hat with d;
    ``copy_source`` is the source itself (exact by construction)."""
    src_f0, conv_f0 = np.asarray(source_f0, dtype=np.float64), np.asarray(converted_f0, dtype=np.float64)
    d = np.asarray(durations)
    if len(src_f0) != int(d.sum()) or len(conv_f0) != int(np.sum(predicted)):
        raise DataError("reconstruction_tracks: track lengths do not match the durations")
    k = source_to_converted(d, predicted)
    return {
        "predictor": Tracks(conv_f0[k], src_f0, np.asarray(predicted), d, conv_f0, src_f0,
                            None if predicted_raw is None else np.asarray(predicted_raw, dtype=np.float64)),
        "copy_source": Tracks(src_f0.copy(), src_f0, d.copy(), d, src_f0, src_f0),
    }


def method_metrics(tracks: Sequence[Tracks], voiced_threshold: float = 0.0) -> dict[str, Any]:
    """Pooled measures of one method over utterances: F0 and per-unit duration measures over all frames / units
    (:func:`f0_metrics`, :func:`duration_metrics` on the concatenations), the total-length error (frames) as mean
    and mean absolute value over utterances, and the mean voiced ln F0 error (:func:`log_f0_level_error`) as
    mean and mean absolute value over utterances where both tracks are voiced."""
    tracks = list(tracks)
    if not tracks:
        return {"utterances": 0}
    f0 = f0_metrics(np.concatenate([t.f0 for t in tracks]), np.concatenate([t.reference_f0 for t in tracks]),
                    voiced_threshold)
    dur = duration_metrics(np.concatenate([t.durations for t in tracks]),
                           np.concatenate([t.reference_durations for t in tracks]))
    lengths = [float(np.sum(t.durations) - np.sum(t.reference_durations)) for t in tracks]
    levels = [x for x in (log_f0_level_error(t.native_f0, t.reference_native_f0, voiced_threshold) for t in tracks)
              if x is not None]
    out: dict[str, Any] = {
        "utterances": len(tracks),
        **{k: (_r(v) if isinstance(v, float) else v) for k, v in f0.items()},
        "units": dur["units"], "duration_mse": _r(dur["duration_mse"]), "duration_mae": _r(dur["duration_mae"]),
        "length_error_mean": _r(float(np.mean(lengths))), "length_error_mean_abs": _r(float(np.mean(np.abs(lengths)))),
        "log_f0_level_error_mean": _r(float(np.mean(levels))) if levels else None,
        "log_f0_level_error_mean_abs": _r(float(np.mean(np.abs(levels)))) if levels else None,
        "log_f0_level_utterances": len(levels),
    }
    raws = [t for t in tracks if t.durations_raw is not None]
    if raws and len(raws) == len(tracks):
        raw = duration_metrics(np.concatenate([t.durations_raw for t in raws]),
                               np.concatenate([t.reference_durations for t in raws]))
        out["duration_mse_unclamped"] = _r(raw["duration_mse"])
    return out


def utterance_row(result: PairResult, voiced_threshold: float = 0.0) -> dict[str, Any]:
    """JSON-ready row of one pair: its ``info`` plus, per method, the single-utterance measures."""
    row = dict(result.info)
    for name, t in result.methods.items():
        m = method_metrics([t], voiced_threshold)
        row[name] = {"voicing_accuracy": m["voicing_accuracy"], "f0_rmse_hz": m["f0_rmse_hz"],
                     "f0_rmse_cents": m["f0_rmse_cents"], "gross_pitch_error": m["gross_pitch_error"],
                     "voiced_both": m["voiced_both"], "duration_mse": m["duration_mse"],
                     "length_error": m["length_error_mean"], "log_f0_level_error": m["log_f0_level_error_mean"]}
    return row


def summarise(results: Sequence[PairResult], voiced_threshold: float = 0.0,
              group_by: str | None = None) -> dict[str, Any]:
    """Pooled :func:`method_metrics` per method over ``results``; with ``group_by`` (an ``info`` key, e.g.
    ``emotion``) also ``by_<key>`` with the same per group (groups sorted)."""
    out: dict[str, Any] = {"utterances": len(results)}
    for name in METHODS:
        ts = [r.methods[name] for r in results if name in r.methods]
        if ts:
            out[name] = method_metrics(ts, voiced_threshold)
    if group_by:
        groups = sorted({str(r.info.get(group_by)) for r in results})
        out[f"by_{group_by}"] = {g: summarise([r for r in results if str(r.info.get(group_by)) == g],
                                              voiced_threshold) for g in groups}
    return out


# ----------------------------------------------------------------------------------------------- planning
def _take_key(rec: dict[str, Any]) -> tuple:
    rep = rec.get("repetition")
    return (str(rec.get("intensity", "normal")) != "normal", rep != 1 and str(rep) != "1", str(rep), rec["id"])


def plan_parallel_pairs(records: Iterable[dict[str, Any]], speakers: Iterable[str] | None = None, *,
                        neutral: str = "neutral", text_field: str = "text", speaker_field: str = "speaker",
                        emotion_field: str = "emotion") -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(source, target) record pairs: for every speaker (of ``speakers``, default all) and text, the neutral take
    as source and one take of every other emotion as target. One take per (speaker, text, emotion): intensity
    ``normal`` first, then repetition 1, then the smallest id. Sorted by speaker, text, target emotion.
    """
    keep = None if speakers is None else {str(s) for s in speakers}
    takes: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in records:
        spk, text, emo = str(r.get(speaker_field)), r.get(text_field), r.get(emotion_field)
        if (keep is not None and spk not in keep) or text in (None, "") or emo in (None, ""):
            continue
        key = (spk, str(text), str(emo))
        if key not in takes or _take_key(r) < _take_key(takes[key]):
            takes[key] = r
    pairs = []
    for (spk, text, emo) in sorted(takes):
        if emo == neutral:
            continue
        src = takes.get((spk, text, neutral))
        if src is not None:
            pairs.append((src, takes[(spk, text, emo)]))
    return pairs


# ----------------------------------------------------------------------------------------------- with a bundle
def _f0_config(bundle: Any) -> Any:
    from emotk.features.f0 import F0Config

    c = bundle.config.f0
    return F0Config(backend=c.backend, alignment=c.alignment)


def _trim(wav: np.ndarray) -> np.ndarray:
    from emotk.features.frames import num_frames

    return wav[: num_frames(len(wav)) * HOP]


def _top_emotion(bundle: Any, ref: Any) -> str:
    return str(bundle.emotions[int(np.argmax(ref.emotion_probs))])


def evaluate_reconstruction(bundle: Any, source: Any, info: dict[str, Any] | None = None) -> PairResult:
    """The source (a :class:`~emotk.models.zest.infer.SourceAnalysis`) converted with itself as the reference,
    compared with its own extracted F0 and durations (:func:`reconstruction_tracks`)."""
    from emotk.models.zest import infer

    ref = infer.analyse_reference(bundle, source.wav)
    conv = infer.convert(bundle, source, ref)
    res = PairResult({**(info or {}), "frames_source": len(source.tokens),
                      "frames_converted": len(conv.tokens), "units": len(source.units),
                      "predicted_emotion": _top_emotion(bundle, ref)})
    res.methods = reconstruction_tracks(source.f0, source.durations, conv.f0, conv.durations, conv.predicted)
    return res


def evaluate_pair(bundle: Any, source: Any, target_wav: np.ndarray, info: dict[str, Any] | None = None,
                  source_features: np.ndarray | None = None) -> PairResult:
    """Convert ``source`` (a SourceAnalysis) with the target waveform (N,) 16 kHz as the reference and compare
    with the target: DTW alignment (:func:`align_pair`), per-method tracks (:func:`pair_tracks`).

    info: labels copied into the result (ids, speaker, emotion, ...); source_features: the source's
    :func:`dtw_features` when already computed. Adds ``frames_*``, ``units``, ``dtw_path_length``,
    ``predicted_emotion`` (the emotion head's top class for the target) to ``info``.
    """
    from emotk.features.f0 import extract_f0
    from emotk.models.zest import infer

    wav = _trim(infer.check_input(target_wav, "target"))
    ref = infer.analyse_reference(bundle, wav)
    conv = infer.convert(bundle, source, ref)
    tgt_f0 = extract_f0(wav, SAMPLE_RATE, _f0_config(bundle))
    src_feat = dtw_features(source.wav) if source_features is None else source_features
    al = align_pair(src_feat, dtw_features(wav), source.durations, conv.durations)
    res = PairResult({**(info or {}), "frames_source": len(source.tokens),
                      "frames_converted": len(conv.tokens), "frames_target": len(tgt_f0),
                      "units": len(source.units), "dtw_path_length": len(al["path"]),
                      "predicted_emotion": _top_emotion(bundle, ref)})
    res.methods = pair_tracks(source.f0, source.durations, conv.f0, conv.durations, tgt_f0, al, conv.predicted)
    return res


def evaluate_pairs(bundle: Any, pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]],
                   load: Callable[[dict[str, Any]], np.ndarray], *, voiced_threshold: float = 0.0,
                   emotion_field: str = "emotion", speaker_field: str = "speaker",
                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Evaluate a loaded bundle on (source record, target record) pairs; ``load(record)`` -> (N,) 16 kHz audio.

    Every distinct source is analysed once and also reconstructed (itself as the reference). Returns a JSON-ready
    dict: ``conversion`` (pooled per method, and ``by_emotion``), ``reconstruction`` (pooled per method),
    ``emotion_accuracy`` (the emotion head on the targets: top class == the target's label), the
    ``voiced_threshold_hz`` used, and per-utterance ``rows`` / ``reconstruction_rows``.
    """
    from emotk.models.zest import infer

    sources: dict[str, tuple[Any, np.ndarray]] = {}
    results, recon = [], []
    for n, (src_rec, tgt_rec) in enumerate(pairs):
        sid = src_rec["id"]
        if sid not in sources:
            src = infer.analyse_source(bundle, infer.check_input(load(src_rec), sid))
            sources[sid] = (src, dtw_features(src.wav))
            recon.append(evaluate_reconstruction(bundle, src, {"source": sid, "speaker": src_rec.get(speaker_field),
                                                               "emotion": src_rec.get(emotion_field)}))
        src, feats = sources[sid]
        info = {"source": sid, "target": tgt_rec["id"], "speaker": tgt_rec.get(speaker_field),
                "emotion": tgt_rec.get(emotion_field)}
        results.append(evaluate_pair(bundle, src, infer.check_input(load(tgt_rec), tgt_rec["id"]), info, feats))
        if progress is not None:
            progress(n + 1, len(pairs))
    judged = [r for r in results if r.info.get("emotion") is not None]
    acc = float(np.mean([r.info["predicted_emotion"] == str(r.info["emotion"]) for r in judged])) if judged else None
    return {
        "pairs": len(results), "sources": len(recon), "voiced_threshold_hz": float(voiced_threshold),
        "conversion": summarise(results, voiced_threshold, group_by="emotion"),
        "reconstruction": summarise(recon, voiced_threshold),
        "emotion_accuracy": _r(acc),
        "rows": [utterance_row(r, voiced_threshold) for r in results],
        "reconstruction_rows": [utterance_row(r, voiced_threshold) for r in recon],
    }


def evaluate_manifest(bundle: Any, manifest: Any, *, speakers: Iterable[str] | None = None, text_field: str = "text",
                      limit: int | None = None, voiced_threshold: float = 60.0, roots: dict[str, str] | None = None,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Parallel pairs of ``manifest`` (a path or Manifest; :func:`plan_parallel_pairs` over ``speakers``, default
    all), at most ``limit`` of them evenly spaced (:func:`emotk.eval.pairs.spread`), evaluated with a loaded
    bundle (:func:`evaluate_pairs`). Returns evaluate_pairs' dict plus ``pairs_planned`` and ``headline`` (the
    pooled conversion F0 / duration measures per method). DataError when the manifest yields no pair."""
    from emotk.data.audio import load_audio
    from emotk.data.manifest import Manifest
    from emotk.eval.pairs import spread

    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest, roots=roots)
    m.require_audio("transfer analysis")
    planned = plan_parallel_pairs(m, speakers, text_field=text_field)
    if not planned:
        raise DataError(f"{m.path or 'manifest'}: no parallel pairs (a neutral and an emotional take of the same "
                        f"speaker and '{text_field}')")
    pairs = spread(planned, limit or None)
    out = evaluate_pairs(bundle, pairs, lambda r: load_audio(m.resolve_path(r)), voiced_threshold=voiced_threshold,
                         progress=progress)
    return {"headline": headline(out["conversion"]), "pairs_planned": len(planned), **out}


HEADLINE = ("f0_rmse_hz", "f0_rmse_cents", "voicing_accuracy", "duration_mse", "length_error_mean_abs",
            "log_f0_level_error_mean_abs")


def headline(conversion: dict[str, Any]) -> dict[str, Any]:
    """The pooled conversion measures of the report's headline, per method (``conversion`` of evaluate_pairs)."""
    return {m: {k: conversion[m].get(k) for k in HEADLINE} for m in METHODS if m in conversion}

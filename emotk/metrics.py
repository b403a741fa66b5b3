"""Classification and regression metrics with scikit-learn names and semantics (numpy only; no sklearn import).

Every classification metric is computed from one confusion matrix, so all numbers in a report agree.
Inputs are 1-D label arrays of class indices *or* strings. ``labels`` fixes the class list and its order;
without it, the sorted union of ``y_true`` and ``y_pred`` is used (as scikit-learn does). A value outside
``labels`` is a DataError (scikit-learn would silently drop it). Undefined ratios (a class never predicted,
or never present) count as 0, like scikit-learn's ``zero_division=0``; so a class listed in ``labels`` that
occurs in neither array contributes an F1 of 0 to the macro average, exactly as in scikit-learn.

Names: ``accuracy`` (a.k.a. WA), ``balanced_accuracy`` (UAR, a.k.a. UA: mean recall over the classes present
in ``y_true``), ``macro_f1``, ``weighted_f1`` (support-weighted, thesis Eq. 3.4). WA/UA appear only as aliases.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from emotk.core.io import atomic_path
from emotk.errors import DataError

METRIC_ALIASES = {"WA": "accuracy", "UA": "balanced_accuracy", "UAR": "balanced_accuracy"}


def resolve_metric_name(name: str) -> str:
    """``"UA"`` -> ``"balanced_accuracy"``, ``"WA"`` -> ``"accuracy"``; other names unchanged."""
    return METRIC_ALIASES.get(name, name)


# --------------------------------------------------------------------------------------------- encoding


def _is_int_array(a: np.ndarray) -> bool:
    return a.dtype.kind in "iub"


def _encode(y_true: Any, y_pred: Any, labels: Sequence[Any] | None) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """-> (true indices ``(N,)``, predicted indices ``(N,)``, class list) with indices into the class list.

    Integer arrays with a list of *string* labels are read as indices into that list.
    """
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1:
        raise DataError(f"labels must be 1-D arrays, got shapes {t.shape} and {p.shape}")
    if t.shape[0] != p.shape[0]:
        raise DataError(f"y_true has {t.shape[0]} labels but y_pred has {p.shape[0]}")
    if t.shape[0] == 0:
        raise DataError("no samples to score (empty label arrays)")
    if labels is None:
        if (t.dtype.kind in "US") != (p.dtype.kind in "US") or t.dtype.kind == "O" or p.dtype.kind == "O":
            raise DataError("y_true and y_pred mix label types; pass both as strings or both as integers")
        classes = [c.item() if hasattr(c, "item") else c for c in np.unique(np.concatenate([t, p]))]
    else:
        classes = list(labels)
        if len(set(classes)) != len(classes):
            raise DataError(f"duplicate entries in labels {classes}")
        if not classes:
            raise DataError("labels is empty")
    index_mode = labels is not None and all(isinstance(c, str) for c in classes) and _is_int_array(t) \
        and _is_int_array(p)
    if index_mode:
        for name, a in (("y_true", t), ("y_pred", p)):
            bad = a[(a < 0) | (a >= len(classes))]
            if bad.size:
                raise DataError(f"{name} holds class index {bad[0]} outside [0, {len(classes)}) for labels {classes}")
        return t.astype(np.int64), p.astype(np.int64), classes
    lookup = {c: i for i, c in enumerate(classes)}
    out = []
    for name, a in (("y_true", t), ("y_pred", p)):
        try:
            out.append(np.fromiter((lookup[v.item() if hasattr(v, "item") else v] for v in a), dtype=np.int64,
                                   count=a.shape[0]))
        except KeyError as e:
            raise DataError(f"{name} holds label {e.args[0]!r}, which is not in labels {classes}") from None
    return out[0], out[1], classes


def _confusion(t: np.ndarray, p: np.ndarray, c: int) -> np.ndarray:
    return np.bincount(t * c + p, minlength=c * c).reshape(c, c).astype(np.int64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(cm).astype(np.float64)
    pred_count, support = cm.sum(axis=0), cm.sum(axis=1)
    fp, fn = pred_count - tp, support - tp
    return {"precision": _safe_div(tp, pred_count), "recall": _safe_div(tp, support),
            "f1": _safe_div(2 * tp, 2 * tp + fp + fn), "support": support.astype(np.int64)}


# ------------------------------------------------------------------------------------------ classification


def confusion_matrix(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None) -> np.ndarray:
    """``(C, C)`` int64 counts, rows = true class, columns = predicted class, in ``labels`` order."""
    t, p, classes = _encode(y_true, y_pred, labels)
    return _confusion(t, p, len(classes))


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of exact matches (weighted accuracy, WA)."""
    t, p, _ = _encode(y_true, y_pred, None)
    return float(np.mean(t == p))


def balanced_accuracy(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (UAR, unweighted accuracy UA)."""
    t, p, classes = _encode(y_true, y_pred, labels)
    cm = _confusion(t, p, len(classes))
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def precision_recall_f1_support(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None) -> dict[str, Any]:
    """Per-class scores: ``{"labels": [C], "precision", "recall", "f1": float64 (C,), "support": int64 (C,)}``."""
    t, p, classes = _encode(y_true, y_pred, labels)
    return {"labels": classes, **_per_class(_confusion(t, p, len(classes)))}


def macro_f1(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None) -> float:
    """Unweighted mean of per-class F1 over ``labels`` (default: classes seen in either array)."""
    return float(np.mean(precision_recall_f1_support(y_true, y_pred, labels)["f1"]))


def weighted_f1(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None) -> float:
    """Per-class F1 averaged with the true-class supports as weights (Eq. 3.4)."""
    s = precision_recall_f1_support(y_true, y_pred, labels)
    total = s["support"].sum()
    return float((s["f1"] * s["support"]).sum() / total) if total > 0 else 0.0


def classification_report(y_true: Any, y_pred: Any, labels: Sequence[str]) -> dict[str, Any]:
    """Everything a SER/ERC result reports, as a JSON-ready dict.

    ``y_true``/``y_pred``: ``(N,)`` class indices into ``labels`` or class names. Returns
    ``{"classes", "num_samples", "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1",
    "macro_precision", "macro_recall", "support": [C], "per_class": {name: {"precision", "recall", "f1",
    "support"}}, "confusion_matrix": [[C]] (rows true), "aliases": {"WA": "accuracy", "UA": ...}}``.
    Every class of ``labels`` is scored, also one absent from this split (it then counts 0 in the macro
    averages, as in scikit-learn).
    """
    t, p, classes = _encode(y_true, y_pred, list(labels))
    cm = _confusion(t, p, len(classes))
    s = _per_class(cm)
    support = s["support"]
    present = support > 0
    names = [str(c) for c in classes]
    return {
        "classes": names,
        "num_samples": int(t.shape[0]),
        "accuracy": float(np.mean(t == p)),
        "balanced_accuracy": float(np.mean(s["recall"][present])),
        "macro_f1": float(np.mean(s["f1"])),
        "weighted_f1": float((s["f1"] * support).sum() / support.sum()),
        "macro_precision": float(np.mean(s["precision"])),
        "macro_recall": float(np.mean(s["recall"])),
        "support": [int(x) for x in support],
        "per_class": {n: {"precision": float(s["precision"][i]), "recall": float(s["recall"][i]),
                          "f1": float(s["f1"][i]), "support": int(support[i])} for i, n in enumerate(names)},
        "confusion_matrix": cm.tolist(),
        "aliases": {k: v for k, v in METRIC_ALIASES.items() if k in ("WA", "UA")},
    }


# ---------------------------------------------------------------------------------------------- regression


def _pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if x.shape != y.shape:
        raise DataError(f"prediction shape {x.shape} does not match target shape {y.shape}")
    if x.shape[0] == 0:
        raise DataError("no samples to score (empty arrays)")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise DataError("predictions or targets contain NaN/inf")
    return x, y


def ccc(pred: Any, target: Any) -> float | np.ndarray:
    """Concordance correlation coefficient (Eq. 3.5) with population moments.

    ``(N,)`` -> float; ``(N, D)`` -> ``(D,)`` array (one per column). NaN where undefined (both constant).
    """
    x, y = _pair(pred, target)
    mx, my = x.mean(axis=0), y.mean(axis=0)
    cov = ((x - mx) * (y - my)).mean(axis=0)
    den = x.var(axis=0) + y.var(axis=0) + (mx - my) ** 2
    out = np.divide(2 * cov, den, out=np.full_like(np.asarray(cov, dtype=np.float64), np.nan), where=den > 0)
    return float(out) if x.ndim == 1 else out


def pearson(pred: Any, target: Any) -> float | np.ndarray:
    """Pearson correlation; ``(N,)`` -> float, ``(N, D)`` -> ``(D,)``. NaN where a series is constant."""
    x, y = _pair(pred, target)
    dx, dy = x - x.mean(axis=0), y - y.mean(axis=0)
    den = np.sqrt((dx * dx).sum(axis=0) * (dy * dy).sum(axis=0))
    out = np.divide((dx * dy).sum(axis=0), den, out=np.full_like(np.asarray(den, dtype=np.float64), np.nan),
                    where=den > 0)
    return float(out) if x.ndim == 1 else out


def regression_report(pred: Any, target: Any, names: Sequence[str] = ("valence", "arousal", "dominance")
                      ) -> dict[str, Any]:
    """Per-dimension CCC, Pearson, MSE and MAE of ``pred``/``target`` ``(N, D)`` (or ``(N,)`` with one name).

    Returns ``{"names", "num_samples", "ccc": {name: v}, "pearson": {...}, "mse": {...}, "mae": {...},
    "ccc_mean", "pearson_mean"}`` (NaN for undefined correlations).
    """
    x, y = _pair(pred, target)
    if x.ndim == 1:
        x, y = x[:, None], y[:, None]
    names = list(names)
    if x.ndim != 2 or x.shape[1] != len(names):
        dims = x.shape[1] if x.ndim == 2 else x.shape
        raise DataError(f"{dims} prediction dimensions but {len(names)} names {names}")
    c, r = np.atleast_1d(ccc(x, y)), np.atleast_1d(pearson(x, y))
    mse, mae = ((x - y) ** 2).mean(axis=0), np.abs(x - y).mean(axis=0)
    return {
        "names": names,
        "num_samples": int(x.shape[0]),
        "ccc": {n: float(c[i]) for i, n in enumerate(names)},
        "pearson": {n: float(r[i]) for i, n in enumerate(names)},
        "mse": {n: float(mse[i]) for i, n in enumerate(names)},
        "mae": {n: float(mae[i]) for i, n in enumerate(names)},
        "ccc_mean": float(np.mean(c)),
        "pearson_mean": float(np.mean(r)),
    }


# --------------------------------------------------------------------------------------------- aggregation


def _numeric_leaves(obj: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            yield from _numeric_leaves(v, key + ".")
        elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
            yield key


def _lookup(report: Mapping[str, Any], key: str, i: int) -> float:
    node: Any = report
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise DataError(f"report {i} has no metric '{key}'")
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, (int, float, np.integer, np.floating)):
        raise DataError(f"report {i}: '{key}' is not a number")
    return float(node)


def aggregate(reports: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None, ddof: int = 0
              ) -> dict[str, dict[str, Any]]:
    """Mean and standard deviation of metrics over folds or seeds.

    ``reports``: dicts from :func:`classification_report` / :func:`regression_report` (or any nested dict
    of numbers). ``keys``: metric names, dotted for nested values (``"ccc.valence"``, ``"per_class.sad.f1"``)
    and aliases allowed (``"UA"``); default: every numeric leaf of the first report. Returns
    ``{key: {"mean", "std", "values": [...]}}``. ``std`` is the population standard deviation
    (``ddof=0``, numpy's default) unless ``ddof`` says otherwise; with one report it is 0.
    """
    if not reports:
        raise DataError("aggregate: no reports given")
    names = list(keys) if keys is not None else list(_numeric_leaves(reports[0]))
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        key = resolve_metric_name(name)
        values = [_lookup(r, key, i) for i, r in enumerate(reports)]
        arr = np.asarray(values, dtype=np.float64)
        std = float(arr.std(ddof=ddof)) if arr.size > ddof else math.nan
        out[name] = {"mean": float(arr.mean()), "std": std, "values": values}
    return out


# ------------------------------------------------------------------------------------------------- plotting


def confusion_matrix_png(cm: Any, labels: Sequence[str], path: str | os.PathLike, normalize: bool = True,
                         title: str | None = None) -> Path:
    """Write confusion matrix ``cm`` ``(C, C)`` (rows true) as a PNG heat map with per-cell values.

    ``normalize`` divides each row by its support (rows of a class absent from the split stay 0), so the
    diagonal shows per-class recall. The write is atomic. Returns the path written.
    """
    m = np.asarray(cm, dtype=np.float64)
    names = [str(x) for x in labels]
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(names):
        raise DataError(f"confusion matrix of shape {m.shape} does not fit {len(names)} labels")
    if normalize:
        m = _safe_div(m, m.sum(axis=1, keepdims=True) * np.ones_like(m))
    # Object-oriented Agg canvas: no pyplot, so a user's interactive backend is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    c = len(names)
    size = max(4.0, 0.6 * c + 2.0)
    fig = Figure(figsize=(size, size * 0.9))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(m, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(1.0, float(m.max())))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(c), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(c), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    threshold = (1.0 if normalize else max(1.0, float(m.max()))) / 2
    for i in range(c):
        for j in range(c):
            text = f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if m[i, j] > threshold else "black")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path

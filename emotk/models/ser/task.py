"""The SER TrainTask: cached upstream features -> SUPERB downstream, for one (fold, seed).

Datasets read ``hidden`` (L, T, D) arrays from the feature cache (:mod:`.features`); :meth:`SerTask.collate`
pads them to (B, L, T, D) with lengths, so padding is masked by the pooling. Validation metrics come from
:mod:`emotk.metrics` with scikit-learn names: ``weighted_f1``, ``balanced_accuracy`` (UAR), ``macro_f1``,
``accuracy`` and ``loss`` (classification); ``ccc`` (mean over targets), ``ccc_<target>``, ``pearson`` and
``loss`` (regression). The best checkpoint is chosen by ``train.select_metric`` (weighted F1 by default).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch

from emotk.errors import DataError
from emotk.models.ser.data import SerItem
from emotk.models.ser.superb import SuperbDims, SuperbDownstream
from emotk.nn.masks import pad_sequences
from emotk.train.task import StepState, TrainTask

# Feature bytes a dataset keeps in memory after first use (per process); beyond it, items are re-read
# from the memory-mapped cache shards. EMOTK_SER_FEATURE_MEMORY_GB overrides.
DEFAULT_MEMORY_GB = 2.0


class FeatureStore:
    """Read-through access to cached ``hidden`` arrays by id.

    cache: an :class:`emotk.features.cache.FeatureCache` of kind ``ser-input``. Full (L, T, D) arrays are memoised
    up to ``memory_gb`` (beyond it they are re-read from the memory-mapped shards); per-utterance summaries
    (time mean and mean square per layer and dim, frame count) are always memoised -- they are small.
    """

    def __init__(self, cache: Any, memory_gb: float | None = None) -> None:
        self.cache = cache
        gb = memory_gb if memory_gb is not None else float(os.environ.get("EMOTK_SER_FEATURE_MEMORY_GB",
                                                                           DEFAULT_MEMORY_GB))
        self.budget = int(gb * (1 << 30))
        self._memo: dict[str, np.ndarray] = {}
        self._summary: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
        self._bytes = 0

    def __contains__(self, uid: str) -> bool:
        return uid in self.cache

    def get(self, uid: str) -> np.ndarray:
        """(L, T, D) features of ``uid`` (float16 or float32, as stored)."""
        arr = self._memo.get(uid)
        if arr is None:
            arr = self.cache.get(uid, "hidden")
            if self._bytes + arr.nbytes <= self.budget:
                self._memo[uid] = arr
                self._bytes += arr.nbytes
        return arr

    def summary(self, uid: str) -> tuple[np.ndarray, np.ndarray, int]:
        """``(mean, mean_square, frames)`` of ``uid`` over time: two (L, D) float32 arrays (sums in float64)."""
        got = self._summary.get(uid)
        if got is None:
            h = self._memo.get(uid)
            h = np.asarray(self.cache.get(uid, "hidden") if h is None else h, dtype=np.float32)
            frames = int(h.shape[1])
            got = (h.mean(axis=1, dtype=np.float64).astype(np.float32),
                   np.square(h).mean(axis=1, dtype=np.float64).astype(np.float32), frames)
            self._summary[uid] = got
        return got

    def dims(self) -> tuple[int, int]:
        """(L, D) of the stored features (from the first stored utterance)."""
        ids = self.cache.ids()
        if not ids:
            raise DataError(f"{self.cache.path}: the feature cache holds no utterance")
        mean, _, _ = self.summary(ids[0])
        return int(mean.shape[0]), int(mean.shape[1])

    def __getstate__(self) -> dict[str, Any]:  # data-loader workers start with empty memos
        return {**self.__dict__, "_memo": {}, "_summary": {}, "_bytes": 0}


class SerDataset(torch.utils.data.Dataset):
    """Items ``{"id", "hidden": (L, T, D) tensor, "target"}`` of one split, in the given order.

    pooled: give each utterance as its time mean, (L, 1, D). With masked mean pooling and no per-frame
    non-linearity before it (no ``layer_norm``), the downstream's output is then the same as on all T frames --
    the layer sum, the optional standardisation and the mean are all linear over time -- at T times less work.
    """

    def __init__(self, items: Sequence[SerItem], store: FeatureStore, pooled: bool = False) -> None:
        self.items = list(items)
        self.store = store
        self.pooled = pooled
        missing = [it.id for it in self.items if it.id not in store]
        if missing:
            raise DataError(f"{len(missing)} utterance(s) have no cached features (e.g. '{missing[0]}'); "
                            "extraction skipped or failed on them")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        it = self.items[index]
        if self.pooled:
            hidden = torch.from_numpy(self.store.summary(it.id)[0][:, None, :])
        else:
            hidden = torch.from_numpy(np.asarray(self.store.get(it.id)))
        return {"id": it.id, "hidden": hidden, "target": it.target}


def collate_features(items: list[dict[str, Any]], regression: bool) -> dict[str, Any]:
    """Items of :class:`SerDataset` -> ``{"hidden": (B, L, T, D), "lengths": (B,), "target": (B,) long or
    (B, K) float, "ids": [B]}``; frames past an item's length are zeros."""
    hidden, lengths = pad_sequences([it["hidden"] for it in items], time_dim=1)
    if regression:
        target = torch.tensor([it["target"] for it in items], dtype=torch.float32)
    else:
        target = torch.tensor([it["target"] for it in items], dtype=torch.long)
    return {"hidden": hidden, "lengths": lengths, "target": target, "ids": [it["id"] for it in items]}


class SerTask(TrainTask):
    """SUPERB SER for one fold: ``splits`` maps train/valid/test to items; ``store`` holds their features.

    cfg: :class:`emotk.models.ser.config.SerConfig`; classes: label list (classification) or None;
    target_names: regression fields or None.
    """

    def __init__(self, cfg: Any, splits: dict[str, list[SerItem]], store: FeatureStore,
                 classes: list[str] | None = None, target_names: list[str] | None = None) -> None:
        from emotk.losses import build_loss

        self.cfg = cfg
        self.splits = splits
        self.store = store
        self.regression = cfg.task_type == "regression"
        self.classes = classes
        self.target_names = target_names
        num_layers, dim = store.dims()
        self.dims = SuperbDims(num_layers=num_layers, dim=dim,
                               num_outputs=len(target_names) if self.regression else len(classes or []))
        if self.dims.num_outputs < (1 if self.regression else 2):
            raise DataError(f"SER needs at least 2 classes, got {classes}")
        options = dict(cfg.loss.options)
        if self.needs_class_counts(cfg.loss.name) and "class_counts" not in options:
            options["class_counts"] = self.class_counts()
        self.loss = build_loss(cfg.loss.name, **options)
        # exact shortcut for the thesis head (masked mean pooling): train on per-utterance time means
        self.pooled = cfg.model.pooling == "mean" and not cfg.model.layer_norm
        self._train = SerDataset(splits["train"], store, self.pooled)
        self._valid = SerDataset(splits["valid"], store, self.pooled) if splits.get("valid") else None

    @staticmethod
    def needs_class_counts(name: str) -> bool:
        import inspect

        from emotk.losses import LOSSES

        return "class_counts" in inspect.signature(LOSSES[name]).parameters if name in LOSSES else False

    def class_counts(self) -> list[int]:
        """Training items per class, in class order."""
        counts = [0] * len(self.classes or [])
        for it in self.splits["train"]:
            counts[it.target] += 1
        return counts

    # ---- hooks -----------------------------------------------------------------------------------------------
    def build_model(self) -> SuperbDownstream:
        return self.make_model(stats=True)

    def make_model(self, stats: bool = True) -> SuperbDownstream:
        """A new downstream; with ``feature_norm`` its statistics come from the training split when ``stats``
        (else they stay at 0 / 1 until trained weights are loaded)."""
        m = self.cfg.model
        model = SuperbDownstream(self.dims, head_hidden=m.head_hidden, dropout=m.dropout, pooling=m.pooling,
                                 layer_norm=m.layer_norm, compat=m.compat, feature_norm=m.feature_norm)
        if m.feature_norm and stats:
            model.set_feature_stats(*self.feature_stats())
        return model

    def feature_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation (L, D) over every valid frame of the training split (float64 sums)."""
        if getattr(self, "_stats", None) is None:
            total = sq = None
            frames = 0
            for it in self.splits["train"]:
                mean, mean_sq, n = self.store.summary(it.id)
                s, q = mean.astype(np.float64) * n, mean_sq.astype(np.float64) * n
                total, sq = (s, q) if total is None else (total + s, sq + q)
                frames += n
            mean = total / max(frames, 1)
            std = np.sqrt(np.maximum(sq / max(frames, 1) - mean * mean, 0.0))
            self._stats = (torch.from_numpy(mean).float(), torch.from_numpy(std).float())
        return self._stats

    def train_dataset(self) -> SerDataset:
        return self._train

    def valid_dataset(self) -> SerDataset | None:
        return self._valid

    def dataset(self, split: str) -> SerDataset | None:
        """The dataset of any split (``test`` for the final report); None when the split is empty."""
        items = self.splits.get(split) or []
        return SerDataset(items, self.store, self.pooled) if items else None

    def collate(self, items: list) -> dict[str, Any]:
        return collate_features(items, self.regression)

    def training_step(self, model: Any, batch: dict[str, Any], state: StepState) -> dict:
        out = model(batch["hidden"], batch["lengths"])
        return {"loss": self.loss(out.float(), batch["target"])}

    def validation_step(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        out = model(batch["hidden"], batch["lengths"])
        return {"outputs": out.float(), "target": batch["target"], "ids": list(batch["ids"])}

    def validation_metrics(self, outputs: dict[str, Any]) -> dict[str, float]:
        return self.metrics(outputs)["metrics"]

    # ---- reports -----------------------------------------------------------------------------------------------
    def metrics(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """Flat scalar ``metrics`` (for selection and logs) plus the full ``report`` of :mod:`emotk.metrics`."""
        from emotk.metrics import classification_report, regression_report

        out = _stack(outputs["outputs"]).float().cpu()
        target = _stack(outputs["target"]).cpu()
        loss = float(self.loss(out, target))
        if self.regression:
            report = regression_report(out.numpy(), target.numpy(), names=self.target_names)
            metrics = {"ccc": report["ccc_mean"], "pearson": report["pearson_mean"], "loss": loss}
            metrics.update({f"ccc_{n}": v for n, v in report["ccc"].items()})
        else:
            pred = out.argmax(dim=-1).numpy()
            report = classification_report(target.numpy(), pred, labels=self.classes)
            metrics = {k: report[k] for k in ("weighted_f1", "balanced_accuracy", "macro_f1", "accuracy")}
            metrics["loss"] = loss
        return {"metrics": {k: float(v) for k, v in metrics.items()}, "report": report}


def _stack(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    return torch.stack([torch.as_tensor(v) for v in value])

"""SER training: the TrainTask and ``ser train`` (folds x seeds of SUPERB SER runs, test reports, summary).

:class:`SerTask` trains the SUPERB downstream (:mod:`.model`) on cached upstream features for one (fold, seed).
Datasets read ``hidden`` (L, T, D) arrays from the feature cache (:mod:`.features`); :meth:`SerTask.collate`
pads them to (B, L, T, D) with lengths, so padding is masked by the pooling. Validation metrics come from
:mod:`emotk.metrics` with scikit-learn names: ``weighted_f1``, ``balanced_accuracy`` (UAR), ``macro_f1``,
``accuracy`` and ``loss`` (classification); ``ccc`` (mean over targets), ``ccc_<target>``, ``pearson`` and
``loss`` (regression). The best checkpoint is chosen by ``train.select_metric`` (weighted F1 by default).

:func:`train` (``emotk ser train``) runs every (fold, seed). Layout of an output folder ``OUT``::

    OUT/run.json, config.yaml, log.txt        the whole experiment (resolved config, inputs' hashes, plan)
    OUT/features/ser-input-<h12>/             frozen-upstream features per utterance, shared by every run
    OUT/runs/<fold>-seed<S>/                  one training run per (fold, seed): run.json, metrics.jsonl,
                                              ckpt/ (step-N + best), export/, eval/test/ (report.json,
                                              predictions.jsonl, confusion_matrix.json + .png), result.json
    OUT/summary.json                          test (and best-validation) metrics: mean ± std over all runs,
                                              the values per run and per fold, with protocol/manifest hashes
    OUT/export/                               the inference bundle of the run with the best validation score

Model selection uses the validation split only (``train.select_metric``); test numbers are computed once,
with the selected checkpoint. ``--resume`` skips finished runs (``result.json``) and continues an interrupted
one from its last checkpoint; the result is the same as an uninterrupted run. ``ser evaluate`` (scoring the
runs of a finished folder again) is :mod:`.evaluate`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from emotk.core.io import atomic_write_json, atomic_write_text
from emotk.core.log import get_logger
from emotk.errors import DataError, UsageError
from emotk.models.ser.data import SerItem
from emotk.models.ser.model import SuperbDims, SuperbDownstream
from emotk.models.ser.normalize import normalize, normalize_summary, speaker_stats_from_summaries
from emotk.models.ser.search import choose, describe, grid, trial_config
from emotk.nn.masks import pad_sequences
from emotk.train.task import StepState, TrainTask

log = get_logger("ser")

RESULT = "result.json"
SUMMARY = "summary.json"
SEARCH = "search.json"

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

    pooled: give each utterance as its time statistics instead of its T frames -- exact for the downstream's
    ``mean`` and ``mean_std`` pooling when no per-frame non-linearity comes first (no ``layer_norm``), at T times
    less work. ``"mean"``: the time mean, (L, 1, D) (the layer sum, the optional standardisation and the mean are
    all linear over time). ``"mean_std"``: two frames per layer, mean - std and mean + std, (L, 2, D): their mean
    and (population) std are the utterance's, and a per-dim affine standardisation maps them exactly as it maps
    the frames.
    """

    def __init__(self, items: Sequence[SerItem], store: FeatureStore, pooled: bool | str = False,
                 norm: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        self.items = list(items)
        self.store = store
        self.pooled = "mean" if pooled is True else (pooled or None)
        if self.pooled not in (None, "mean", "mean_std"):
            raise UsageError(f"SerDataset: pooled must be False, 'mean' or 'mean_std', got {pooled!r}")
        self.norm = norm  # id -> its speaker's (mean, std) (L, D) (data.speaker_norm=per-speaker); None = off
        missing = [it.id for it in self.items if it.id not in store]
        if missing:
            raise DataError(f"{len(missing)} utterance(s) have no cached features (e.g. '{missing[0]}'); "
                            "extraction skipped or failed on them")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        it = self.items[index]
        if self.pooled:  # small (L, 1|2, D) tensors, made once: epochs then cost no numpy work per item
            memo = self.__dict__.setdefault("_pooled_memo", {})
            if index not in memo:
                memo[index] = self._pooled_item(it)
            return {"id": it.id, "hidden": memo[index], "target": it.target}
        frames = self.store.get(it.id)
        if self.norm is not None:
            frames = normalize(frames, self.norm[it.id])
        return {"id": it.id, "hidden": torch.from_numpy(np.asarray(frames)), "target": it.target}

    def _pooled_item(self, it: SerItem) -> torch.Tensor:
        mean, mean_sq, _ = self.store.summary(it.id)
        if self.pooled == "mean":
            frames = mean[:, None, :]
        else:
            std = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))
            frames = np.stack([mean - std, mean + std], axis=1)
        if self.norm is not None:
            frames = normalize(frames, self.norm[it.id])
        return torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))


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
    target_names: regression fields or None; speakers: ``{id: speaker}``, needed by
    ``data.speaker_norm=per-speaker`` (each split's utterances are standardised with their speaker's statistics
    over that split -- features only, never labels).
    """

    def __init__(self, cfg: Any, splits: dict[str, list[SerItem]], store: FeatureStore,
                 classes: list[str] | None = None, target_names: list[str] | None = None,
                 speakers: dict[str, str] | None = None) -> None:
        from emotk.losses import build_loss

        self.cfg = cfg
        self.splits = splits
        self.store = store
        self.speaker_norm = getattr(cfg.data, "speaker_norm", "none") == "per-speaker"
        if self.speaker_norm and speakers is None:
            raise UsageError("data.speaker_norm=per-speaker: SerTask needs the utterances' speakers")
        self.speakers = speakers
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
        # exact shortcut for masked mean / mean_std pooling: train on per-utterance time statistics
        m = cfg.model
        self.pooled = m.pooling if m.pooling in ("mean", "mean_std") and not m.layer_norm else False
        self._norms: dict[str, Any] = {}
        self._train = SerDataset(splits["train"], store, self.pooled, self.split_norm("train"))
        self._valid = self.dataset("valid")

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
        model = SuperbDownstream.from_config(self.dims, self.cfg.model)
        if self.cfg.model.feature_norm and stats:
            model.set_feature_stats(*self.feature_stats())
        return model

    def feature_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation (L, D) over every valid frame of the training split (float64 sums)."""
        if getattr(self, "_stats", None) is None:
            total = sq = None
            frames = 0
            norm = self.split_norm("train")
            for it in self.splits["train"]:
                mean, mean_sq, n = self.store.summary(it.id)
                if norm is not None:  # model.feature_norm on top of speaker normalisation: stats of its output
                    mean, mean_sq, n = normalize_summary((mean, mean_sq, n), norm[it.id])
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
        return SerDataset(items, self.store, self.pooled, self.split_norm(split)) if items else None

    def split_norm(self, split: str) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
        """``{id: (mean, std)}`` of the speaker of each utterance of ``split``, over that speaker's utterances in
        ``split`` (:mod:`.normalize`); None when ``data.speaker_norm`` is ``none``. Reads no label."""
        if not self.speaker_norm:
            return None
        if split not in self._norms:
            items = self.splits.get(split) or []
            groups: dict[str, list] = {}
            for it in items:
                groups.setdefault(self.speakers[it.id], []).append(self.store.summary(it.id))
            stats = speaker_stats_from_summaries(groups)
            self._norms[split] = {it.id: stats[self.speakers[it.id]] for it in items}
        return self._norms[split]

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


# ---- the experiment: folds x seeds -------------------------------------------------------------------------
def fold_plan(prepared: Any, fold: str) -> list[str | None]:
    """Folds to run for ``data.fold``: ``all`` -> every fold, "" -> the only fold, else that fold (name)."""
    proto = prepared.protocol
    if proto is None:
        if fold not in ("", None):
            raise UsageError(f"data.fold={fold!r} needs a protocol (--protocol NAME|FILE)")
        return [None]
    if fold == "all":
        return list(proto.fold_names)
    key: str | int | None = None if fold in ("", None) else (int(fold) if str(fold).isdigit() else str(fold))
    return [proto.fold(key).name]


def run_name(fold: str | None, seed: int) -> str:
    """``<fold>-seed<S>``: the folder of one run under ``OUT/runs/`` (a fold name is never a path)."""
    from emotk.core.names import safe_name

    return safe_name(f"{fold or 'split'}-seed{seed}", "run name", "ser train")


def _sub_config(cfg: Any, fold: str | None, seed: int) -> Any:
    return dataclasses.replace(cfg, seeds=1, data=dataclasses.replace(cfg.data, fold=fold or ""),
                               train=dataclasses.replace(cfg.train, seed=seed))


def _features(cfg: Any, prepared: Any, cache_root: Path, device: str, skip_bad: bool) -> tuple[Any, dict]:
    """Extract once (rank 0; the others wait) and open the cache on every process."""
    from emotk.models.ser.features import ensure_features
    from emotk.train import distributed as dist

    summary: dict[str, Any] = {}
    if dist.is_main():
        cache, summary = ensure_features(prepared.manifest, cfg.feature_config(), cache_root, device=device,
                                         skip_bad=skip_bad)
    dist.barrier()
    if not dist.is_main():
        cache, summary = ensure_features(prepared.manifest, cfg.feature_config(), cache_root, device=device,
                                         skip_bad=skip_bad)
    return cache, summary


def drop_skipped(splits: dict[str, list], store: Any) -> dict[str, list]:
    out = {}
    for name, items in splits.items():
        kept = [it for it in items if it.id in store]
        if len(kept) < len(items):
            log.warning(f"ser: {len(items) - len(kept)} {name} utterance(s) have no features (skipped audio)")
        out[name] = kept
    return out


def run_outputs(task: Any, model: Any, dataset: Any, device: str, batch_size: int = 32) -> dict[str, Any]:
    """Model outputs over a whole dataset, in dataset order: ``{"outputs": (N, K), "target": (N, ...), "ids"}``."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=task.collate)
    model.to(device).eval()
    outs, targets, ids = [], [], []
    with torch.no_grad():
        for batch in loader:
            out = model(batch["hidden"].to(device), batch["lengths"].to(device))
            outs.append(out.float().cpu())
            targets.append(batch["target"])
            ids.extend(batch["ids"])
    return {"outputs": torch.cat(outs), "target": torch.cat(targets), "ids": ids}


def write_eval(folder: Path, task: Any, outputs: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """Write ``report.json``, ``predictions.jsonl`` and (classification) ``confusion_matrix.json`` + ``.png``.

    info: provenance fields copied into the report (split, fold, seed, hashes, checkpoint). Returns the report.
    """
    from emotk.metrics import confusion_matrix_png

    folder.mkdir(parents=True, exist_ok=True)
    scored = task.metrics(outputs)
    out, target = outputs["outputs"], outputs["target"]
    lines = []
    if task.regression:
        for uid, o, t in zip(outputs["ids"], out.tolist(), target.tolist()):
            lines.append({"id": uid, "target": dict(zip(task.target_names, t)),
                          "prediction": {n: round(v, 6) for n, v in zip(task.target_names, o)}})
    else:
        probs = torch.softmax(out, dim=-1)
        for uid, p, t in zip(outputs["ids"], probs.tolist(), target.tolist()):
            best = max(range(len(p)), key=lambda i: p[i])
            lines.append({"id": uid, "label": task.classes[t], "prediction": task.classes[best],
                          "probabilities": {c: round(v, 6) for c, v in zip(task.classes, p)}})
    atomic_write_text(folder / "predictions.jsonl", "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    report = {**info, "num_samples": len(outputs["ids"]), "metrics": scored["metrics"], "report": scored["report"]}
    if not task.regression:
        cm = scored["report"]["confusion_matrix"]
        atomic_write_json(folder / "confusion_matrix.json",
                          {"classes": task.classes, "rows": "true", "columns": "predicted", "matrix": cm,
                           "support": scored["report"]["support"]})
        confusion_matrix_png(cm, task.classes, folder / "confusion_matrix.png",
                             title=f"{info.get('split', '')} {info.get('run', '')}".strip())
        report["confusion_matrix"] = "confusion_matrix.json"
    atomic_write_json(folder / "report.json", report)
    return report


def train(resolved: Any, out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
          skip_bad: bool = False, roots: dict[str, str] | None = None,
          argv: list[str] | None = None) -> dict[str, Any]:
    """Train every (fold, seed) run of SerConfig ``resolved.config`` under ``out``; returns the summary.

    resolved: :class:`emotk.core.config.Resolved` (its ``data.manifest`` must be set; ``runtime.device`` and
    ``runtime.threads`` say where to run). resume: continue (see the module docstring); overwrite: replace an
    existing ``out``. skip_bad: unreadable audio is skipped (listed) instead of failing the extraction.
    roots: named data roots for ``${NAME}/...`` manifest paths. argv: the command line, recorded in run.json.
    Raises :class:`emotk.train.signals.Interrupted` (exit code 3) when a signal stops a run.
    """
    from emotk.core.runtime import keep_threads

    with keep_threads():  # runtime.threads applies to this call only (library users keep their setting)
        return _train(resolved, out, resume=resume, overwrite=overwrite, skip_bad=skip_bad, roots=roots, argv=argv)


def _train(resolved: Any, out: str | os.PathLike, *, resume: bool, overwrite: bool, skip_bad: bool,
           roots: dict[str, str] | None, argv: list[str] | None) -> dict[str, Any]:
    from emotk.core.runs import RunDir
    from emotk.models.ser.data import prepare
    from emotk.models.ser.features import check_upstream
    from emotk.train import distributed as dist

    cfg = resolved.config
    if not cfg.data.manifest:
        raise UsageError("no manifest: pass --data MANIFEST.jsonl (or set data.manifest)")
    runtime, _ = dist.start(resolved.runtime)  # device, process group, threads (extraction too)
    device = runtime.device
    out = Path(out)
    prepared = prepare(cfg, cfg.data.manifest, roots=roots)
    speakers = speakers_of(cfg, prepared)  # before extraction: a record without speaker fails at once
    folds = fold_plan(prepared, cfg.data.fold)
    seeds = [cfg.train.seed + k for k in range(cfg.seeds)]
    plan = [(f, s) for f in folds for s in seeds]
    combos = grid(cfg.search) if cfg.search else []
    inputs = prepared.inputs()
    if not (resume and (out / "run.json").is_file()):  # an unknown or absent model fails before OUT is made
        check_upstream(cfg.feature_config())
    if dist.is_main():
        parent = RunDir.create(out, resolved, overwrite=overwrite, resume=resume, inputs=inputs, device=device,
                               argv=argv)
        parent.update(plan=[{"fold": f, "seed": s, "run": f"runs/{run_name(f, s)}"} for f, s in plan],
                      classes=prepared.classes, target_names=prepared.target_names, dropped=prepared.dropped,
                      **({"search": {"space": cfg.search, "trials_per_fold": len(combos)}} if combos else {}))
    dist.barrier()
    cache_root = Path(cfg.upstream.cache_dir) if cfg.upstream.cache_dir else out / "features"
    cache, extraction = _features(cfg, prepared, cache_root, device, skip_bad)
    store = FeatureStore(cache)
    if dist.is_main():
        RunDir.open(out).update(features={"cache": str(cache.path), "config_hash": cache.meta["config_hash"],
                                          "skipped": extraction.get("skipped", [])})

    results = []
    searched: dict[str, Any] = {}
    common = (prepared, store, runtime, resume, inputs, argv, speakers)
    for fold in folds:
        run_cfg = cfg
        if combos:
            searched[fold or "split"] = _search_fold(resolved, cfg, combos, fold, seeds[0], out, common)
            run_cfg = trial_config(cfg, searched[fold or "split"]["chosen"])
            if dist.is_main():
                atomic_write_json(out / SEARCH, search_record(cfg, searched))
                RunDir.open(out).update(search={"space": cfg.search, "trials_per_fold": len(combos),
                                                "chosen": {k: v["chosen"] for k, v in searched.items()}})
        for seed in seeds:
            name = run_name(fold, seed)
            sub = out / "runs" / name
            if resume and (sub / RESULT).is_file():
                results.append(json.loads((sub / RESULT).read_text(encoding="utf-8")))
                log.info(f"ser: {name} already finished; skipped")
                continue
            results.append(_train_one(resolved, _sub_config(run_cfg, fold, seed), prepared, store, sub, fold, seed,
                                      runtime, resume, inputs, argv, speakers))
    summary = summarise(cfg, prepared, results, resolved.hash)
    if searched:
        summary["search"] = search_record(cfg, searched, trials=False)
    if dist.is_main():
        best = summary.get("export", {}).get("from")
        if best:
            target = out / "export"
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(out / "runs" / best / "export", target)
        atomic_write_json(out / SUMMARY, summary)
    dist.barrier()
    return summary


def _train_one(resolved: Any, cfg: Any, prepared: Any, store: Any, sub: Path, fold: str | None, seed: int,
               runtime: Any, resume: bool, inputs: dict[str, str], argv: list[str] | None,
               speakers: dict[str, str] | None = None, trial: bool = False) -> dict[str, Any]:
    """Train and report one (fold, seed) run in ``sub``. ``trial``: a search trial -- scored on the validation
    split only (no test report is made), no export."""
    from emotk.core.config import Resolved
    from emotk.core.runs import RunDir
    from emotk.models.ser.export import write_export
    from emotk.train import distributed as dist
    from emotk.train.trainer import Trainer

    name = run_name(fold, seed)
    sub_resolved = Resolved(task=resolved.task, config=cfg, runtime=resolved.runtime,
                            sources=[*resolved.sources, f"run {name}: data.fold={fold or ''}, train.seed={seed}"])
    continuing = resume and (sub / "run.json").is_file()
    if dist.is_main():
        run = RunDir.create(sub, sub_resolved, resume=continuing, overwrite=not continuing, inputs=inputs, seed=seed,
                            device=runtime.device, argv=argv)
    dist.barrier()
    if not dist.is_main():
        run = RunDir.open(sub)
    splits = drop_skipped(prepared.splits(fold), store)
    task = SerTask(cfg, splits, store, classes=prepared.classes, target_names=prepared.target_names,
                   speakers=speakers)
    log.info(f"ser: run {name}: {len(splits['train'])} train / {len(splits['valid'])} valid / "
             f"{len(splits['test'])} test utterances, {task.dims.num_layers} layers x {task.dims.dim}")
    if dist.is_main() and not task.regression:
        run.update(class_counts=task.class_counts(), classes=prepared.classes)
    trainer = Trainer(cfg.train, task, run, runtime)
    fit = trainer.fit(resume=continuing)  # holds the best (validation-selected) weights afterwards
    best = fit.get("best")
    chosen = "ckpt/best" if best is not None else (
        str(Path(fit["last"]["checkpoint"]).relative_to(sub)) if fit["last"].get("checkpoint") else None)
    result: dict[str, Any] = {"run": name, "fold": fold, "seed": seed, "stopped": fit.get("stopped"),
                              "steps": fit.get("steps"), "best": _jsonable(best), "checkpoint": chosen,
                              "late_best": bool(fit.get("late_best")), "valid": None, "test": None}
    info = {"run": name, "fold": fold, "seed": seed, "checkpoint": chosen, **inputs, "config_hash": sub_resolved.hash,
            **speaker_norm_info(cfg)}
    for split in ("valid",) if trial else ("valid", "test"):
        dataset = task.dataset(split)
        if dataset is None:
            continue
        evaluated = trainer.evaluate(dataset, split=split)  # every process takes part; rank 0 writes
        if dist.is_main():
            report = write_eval(sub / "eval" / split, task, evaluated["outputs"], {**info, "split": split})
            result[split] = report["metrics"]
    if dist.is_main() and not trial:
        write_export(sub / "export", trainer.model, cfg, prepared.classes, prepared.target_names,
                     extra={"source_run": name, "fold": fold, "seed": seed, "config_hash": sub_resolved.hash,
                            "checkpoint": chosen, "valid": result["valid"], "test": result["test"], **inputs,
                            **speaker_norm_info(cfg)})
    if dist.is_main():
        atomic_write_json(sub / RESULT, result)
    dist.barrier()
    return result


def _search_fold(resolved: Any, cfg: Any, combos: list[dict[str, Any]], fold: str | None, seed: int, out: Path,
                 common: tuple) -> dict[str, Any]:
    """Train one trial per combination of ``cfg.search`` on ``fold`` with ``seed``; choose on validation only.

    Returns ``{"chosen": values, "trial": name, "trials": [{"trial", "values", "valid", "late_best"}]}``. Every
    process reads the trials' results from disk (rank 0 wrote them), so all choose the same."""
    prepared, store, runtime, resume, inputs, argv, speakers = common
    folder = out / "search" / (fold or "split")
    trials = []
    for k, values in enumerate(combos):
        name, sub = f"trial-{k:02d}", folder / f"trial-{k:02d}"
        if not (resume and (sub / RESULT).is_file()):
            log.info(f"ser: search {fold or 'split'} {name}/{len(combos)}: {describe(values)}")
            _train_one(resolved, _sub_config(trial_config(cfg, values), fold, seed), prepared, store, sub, fold, seed,
                       runtime, resume, inputs, argv, speakers, trial=True)
        done = json.loads((sub / RESULT).read_text(encoding="utf-8"))
        trials.append({"trial": name, "values": values, "valid": done.get("valid"),
                       "late_best": done.get("late_best", False)})
    index = choose(trials, cfg.train.select_metric, cfg.train.select_mode)
    picked = trials[index]
    log.info(f"ser: search {fold or 'split'}: chose {picked['trial']} ({describe(picked['values'])}), validation "
             f"{cfg.train.select_metric}={picked['valid'][cfg.train.select_metric]:.4f}")
    return {"chosen": picked["values"], "trial": picked["trial"], "trials": trials}


def search_record(cfg: Any, searched: dict[str, Any], trials: bool = True) -> dict[str, Any]:
    """What a search did: the space, the selection rule and, per fold, the chosen values (and every trial)."""
    return {"space": cfg.search, "selected_on": f"validation {cfg.train.select_metric} ({cfg.train.select_mode})",
            "seed": cfg.train.seed, "folds": {fold: ({**v} if trials else {"chosen": v["chosen"], "trial": v["trial"]})
                                                for fold, v in searched.items()}}


def speakers_of(cfg: Any, prepared: Any) -> dict[str, str] | None:
    """``{id: speaker}`` of the usable records when ``data.speaker_norm`` is ``per-speaker`` (else None); a record
    without ``speaker`` is a one-line DataError."""
    if getattr(cfg.data, "speaker_norm", "none") != "per-speaker":
        return None
    from emotk.models.ser.normalize import speaker_map

    return speaker_map(prepared.manifest)


def speaker_norm_info(cfg: Any) -> dict[str, Any]:
    """Provenance of ``data.speaker_norm`` for reports, summary and export (names the transductive method)."""
    from emotk.models.ser.normalize import NAME

    mode = getattr(cfg.data, "speaker_norm", "none")
    out: dict[str, Any] = {"speaker_norm": mode}
    if mode == "per-speaker":
        out["normalisation"] = (f"{NAME}: features standardised per speaker, layer and dim with statistics over "
                                "that speaker's utterances of the evaluated split (test speakers: their own "
                                "unlabelled utterances)")
    return out


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str)) if obj is not None else None


def summarise(cfg: Any, prepared: Any, results: list[dict[str, Any]], config_hash: str) -> dict[str, Any]:
    """Mean ± std of the test and validation metrics over ``results``, per run and per fold.

    ``test`` / ``valid``: mean and population std over every fold x seed run (``std_kind`` says so);
    ``test_over_folds`` (two folds or more): the mean and the sample std (ddof 1) of the per-fold means -- the
    numbers published tables give as "mean ± std over folds". ``split_reported`` names the split the CLI table
    shows (``valid`` when the protocol has no test split)."""
    from emotk.metrics import aggregate

    select, mode = cfg.train.select_metric, cfg.train.select_mode
    summary: dict[str, Any] = {
        "task": "ser.superb", "task_type": cfg.task_type, "config_hash": config_hash,
        **prepared.inputs(), "classes": prepared.classes, "target_names": prepared.target_names,
        "upstream": cfg.upstream.name, **speaker_norm_info(cfg), "select_metric": select,
        "runs_total": len(results),
        "folds": sorted({r["fold"] or "split" for r in results}), "seeds": sorted({r["seed"] for r in results}),
    }
    for split in ("test", "valid"):
        reports = [r[split] for r in results if r.get(split)]
        if reports:
            summary[split] = aggregate(reports, keys=sorted(reports[0]))
    per_fold: dict[str, Any] = {}
    for fold in summary["folds"]:
        reports = [r["test"] for r in results if (r["fold"] or "split") == fold and r.get("test")]
        if reports:
            per_fold[fold] = aggregate(reports, keys=sorted(reports[0]))
    summary["per_fold"] = per_fold
    if len(per_fold) >= 2:
        fold_means = [{k: v["mean"] for k, v in agg.items()} for agg in per_fold.values()]
        summary["test_over_folds"] = aggregate(fold_means, keys=sorted(fold_means[0]), ddof=1)
    summary["std_kind"] = {"test": "population std over all fold x seed runs",
                           "valid": "population std over all fold x seed runs",
                           "test_over_folds": "sample std (ddof 1) over the per-fold means"}
    summary["split_reported"] = "test" if "test" in summary else ("valid" if "valid" in summary else None)
    late = [r["run"] for r in results if r.get("late_best")]
    if late:
        summary["late_best_runs"] = late
    summary["runs"] = [{k: r.get(k) for k in ("run", "fold", "seed", "stopped", "checkpoint", "valid", "test")}
                       for r in results]
    ranked = [r for r in results if r.get("valid") and select in r["valid"]]
    if ranked:
        best = (max if mode == "max" else min)(ranked, key=lambda r: r["valid"][select])
    else:
        best = results[0] if results else None
    if best is not None:
        summary["export"] = {"path": "export", "from": best["run"],
                             "chosen_by": f"validation {select}" if ranked else "first run (no validation split)"}
    return summary

"""The training loop. Tasks supply hooks (:class:`emotk.train.task.TrainTask`); the loop does the rest.

One optimiser step = one *global batch* of ``train.batch_size`` items, split over processes and
``train.grad_accum`` micro-batches (see :mod:`emotk.train.distributed`). Each micro-batch's loss is weighted
by its share of the global batch, gradients are summed over processes, optionally clipped by global norm,
then the optimiser steps. The data order is a function of ``(seed, epoch)`` only, so a run resumed on a
different number of processes continues the same sequence of global batches.

Run-directory outputs (rank 0 only): ``metrics.jsonl`` (one line per log/eval event), ``ckpt/step-N/``
(last ``keep_last`` kept) and ``ckpt/best/`` (best by ``train.select_metric`` on the validation set; never
chosen on test data). SIGTERM/SIGUSR1 finish the current step, write a checkpoint and raise
:class:`~emotk.train.signals.Interrupted` (exit code 3).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from emotk import __version__
from emotk.core.config import RuntimeConfig
from emotk.core.log import Progress, get_logger
from emotk.core.runtime import (
    apply_threads,
    derived_seed,
    resolve_device,
    resolve_precision,
    seed_everything,
    seed_worker,
)
from emotk.errors import ConfigError, DataError, EmotkError, OutputExistsError, UsageError
from emotk.train import checkpoint as ckpt
from emotk.train import distributed as dist
from emotk.train.config import TrainConfig
from emotk.train.optim import LRSchedule, build_optimizers
from emotk.train.signals import Interrupted, StopSignal
from emotk.train.task import StepState, TrainTask

log = get_logger("train")

METRICS_FILE = "metrics.jsonl"
DEBUG_EPOCHS = 2
DEBUG_BATCHES = 2
LATE_BEST = 0.9  # a best epoch past this fraction of the epochs run is "late" (fit warns: under-training)


def move_to_device(obj: Any, device: torch.device) -> Any:
    """Move every tensor inside ``obj`` (dicts, lists, tuples, namedtuples, dataclasses, ``.to`` objects)."""
    if device.type == "cpu" and not isinstance(obj, torch.Tensor):
        return _move(obj, device, False)
    return _move(obj, device, device.type == "cuda")


def _move(obj: Any, device: torch.device, non_blocking: bool) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, dict):
        return {k: _move(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_move(v, device, non_blocking) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_move(v, device, non_blocking) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        new = copy.copy(obj)
        for f in dataclasses.fields(obj):
            object.__setattr__(new, f.name, _move(getattr(obj, f.name), device, non_blocking))
        return new
    if hasattr(obj, "to") and callable(obj.to) and not isinstance(obj, (str, bytes)):
        try:
            return obj.to(device)
        except TypeError:
            return obj
    return obj


def _scalar(value: Any) -> torch.Tensor | float | None:
    """A loggable scalar (0-d/1-element tensor, detached) or number; None for anything else."""
    if isinstance(value, torch.Tensor):
        return value.detach().float().reshape(()) if value.numel() == 1 else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


# --- the trainer ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Position:
    """Where the loop stands: ``step`` optimiser steps done; ``epoch`` (1-based) in progress, of which
    ``step_in_epoch`` steps are done; ``epoch_done`` once its end-of-epoch work (eval, checkpoint) ran."""

    step: int = 0
    epoch: int = 1
    step_in_epoch: int = 0
    epoch_done: bool = False


class Trainer:
    """Train ``task`` with ``cfg`` into run directory ``run``; ``runtime`` picks device, precision, threads.

    The model is built (after seeding with ``cfg.seed``) and moved to the device in the constructor and
    is available as ``trainer.model``. After :meth:`fit` it holds the best checkpoint's weights when there
    is a validation set, else the last weights.
    """

    def __init__(self, cfg: TrainConfig, task: TrainTask, run: Any, runtime: RuntimeConfig | None = None):
        cfg.validate()
        self.cfg = cfg
        self.task = task
        self.run = run
        self.runtime = runtime or RuntimeConfig()
        self.info = dist.detect()
        self.device = resolve_device(self.runtime.device, self.info.local_rank, self.info.local_world_size)
        dist.init(self.device, self.info)
        self.rank, self.world_size = self.info.rank, self.info.world_size
        self.is_main = self.info.is_main
        threads = apply_threads(self.runtime.threads, self.info.local_world_size)
        self.amp_dtype, use_scaler = resolve_precision(self.runtime.precision, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.accum = cfg.grad_accum
        self.micro_size = max(1, math.ceil(cfg.batch_size / (self.world_size * self.accum)))
        seed_everything(cfg.seed)
        model = task.build_model()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"{type(task).__name__}.build_model() must return an nn.Module, got {type(model).__name__}")
        self.model = model.to(self.device)
        dist.broadcast_module(self.model)
        if self.rank > 0:  # distinct dropout/augmentation streams per process; rank 0 matches a 1-process run
            seed_everything(derived_seed(cfg.seed, self.rank))
        self.ckpt_root = Path(run.path) / "ckpt"
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedules: dict[str, LRSchedule] = {}
        self._stop = StopSignal()
        self._pos = _Position()
        self._best: dict[str, Any] | None = None
        self._last_metrics: dict[str, float] = {}
        self._last_ckpt: Path | None = None
        self._saved_step: int | None = None
        self._log_sums: dict[str, Any] = {}  # key -> weighted sum (a device tensor until flushed)
        self._log_counts: dict[str, float] = {}
        self._log_steps = 0
        self._done: str | None = None
        self._total_steps = 0
        self._n_train = 0
        self._item_weights: np.ndarray | None = None
        self._multi = False
        if self.is_main:
            log.debug("trainer: device %s, %d thread(s), precision %s, world size %d", self.device, threads,
                      self.runtime.precision, self.world_size)

    # -- public API -----------------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train; return ``{"best": {metric: value, ..., "epoch", "step", "checkpoint"} | None, "last": {...},
        "stopped": "completed" | "early_stop", "steps": int, "epochs": int, "late_best": bool}``; ``late_best``
        (also logged as a warning) says the selected epoch fell in the last 10 % of a schedule that ran to its end.

        ``resume``: continue from the newest checkpoint in ``run/ckpt`` (start fresh when there is none; a
        finished run returns its summary). Without it, existing checkpoints are an error. On SIGTERM/SIGUSR1
        raises :class:`Interrupted` (exit code 3) whose ``result`` has ``"stopped": "signal"``.
        """
        cfg = self.cfg
        train_set = self.task.train_dataset()
        n_train = len(train_set)
        if n_train == 0:
            raise DataError("the training set is empty")
        valid_set = self.task.valid_dataset()
        if valid_set is not None and len(valid_set) == 0:
            raise DataError("the validation set is empty (return None from valid_dataset() to train without one)")
        if valid_set is None and self.is_main:
            log.warning("no validation set: no model selection or early stopping; the last weights are kept")
        self._n_train = n_train
        weights = self.task.item_weights(train_set)
        self._item_weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        if self._item_weights is not None and self._item_weights.shape != (n_train,):
            raise UsageError(f"{type(self.task).__name__}.item_weights() gave {self._item_weights.shape[0]} weights "
                             f"for {n_train} training items")
        steps_per_epoch = math.ceil(n_train / cfg.batch_size)
        if cfg.debug:
            steps_per_epoch = min(steps_per_epoch, DEBUG_BATCHES)
            total_steps = DEBUG_EPOCHS * steps_per_epoch
            if self.is_main:
                log.info("debug mode: %d batches x %d epochs", steps_per_epoch, DEBUG_EPOCHS)
        elif cfg.max_steps is not None:
            total_steps = cfg.max_steps
        else:
            total_steps = cfg.epochs * steps_per_epoch
        self._total_steps = total_steps
        self.optimizers = build_optimizers(self.model, self.task.param_groups(self.model), cfg.optim)
        self.schedules = {name: LRSchedule(opt, cfg.scheduler, total_steps, steps_per_epoch)
                          for name, opt in self.optimizers.items()}
        self._multi = len(self.optimizers) > 1

        start = self._find_start(resume)
        if start is not None:
            self._restore(start, n_train)
            if self._done is not None:
                if self.is_main:
                    log.info("%s: the run already finished (%s); nothing to resume", start, self._done)
                self._load_best_weights()
                return self._summary(self._done)
        else:  # a fresh run's dropout/augmentation streams do not depend on what ran since __init__
            seed_everything(derived_seed(cfg.seed, self.rank, 1))
        if self.is_main:
            dist_note = f", {self.world_size} processes" if self.world_size > 1 else ""
            log.info("training on %s%s: %d items, %d steps/epoch, batch %d (x%d accumulation)", self.device,
                     dist_note, n_train, steps_per_epoch, cfg.batch_size, cfg.grad_accum)

        self.model.train()
        stopped = None
        with self._stop:
            while stopped is None:
                stopped = self._run_epoch(train_set, valid_set, n_train, steps_per_epoch)
        self._load_best_weights()
        summary = self._summary(stopped)
        if self.is_main:
            best = summary["best"]
            if best is not None:
                log.info("done (%s) after %d steps: best %s=%.4g at epoch %d (%s)", stopped, self._pos.step,
                         cfg.select_metric, best[cfg.select_metric], best["epoch"], best["checkpoint"])
            if summary["late_best"]:
                log.warning("the best validation epoch (%d of %d) is in the last 10%% of training: the schedule may "
                            "under-train; raise train.epochs and set train.early_stop_patience",
                            best["epoch"], self._pos.epoch)
            else:
                log.info("done (%s) after %d steps", stopped, self._pos.step)
        return summary

    def evaluate(self, dataset: Any, split: str | None = None) -> dict[str, Any]:
        """Run :meth:`TrainTask.validation_step` over ``dataset`` (all processes) and compute the metrics.

        Returns ``{"metrics": {name: float}, "outputs": {key: Tensor | list}, "items": int}`` with outputs in
        dataset order, on every process. ``split`` (e.g. ``"test"``) also writes a ``metrics.jsonl`` line.
        """
        outputs, items = self._predict(dataset)
        metrics = self._metrics(outputs)
        if split and self.is_main:
            self._write_metrics({"step": self._pos.step, "epoch": self._pos.epoch, "split": split, **metrics})
        return {"metrics": metrics, "outputs": outputs, "items": items}

    # -- one epoch --------------------------------------------------------------------------------------

    def _run_epoch(self, train_set: Any, valid_set: Any, n_train: int, steps_per_epoch: int) -> str | None:
        """Run the rest of the current epoch and its end-of-epoch work; return why training stopped, or None."""
        cfg, pos = self.cfg, self._pos
        plan = dist.global_batches(n_train, cfg.batch_size, cfg.seed, pos.epoch)[:steps_per_epoch]
        if cfg.max_steps is not None and not cfg.debug:
            plan = plan[: max(cfg.max_steps - (pos.step - pos.step_in_epoch), 0)]
        self.task.on_epoch_start(pos.epoch, self.model)
        with Progress(len(plan) - pos.step_in_epoch, f"epoch {pos.epoch}", self._progress_enabled(),
                      unit="steps") as bar:
            for micro_batches in self._micro_batches(train_set, plan, pos.step_in_epoch):
                self._train_step(plan[pos.step_in_epoch], micro_batches)
                pos.step += 1
                pos.step_in_epoch += 1
                bar.advance()
                if pos.step % cfg.log_every_steps == 0:
                    self._flush_train_log()
                if dist.any_process(self._stop.requested):
                    self._interrupt()
        self._flush_train_log()

        if cfg.debug:
            finished = pos.epoch >= DEBUG_EPOCHS
        elif cfg.max_steps is not None:
            finished = pos.step >= cfg.max_steps
        else:
            finished = pos.epoch >= cfg.epochs
        improved, early = False, False
        if valid_set is not None and (finished or pos.epoch % cfg.eval_every_epochs == 0):
            metrics = self._validate(valid_set)
            improved = self._consider(metrics)
            if cfg.early_stop_patience is not None and self._best is not None:
                early = pos.epoch - self._best["epoch"] >= cfg.early_stop_patience
        done = "early_stop" if early and not finished else ("completed" if finished else None)
        pos.epoch_done = True
        path = self._save(done)
        if improved and self.is_main:
            ckpt.set_best(self.ckpt_root, path)
        if self.is_main:
            ckpt.prune_checkpoints(self.ckpt_root, cfg.keep_last)
        dist.barrier()
        if done is not None:
            if done == "early_stop" and self.is_main:
                log.info("early stop: no %s improvement for %d epochs", cfg.select_metric, cfg.early_stop_patience)
            return done
        if dist.any_process(self._stop.requested):
            self._interrupt()
        pos.epoch += 1
        pos.step_in_epoch = 0
        pos.epoch_done = False
        return None

    def _micro_batches(self, dataset: Any, plan: list[np.ndarray], start: int) -> Iterator[list[tuple[list[int], Any]]]:
        """For each step of ``plan`` from ``start``: this process's ``accum`` (indices, collated batch or
        None when empty) pairs, collated on CPU (``runtime.workers`` loader processes when > 0)."""
        shards = [dist.shard_batch(b, self.world_size, self.rank, self.accum) for b in plan[start:]]
        flat = [idx for step in shards for idx in step if idx]
        if self.runtime.workers > 0 and flat:
            from torch.utils.data import DataLoader

            gen = torch.Generator().manual_seed(derived_seed(self.cfg.seed, self._pos.epoch, start, self.rank))
            loader = iter(DataLoader(
                dataset, batch_sampler=flat, collate_fn=self.task.collate, num_workers=self.runtime.workers,
                pin_memory=self.device.type == "cuda", worker_init_fn=seed_worker, generator=gen,
            ))
            fetch = lambda idx: next(loader)  # noqa: E731 - batches arrive in the order of ``flat``
        else:
            fetch = lambda idx: self.task.collate([dataset[i] for i in idx])  # noqa: E731
        for step in shards:
            yield [(idx, fetch(idx) if idx else None) for idx in step]

    def _train_step(self, global_batch: np.ndarray, micro_batches: list[tuple[list[int], Any]]) -> None:
        """One optimiser step (per optimiser) over this process's micro-batches of ``global_batch``."""
        pos, cfg = self._pos, self.cfg
        total = len(global_batch)
        w = self._item_weights
        w_total = float(w[global_batch].sum()) if w is not None else 0.0
        progress = min(pos.step / max(self._total_steps, 1), 1.0)
        cache: dict[str, Any] = {}
        for sched in self.schedules.values():
            sched.apply(pos.step)
        self.model.zero_grad(set_to_none=True)  # also parameters that no optimiser owns
        for name, opt in self.optimizers.items():
            opt.zero_grad(set_to_none=True)
            for m, (idx, batch) in enumerate(micro_batches):
                if not idx:
                    continue
                state = StepState(step=pos.step, epoch=pos.epoch, progress=progress, world_size=self.world_size,
                                  rank=self.rank, device=self.device, micro=m, accum=self.accum, items=len(idx),
                                  optimizer=name, cache=cache)
                with self._autocast():
                    out = self.task.training_step(self.model, move_to_device(batch, self.device), state)
                loss = out.get("loss") if isinstance(out, dict) else None
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise TypeError(f"{type(self.task).__name__}.training_step() must return a dict with a scalar "
                                    f"tensor 'loss', got {type(out).__name__}")
                share = float(w[idx].sum()) / w_total if w_total > 0 else len(idx) / total
                weighted = loss.reshape(()) * share
                (self.scaler.scale(weighted) if self.scaler is not None else weighted).backward()
                for key, value in out.items():
                    v = _scalar(value)
                    if v is not None:
                        self._accumulate(key if not self._multi else f"{key}/{name}", v, len(idx))
            params = [p for g in opt.param_groups for p in g["params"]]
            dist.reduce_gradients(params)
            if all(p.grad is None for p in params):
                continue  # nothing reached this optimiser's parameters (same on every process after the reduce)
            if self.scaler is not None:
                self.scaler.unscale_(opt)
            if cfg.clip_grad_norm is not None:
                norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
                self._accumulate("grad_norm" if not self._multi else f"grad_norm/{name}", norm.detach(), total,
                                 per_step=True)
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                opt.step()
        if self.scaler is not None:
            self.scaler.update()
        dist.broadcast_module(self.model, buffers_only=True)
        self._log_steps += 1

    def _accumulate(self, key: str, value: torch.Tensor | float, weight: float, per_step: bool = False) -> None:
        """Add ``value`` (weighted by item count, or once per step for ``per_step`` values) to the log window."""
        if per_step:
            if self.rank != 0:
                return  # identical on every process after the gradient all-reduce; count it once
            weight = 1.0
        # Tensors stay on the device until the next flush (no host sync per micro-batch).
        self._log_sums[key] = self._log_sums.get(key, 0.0) + value * weight
        self._log_counts[key] = self._log_counts.get(key, 0.0) + weight

    def _pooled_log_window(self) -> tuple[dict[str, float], dict[str, float]]:
        """The log window's (sums, counts) summed over all processes (a collective call)."""
        local = ({k: float(v) for k, v in self._log_sums.items()}, dict(self._log_counts))
        pooled_sums: dict[str, float] = {}
        pooled_counts: dict[str, float] = {}
        for sums, counts in dist.all_gather_objects(local):
            for k, v in sums.items():
                pooled_sums[k] = pooled_sums.get(k, 0.0) + v
                pooled_counts[k] = pooled_counts.get(k, 0.0) + counts[k]
        return pooled_sums, pooled_counts

    def _flush_train_log(self) -> None:
        """Write the averaged training scalars of the steps since the last flush (all processes pooled)."""
        if self._log_steps == 0:
            return
        pooled_sums, pooled_counts = self._pooled_log_window()
        self._log_sums, self._log_counts, self._log_steps = {}, {}, 0
        record: dict[str, Any] = {"step": self._pos.step, "epoch": self._pos.epoch, "split": "train"}
        for k in sorted(pooled_sums, key=lambda k: (not k.startswith("loss"), k)):
            record[k] = pooled_sums[k] / max(pooled_counts[k], 1e-12)
        for name, opt in self.optimizers.items():
            record["lr" if not self._multi else f"lr/{name}"] = float(opt.param_groups[0]["lr"])
        bad = [k for k, v in record.items() if k.startswith("loss") and isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise EmotkError(
                f"training {bad[0]} is {record[bad[0]]} at step {self._pos.step} (epoch {self._pos.epoch}); "
                "lower train.optim.lr, set train.clip_grad_norm, check the inputs, or use runtime.precision=fp32"
            )
        if self.is_main:
            self._write_metrics(record)
            shown = " ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("step", "epoch", "split"))
            log.info("epoch %d step %d/%d: %s", self._pos.epoch, self._pos.step, self._total_steps, shown)

    # -- validation and selection -------------------------------------------------------------------------

    def _validate(self, dataset: Any) -> dict[str, float]:
        outputs, _ = self._predict(dataset)
        metrics = self._metrics(outputs)
        self._last_metrics = metrics
        if self.is_main:
            self._write_metrics({"step": self._pos.step, "epoch": self._pos.epoch, "split": "valid", **metrics})
        return metrics

    def _metrics(self, outputs: dict[str, Any]) -> dict[str, float]:
        """Task metrics on rank 0, shared with every process."""
        metrics: dict[str, float] | None = None
        if self.is_main:
            raw = self.task.validation_metrics(outputs)
            metrics = {}
            for k, v in raw.items():
                try:
                    metrics[str(k)] = float(v)
                except (TypeError, ValueError):
                    raise TypeError(f"validation_metrics()['{k}'] is not a number ({type(v).__name__})") from None
        return dist.broadcast_object(metrics)

    def _consider(self, metrics: dict[str, float]) -> bool:
        """Update the best-so-far with this evaluation; True when it improved on ``select_metric``."""
        name, mode = self.cfg.select_metric, self.cfg.select_mode
        if name not in metrics:
            raise ConfigError(
                f"config key 'train.select_metric': {name!r} is not a validation metric of this task "
                f"(available: {', '.join(sorted(metrics)) or 'none'})"
            )
        value = metrics[name]
        if math.isnan(value):
            return False
        if self._best is not None:
            old = self._best["value"]
            if not (value > old if mode == "max" else value < old):
                return False
        self._best = {"metric": name, "value": value, "epoch": self._pos.epoch, "step": self._pos.step,
                      "metrics": dict(metrics)}
        return True

    def _predict(self, dataset: Any) -> tuple[dict[str, Any], int]:
        """Per-item validation outputs over ``dataset``, gathered from all processes in dataset order."""
        n = len(dataset)
        if self.cfg.debug:
            n = min(n, DEBUG_BATCHES * self.micro_size * self.world_size)
        mine = dist.eval_shard(n, self.world_size, self.rank)
        batches = [mine[i:i + self.micro_size] for i in range(0, len(mine), self.micro_size)]
        was_training = self.model.training
        self.model.eval()
        per_batch: list[tuple[list[int], dict[str, Any]]] = []
        try:
            with torch.no_grad():
                for idx in batches:
                    batch = move_to_device(self.task.collate([dataset[i] for i in idx]), self.device)
                    with self._autocast():
                        out = self.task.validation_step(self.model, batch)
                    per_batch.append((idx, _check_outputs(out, len(idx))))
        finally:
            self.model.train(was_training)
        return _gather_outputs(per_batch), n

    # -- checkpoints --------------------------------------------------------------------------------------

    def _find_start(self, resume: bool) -> Path | None:
        """The checkpoint to resume from (decided on rank 0, shared), None to start fresh."""
        found, error = None, None
        if self.is_main:
            existing = ckpt.list_checkpoints(self.ckpt_root)
            if existing and not resume:
                error = (f"{self.ckpt_root} already holds checkpoints; pass --resume to continue or use a new "
                         "run directory")
            found = str(existing[-1][1]) if existing else None
            if resume and found is None:
                log.info("--resume: no checkpoint in %s yet, starting from the beginning", self.ckpt_root)
        found, error = dist.broadcast_object((found, error))
        if error:
            raise OutputExistsError(error)
        return Path(found) if found else None

    def _save(self, done: str | None) -> Path:
        """Write ``ckpt/step-N`` (rank 0; RNG states of all processes included) and return its path."""
        pos = self._pos
        rng = dist.all_gather_objects(_rng_state(self.device))
        window_sums, window_counts = self._pooled_log_window()
        path = self.ckpt_root / ckpt.step_dir_name(pos.step)
        if self.is_main:
            state = {
                "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
                "schedules": {name: s.state_dict() for name, s in self.schedules.items()},
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "rng": {str(r): s for r, s in enumerate(rng)},
            }
            metrics_file = Path(self.run.path) / METRICS_FILE
            meta = {
                "step": pos.step, "epoch": pos.epoch, "step_in_epoch": pos.step_in_epoch,
                "epoch_done": pos.epoch_done, "done": done, "world_size": self.world_size,
                "batch_size": self.cfg.batch_size, "grad_accum": self.cfg.grad_accum, "seed": self.cfg.seed,
                "n_train": self._n_train, "select_metric": self.cfg.select_metric,
                "select_mode": self.cfg.select_mode, "best": self._best, "last_metrics": self._last_metrics,
                "metrics_bytes": metrics_file.stat().st_size if metrics_file.exists() else 0,
                "log_window": {"sums": window_sums, "counts": window_counts, "steps": self._log_steps},
                "config_hash": getattr(self.run, "config_hash", None), "emotk_version": __version__,
            }
            ckpt.write_checkpoint(self.ckpt_root, path.name, self.model, state, meta)
        dist.barrier()
        self._last_ckpt = path
        self._saved_step = pos.step
        self._done = done
        return path

    def _restore(self, path: Path, n_train: int) -> None:
        """Load model, optimisers, schedules, scaler, RNG and loop position from checkpoint ``path``."""
        meta, state = ckpt.read_checkpoint(path)
        if meta.get("batch_size") != self.cfg.batch_size:
            raise DataError(f"{path}: cannot resume with train.batch_size={self.cfg.batch_size}; the checkpoint "
                            f"was made with {meta.get('batch_size')}")
        if meta.get("n_train") != n_train:
            raise DataError(f"{path}: cannot resume: the training set has {n_train} items, the checkpoint was "
                            f"made with {meta.get('n_train')}")
        ckpt.load_model_weights(path, self.model)
        saved_opts = state.get("optimizers", {})
        if sorted(saved_opts) != sorted(self.optimizers):
            raise DataError(f"{path}: checkpoint optimisers {sorted(saved_opts)} do not match the task's "
                            f"{sorted(self.optimizers)}")
        for name, opt in self.optimizers.items():
            try:
                opt.load_state_dict(saved_opts[name])
            except (ValueError, KeyError) as e:
                raise DataError(f"{path}: optimiser '{name}' state does not fit the model ({e})") from None
            self.schedules[name].load_state_dict(state["schedules"][name])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rng = state.get("rng", {})
        if str(self.rank) in rng:
            _set_rng_state(rng[str(self.rank)], self.device)
        else:
            seed_everything(derived_seed(self.cfg.seed, meta["step"], self.rank))
        self._pos = _Position(step=meta["step"], epoch=meta["epoch"], step_in_epoch=meta["step_in_epoch"],
                              epoch_done=meta["epoch_done"])
        if self._pos.epoch_done and not meta.get("done"):  # a finished run stays at its last epoch
            self._pos.epoch += 1
            self._pos.step_in_epoch = 0
            self._pos.epoch_done = False
        self._best = meta.get("best")
        self._last_metrics = meta.get("last_metrics") or {}
        window = meta.get("log_window") or {}
        # The pooled, not yet logged training scalars continue on rank 0 so the next log line is exact.
        self._log_sums = dict(window.get("sums", {})) if self.is_main else {}
        self._log_counts = dict(window.get("counts", {})) if self.is_main else {}
        self._log_steps = int(window.get("steps", 0))
        self._last_ckpt = path
        self._saved_step = meta["step"]
        self._done = meta.get("done")
        if self.is_main:
            ckpt.truncate_file(Path(self.run.path) / METRICS_FILE, int(meta.get("metrics_bytes", 0)))
            best = self._best
            if best is not None and best["step"] == meta["step"]:
                best_meta = self.ckpt_root / ckpt.BEST / ckpt.META_FILE
                if not best_meta.is_file() or ckpt.read_meta(best_meta.parent).get("step") != meta["step"]:
                    ckpt.set_best(self.ckpt_root, path)  # the run stopped between the save and the best link
            log.info("resumed from %s (epoch %d, step %d, saved by %d process(es))", path, meta["epoch"],
                     meta["step"], meta.get("world_size", 1))
        dist.barrier()

    def _interrupt(self) -> None:
        """Checkpoint (unless this step is already saved) and raise Interrupted."""
        if self._saved_step != self._pos.step:
            self._save(None)
            if self.is_main:
                ckpt.prune_checkpoints(self.ckpt_root, self.cfg.keep_last)
            dist.barrier()
        name = self._stop.signal_name or "a stop signal"
        summary = self._summary("signal")
        raise Interrupted(
            f"stopped by {name} at step {self._pos.step} (epoch {self._pos.epoch}); checkpoint {self._last_ckpt}; "
            "run again with --resume to continue",
            signal=self._stop.signal_name, step=self._pos.step, checkpoint=str(self._last_ckpt), result=summary,
        )

    def _load_best_weights(self) -> None:
        best_dir = self.ckpt_root / ckpt.BEST
        if self._best is not None and (best_dir / ckpt.MODEL_FILE).is_file():
            ckpt.load_model_weights(best_dir, self.model)

    def _summary(self, stopped: str) -> dict[str, Any]:
        best = None
        if self._best is not None:
            b = self._best
            best = {**b["metrics"], b["metric"]: b["value"], "epoch": b["epoch"], "step": b["step"],
                    "checkpoint": str(self.ckpt_root / ckpt.BEST)}
        last = {**self._last_metrics, "epoch": self._pos.epoch, "step": self._pos.step,
                "checkpoint": str(self._last_ckpt) if self._last_ckpt else None}
        late = (best is not None and stopped == "completed" and not self.cfg.debug
                and best["epoch"] > LATE_BEST * self._pos.epoch)
        return {"best": best, "last": last, "stopped": stopped, "steps": self._pos.step, "epochs": self._pos.epoch,
                "late_best": late}

    # -- helpers ----------------------------------------------------------------------------------------------

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def _progress_enabled(self) -> bool | None:
        if not self.is_main or self.runtime.progress == "off":
            return False
        return True if self.runtime.progress == "on" else None

    def _write_metrics(self, record: dict[str, Any]) -> None:
        self.run.append_jsonl(METRICS_FILE, record)


# --- outputs: per-batch checks and cross-process gathering -------------------------------------------------

def _check_outputs(out: Any, items: int) -> dict[str, Any]:
    """Validate one validation_step result: per-item tensors (dim 0 = items) or lists of ``items`` entries."""
    if not isinstance(out, dict):
        raise TypeError(f"validation_step() must return a dict, got {type(out).__name__}")
    checked = {}
    for key, value in out.items():
        if isinstance(value, torch.Tensor):
            if value.dim() == 0 or value.shape[0] != items:
                raise ValueError(
                    f"validation_step() output '{key}' has shape {tuple(value.shape)} for a batch of {items} items; "
                    "return per-item values (first dimension = batch)"
                )
            checked[key] = value.detach().cpu()
        elif isinstance(value, (list, tuple)):
            if len(value) != items:
                raise ValueError(f"validation_step() output '{key}' has {len(value)} entries for {items} items")
            checked[key] = list(value)
        else:
            raise TypeError(f"validation_step() output '{key}' must be a tensor or a list, got {type(value).__name__}")
    return checked


def _gather_outputs(per_batch: list[tuple[list[int], dict[str, Any]]]) -> dict[str, Any]:
    """Merge this process's batches, gather every process's, and return outputs in dataset-index order.

    A tensor key whose trailing shape and dtype agree everywhere is concatenated (dim 0); otherwise the key
    becomes a list of per-item values. Lists are concatenated.
    """
    index = [i for idx, _ in per_batch for i in idx]
    local: dict[str, Any] = {}
    desc: dict[str, tuple] = {}
    keys = list(dict.fromkeys(k for _, out in per_batch for k in out))
    for key in keys:
        values = [out.get(key) for _, out in per_batch]
        if any(v is None for v in values):
            raise ValueError(f"validation_step() returned '{key}' for some batches but not all")
        same_shape = len({(tuple(v.shape[1:]), v.dtype) if isinstance(v, torch.Tensor) else None for v in values}) == 1
        if same_shape and isinstance(values[0], torch.Tensor):
            local[key] = torch.cat(values)
            desc[key] = ("tensor", tuple(values[0].shape[1:]), str(values[0].dtype))
        else:
            local[key] = [row for v in values for row in (list(v.unbind(0)) if isinstance(v, torch.Tensor) else v)]
            desc[key] = ("list",)
    everyone = dist.all_gather_objects({"index": index, "desc": desc})
    all_keys = list(dict.fromkeys(k for d in everyone for k in d["desc"]))
    for r, d in enumerate(everyone):
        if d["index"] and sorted(d["desc"]) != sorted(all_keys):
            raise ValueError(f"validation_step() returned different keys on process {r}")
    order = np.argsort(np.asarray([i for d in everyone for i in d["index"]], dtype=np.int64), kind="stable")
    merged: dict[str, Any] = {}
    for key in all_keys:
        kinds = {d["desc"][key] for d in everyone if key in d["desc"]}
        if len(kinds) == 1 and next(iter(kinds))[0] == "tensor":
            _, trailing, dtype_name = next(iter(kinds))
            mine = local.get(key)
            if mine is None:  # this process had no items
                mine = torch.empty((0, *trailing), dtype=getattr(torch, dtype_name.replace("torch.", "")))
            parts = dist.all_gather_tensors(mine)
            full = torch.cat(parts) if len(parts) > 1 else parts[0]
            merged[key] = full[torch.from_numpy(order)] if len(order) else full
        else:
            mine = local.get(key, [])
            if isinstance(mine, torch.Tensor):
                mine = list(mine.unbind(0))
            parts = dist.all_gather_objects(mine)
            flat = [v for p in parts for v in p]
            merged[key] = [flat[i] for i in order]
    return merged


# --- RNG state -----------------------------------------------------------------------------------------------

def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)

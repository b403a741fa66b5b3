"""Training hyper-parameters: the ``train`` section of every task config (optimiser, schedule, selection).

These dataclasses are plain data (no torch import) so that ``emotk config show`` stays cheap. A task schema
embeds :class:`TrainConfig` as its ``train`` field; :meth:`TrainConfig.validate` is called by the trainer and
raises :class:`~emotk.errors.ConfigError` naming the bad key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from emotk.errors import ConfigError

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("none", "linear", "cosine", "exponential", "step")
SELECT_MODES = ("max", "min")


@dataclass
class OptimConfig:
    """One optimiser family (YAML section ``train.optim``).

    ``sgd`` is plain SGD (no momentum; ``betas``/``eps`` unused). ``weight_decay`` is decoupled for ``adamw``
    and L2-in-the-gradient for ``adam``/``sgd`` (PyTorch semantics).
    """

    name: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    eps: float = 1e-8

    def validate(self, prefix: str = "train.optim") -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"config key '{prefix}.name': {self.name!r} is not one of {', '.join(OPTIMIZERS)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"config key '{prefix}.lr': must be a positive number, got {self.lr!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"config key '{prefix}.betas': expected two numbers in [0, 1), got {self.betas!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"config key '{prefix}.weight_decay': must be >= 0, got {self.weight_decay!r}")
        if not self.eps > 0:
            raise ConfigError(f"config key '{prefix}.eps': must be > 0, got {self.eps!r}")


@dataclass
class SchedulerConfig:
    """Learning-rate schedule, applied per optimiser step (YAML section ``train.scheduler``).

    The factor multiplying each group's base lr at step ``s`` (0-based) is ``(s + 1) / warmup_steps`` during
    warm-up; after it, with ``t = (s - warmup_steps) / (total_steps - warmup_steps)``: ``none`` 1;
    ``linear`` from 1 down to ``min_lr_ratio`` linearly in ``t``; ``cosine`` half a cosine from 1 to
    ``min_lr_ratio``; ``exponential`` ``gamma ** (s - warmup_steps)`` (BigVGAN decays by 0.9999996 per
    step); ``step`` ``gamma ** epoch_index`` (one decay per epoch).
    """

    name: str = "none"  # none | linear | cosine | exponential | step
    warmup_steps: int = 0
    gamma: float = 0.9999996
    min_lr_ratio: float = 0.0

    def validate(self, prefix: str = "train.scheduler") -> None:
        if self.name not in SCHEDULERS:
            raise ConfigError(f"config key '{prefix}.name': {self.name!r} is not one of {', '.join(SCHEDULERS)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"config key '{prefix}.warmup_steps': must be >= 0, got {self.warmup_steps}")
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"config key '{prefix}.gamma': must be in (0, 1], got {self.gamma!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"config key '{prefix}.min_lr_ratio': must be in [0, 1], got {self.min_lr_ratio!r}")


@dataclass
class TrainConfig:
    """The training loop's settings (YAML section ``train``).

    ``batch_size`` is the number of items per optimiser step, summed over processes and accumulation steps:
    each of the ``world_size × grad_accum`` micro-batches holds about ``batch_size / (world_size × grad_accum)``
    items, so results do not depend on how many processes run. ``max_steps``, when set, overrides ``epochs``
    (training runs for that many optimiser steps). ``debug`` runs 2 batches × 2 epochs.
    """

    epochs: int = 50
    max_steps: int | None = None
    batch_size: int = 32
    grad_accum: int = 1
    clip_grad_norm: float | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    select_metric: str = "weighted_f1"
    select_mode: str = "max"  # max | min
    early_stop_patience: int | None = None  # epochs without improvement of select_metric
    keep_last: int = 2  # checkpoints kept besides the best (>= 1, resume needs the last one)
    eval_every_epochs: int = 1
    log_every_steps: int = 10
    seed: int = 0
    debug: bool = False

    def validate(self, prefix: str = "train") -> None:
        """Raise ConfigError naming the first invalid key (``train.batch_size`` etc.)."""
        positive = {
            "epochs": self.epochs, "batch_size": self.batch_size, "grad_accum": self.grad_accum,
            "keep_last": self.keep_last, "eval_every_epochs": self.eval_every_epochs,
            "log_every_steps": self.log_every_steps,
        }
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"config key '{prefix}.{key}': must be >= 1, got {value}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"config key '{prefix}.max_steps': must be >= 1 or null, got {self.max_steps}")
        if self.batch_size < self.grad_accum:
            raise ConfigError(
                f"config key '{prefix}.batch_size': {self.batch_size} items cannot fill {self.grad_accum} "
                f"accumulation steps ('{prefix}.grad_accum'); batch_size counts items per optimiser step"
            )
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ConfigError(f"config key '{prefix}.clip_grad_norm': must be > 0 or null, got {self.clip_grad_norm}")
        if self.select_mode not in SELECT_MODES:
            raise ConfigError(f"config key '{prefix}.select_mode': {self.select_mode!r} is not one of max, min")
        if not self.select_metric:
            raise ConfigError(f"config key '{prefix}.select_metric': must name a validation metric")
        if self.early_stop_patience is not None and self.early_stop_patience < 1:
            raise ConfigError(
                f"config key '{prefix}.early_stop_patience': must be >= 1 or null, got {self.early_stop_patience}"
            )
        self.optim.validate(prefix + ".optim")
        self.scheduler.validate(prefix + ".scheduler")

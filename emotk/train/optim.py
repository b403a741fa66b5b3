"""Optimisers (one per named family of parameter groups) and per-step learning-rate schedules.

The schedule is a pure function of the optimiser step (see :func:`lr_factor`), so its whole state is the
base learning rates: resuming restores them from JSON and the lr of step ``s`` is recomputed exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from emotk.train.config import OptimConfig, SchedulerConfig


def make_optimizer(cfg: OptimConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """Build the optimiser ``cfg.name`` (adamw | adam | sgd) over torch param-group dicts.

    Group keys (``lr``, ``weight_decay`` ...) override ``cfg`` per group, as in PyTorch.
    """
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                 weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    cfg.validate()  # raises ConfigError naming the key
    raise AssertionError(cfg.name)


def build_optimizers(model: torch.nn.Module, groups: list[dict] | None,
                     default: OptimConfig) -> dict[str, torch.optim.Optimizer]:
    """Turn a task's ``param_groups`` (or None = all trainable parameters) into named optimisers.

    A group dict may carry ``"optimizer"`` (name, default ``"main"``) and ``"optim"`` (an OptimConfig for that
    optimiser). Parameters without ``requires_grad`` are dropped; a parameter in two groups is an error.
    Returns ``{name: optimiser}`` in order of first appearance.
    """
    if groups is None:
        groups = [{"params": list(model.parameters())}]
    if not isinstance(groups, (list, tuple)):
        raise TypeError(f"param_groups() must return a list of dicts or None, got {type(groups).__name__}")
    by_name: dict[str, list[dict[str, Any]]] = {}
    configs: dict[str, OptimConfig] = {}
    seen: set[int] = set()
    for i, group in enumerate(groups):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"param_groups()[{i}] must be a dict with a 'params' entry")
        group = dict(group)
        name = str(group.pop("optimizer", "main"))
        ocfg = group.pop("optim", None)
        raw = group.pop("params")
        params = [raw] if isinstance(raw, torch.Tensor) else list(raw)
        params = [p for p in params if p.requires_grad]
        for p in params:
            if id(p) in seen:
                raise ValueError(f"param_groups()[{i}]: a parameter appears in more than one group")
            seen.add(id(p))
        if ocfg is not None:
            if not isinstance(ocfg, OptimConfig):
                raise TypeError(f"param_groups()[{i}]['optim'] must be an OptimConfig")
            ocfg.validate(f"param_groups()[{i}].optim")
            if name in configs and configs[name] != ocfg:
                raise ValueError(f"param_groups(): optimiser '{name}' is given two different 'optim' configs")
            configs[name] = ocfg
        if params:
            by_name.setdefault(name, []).append({"params": params, **group})
    if not by_name:
        from emotk.errors import EmotkError

        raise EmotkError("the model has no trainable parameters (every parameter has requires_grad=False)")
    return {name: make_optimizer(configs.get(name, default), gs) for name, gs in by_name.items()}


def lr_factor(step: int, cfg: SchedulerConfig, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based); see SchedulerConfig."""
    warm = cfg.warmup_steps
    if step < warm:
        return (step + 1) / warm
    if cfg.name == "none":
        return 1.0
    if cfg.name == "exponential":
        return cfg.gamma ** (step - warm)
    if cfg.name == "step":
        return cfg.gamma ** (step // max(steps_per_epoch, 1))
    span = max(total_steps - warm, 1)
    t = min(max((step - warm) / span, 0.0), 1.0)
    floor = cfg.min_lr_ratio
    if cfg.name == "linear":
        return floor + (1.0 - floor) * (1.0 - t)
    if cfg.name == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    cfg.validate()
    raise AssertionError(cfg.name)


class LRSchedule:
    """Sets each param group's ``lr`` to ``base_lr · lr_factor(step)`` before optimiser step ``step``."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, total_steps: int,
                 steps_per_epoch: int):
        self.optimizer = optimizer
        self.cfg = cfg
        self.total_steps = int(total_steps)
        self.steps_per_epoch = int(steps_per_epoch)
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]

    def apply(self, step: int) -> float:
        """Set the learning rates for ``step``; returns the factor used."""
        f = lr_factor(step, self.cfg, self.total_steps, self.steps_per_epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * f
        return f

    def state_dict(self) -> dict[str, Any]:
        return {"base_lrs": list(self.base_lrs), "name": self.cfg.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        base = [float(v) for v in state["base_lrs"]]
        if len(base) != len(self.optimizer.param_groups):
            from emotk.errors import DataError

            raise DataError(
                f"checkpoint schedule has {len(base)} parameter groups, the optimiser has "
                f"{len(self.optimizer.param_groups)}"
            )
        self.base_lrs = base

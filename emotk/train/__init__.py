"""One training loop with hooks (optimisers, accumulation, clipping, AMP, checkpoint/resume, early stop, DDP).

Importing ``emotk.train`` is cheap: the torch-based parts load on first use of the names below.

* :class:`TrainConfig`, :class:`OptimConfig`, :class:`SchedulerConfig` — the ``train`` config section
* :class:`TrainTask`, :class:`StepState` — the hooks a task supplies
* :class:`Trainer` — ``Trainer(cfg, task, run, runtime).fit(resume=...)`` / ``.evaluate(dataset)``
* :func:`load_model_weights` — weights from a checkpoint/run folder into a model (export, predict)
* :class:`Interrupted` — raised after a SIGTERM/SIGUSR1 checkpoint (exit code 3)
"""

from __future__ import annotations

import importlib
from typing import Any

from emotk.train.config import OptimConfig, SchedulerConfig, TrainConfig
from emotk.train.signals import Interrupted
from emotk.train.task import StepState, TrainTask

_LAZY = {
    "Trainer": "emotk.train.trainer",
    "load_model_weights": "emotk.train.checkpoint",
}

__all__ = ["OptimConfig", "SchedulerConfig", "TrainConfig", "TrainTask", "StepState", "Interrupted", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'emotk.train' has no attribute {name!r}")

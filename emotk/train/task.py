"""The hooks a task gives the trainer: model, datasets, batching, one training step, validation outputs/metrics.

A task subclasses :class:`TrainTask` and overrides the hooks it needs; the loop itself (optimisers,
accumulation, clipping, AMP, checkpoints, DDP, early stopping) lives in :class:`emotk.train.trainer.Trainer`.

Minimal task::

    class BlobTask(TrainTask):
        def build_model(self):        return nn.Linear(4, 3)
        def train_dataset(self):      return list_of_(x, y)
        def valid_dataset(self):      return other_list
        def training_step(self, model, batch, state):
            x, y = batch
            return {"loss": F.cross_entropy(model(x), y)}
        def validation_step(self, model, batch):
            x, y = batch
            return {"logits": model(x), "labels": y}
        def validation_metrics(self, outputs):
            return {"accuracy": (outputs["logits"].argmax(1) == outputs["labels"]).float().mean().item()}
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepState:
    """Where training stands, handed to :meth:`TrainTask.training_step`.

    ``step``: optimiser steps completed before this one (0-based index of the current step); ``epoch``:
    1-based; ``progress``: ``step / total_steps`` in [0, 1] (for the GRL schedule); ``world_size``/``rank``
    of the process group; ``device``: the ``torch.device`` batches are on; ``micro``: index of this
    micro-batch within the step (``0 .. accum-1``); ``accum``: micro-batches per step on this process;
    ``items``: items in this micro-batch; ``optimizer``: the optimiser this call's loss is for (tasks with
    several optimisers are called once per optimiser and micro-batch, in the order of
    :meth:`TrainTask.param_groups`); ``cache``: a dict shared by all calls of one training step (every
    optimiser and micro-batch) and fresh for the next, e.g. for a generator output used by both the
    discriminator and the generator losses (index it by ``micro``).
    """

    step: int
    epoch: int
    progress: float
    world_size: int = 1
    rank: int = 0
    device: Any = "cpu"
    micro: int = 0
    accum: int = 1
    items: int = 0
    optimizer: str = "main"
    cache: dict[str, Any] = field(default_factory=dict)


class TrainTask(abc.ABC):
    """Base class of every trainable task. Override the hooks; defaults are documented per method."""

    @abc.abstractmethod
    def build_model(self) -> Any:
        """Return the ``nn.Module`` to train (on CPU; the trainer moves it). Called once, after seeding."""

    @abc.abstractmethod
    def train_dataset(self) -> Any:
        """Return the training set: any object with ``__len__`` and ``__getitem__(int)`` (a torch Dataset)."""

    def valid_dataset(self) -> Any | None:
        """Return the validation set used for model selection and early stopping, or None (no selection)."""
        return None

    def collate(self, items: list) -> Any:
        """Turn a list of dataset items into a batch; default: ``torch.utils.data.default_collate``.

        Tensors anywhere inside the batch (dicts, lists, tuples, objects with ``.to``) are moved to the
        training device by the trainer.
        """
        from torch.utils.data import default_collate

        return default_collate(items)

    def param_groups(self, model: Any) -> list[dict] | None:
        """Optional parameter groups; None = every parameter with ``requires_grad`` in one group.

        Each dict holds ``"params"`` plus optional torch group options (``lr``, ``weight_decay``, ...).
        Two extra keys select several optimisers: ``"optimizer"`` (a name, default ``"main"``; groups with
        the same name share one optimiser, stepped in order of first appearance) and ``"optim"`` (an
        :class:`~emotk.train.config.OptimConfig` for that optimiser instead of ``train.optim``).
        """
        return None

    def item_weights(self, dataset: Any) -> Any:
        """Optional weight of each training item in its optimiser step (None = every item weighs 1).

        The trainer weights each micro-batch's loss by the summed weight of its items over that of the global
        batch, so the gradient does not depend on how a step is split over processes and accumulation steps.
        Use it when a training item holds a varying number of scored elements and the loss is a mean over the
        elements (ERC: a conversation weighs its labelled turns; the loss is the mean over labelled turns).
        """
        return None

    @abc.abstractmethod
    def training_step(self, model: Any, batch: Any, state: StepState) -> dict:
        """Compute the loss of one micro-batch: return ``{"loss": scalar Tensor, other scalars ...}``.

        The loss must be a mean over the micro-batch's items -- or over their elements, weighted as
        :meth:`item_weights` says (the trainer weights micro-batches by their item count, or summed item weight,
        so the gradient equals that of the whole global batch). Other scalar entries are averaged and logged to
        ``metrics.jsonl``.
        """

    def validation_step(self, model: Any, batch: Any) -> dict[str, Any]:
        """Per-item outputs of one validation batch (model in eval mode, no grad).

        Values are tensors whose first dimension is the batch's item count, or lists with one entry per
        item (ids, strings). The trainer gathers them over the whole set and all processes, in dataset order.
        """
        raise NotImplementedError(f"{type(self).__name__} must define validation_step() to use a validation set")

    def validation_metrics(self, outputs: dict[str, Any]) -> dict[str, float]:
        """Metrics over the gathered outputs of the whole set (rank 0 only); default: mean of ``"loss"``.

        ``outputs`` holds each key of :meth:`validation_step`, tensors concatenated along dimension 0 (or a
        list of per-item tensors when their trailing shapes differ between batches) and lists concatenated.
        """
        if "loss" not in outputs:
            raise NotImplementedError(
                f"{type(self).__name__} must define validation_metrics() (or return per-item 'loss' outputs)"
            )
        loss = outputs["loss"]
        if isinstance(loss, list):
            return {"loss": float(sum(float(v) for v in loss) / max(len(loss), 1))}
        return {"loss": float(loss.float().mean())}

    def on_epoch_start(self, epoch: int, model: Any) -> None:
        """Called at the start of each epoch (1-based), also when a run resumes in the middle of one."""
        return None

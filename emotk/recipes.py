"""The task table: each task's config schema, train entry point and inference artefact, and where recipes live.

A config file names its task (``task: ser.superb``); :data:`TASKS` maps the task to a :class:`TaskSpec` whose
entries are ``"module:attribute"`` strings imported lazily (``emotk --help`` and ``emotk config show`` stay cheap).
The CLI reads this table instead of wiring each task by hand. Every task package under ``emotk/models/<task>/``
has the same files (docs/EXTENDING.md): ``config.py`` (schema), ``model.py`` (nn.Modules), ``task.py`` (the
TrainTask and ``train(resolved, out, *, resume, overwrite) -> dict``), ``export.py`` (write/load the inference
artefact) and ``infer.py`` (inference over inputs).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from emotk.core.suggest import did_you_mean
from emotk.errors import UsageError


def load_attr(target: str) -> Any:
    """``"package.module:attribute"`` -> the attribute (imports the module)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class TaskSpec:
    """One task: ``schema`` (config dataclass), ``train`` (``train(resolved, out, *, resume, overwrite) -> dict``,
    None for tasks that do not train), ``load_export`` (inference artefact loader, None where there is none),
    ``recipe`` (the default config under configs/, None where the schema defaults are the recipe)."""

    name: str
    schema: str
    train: str | None = None
    load_export: str | None = None
    recipe: str | None = None
    summary: str = ""

    def schema_class(self) -> type:
        return load_attr(self.schema)

    def train_fn(self) -> Callable[..., dict]:
        if self.train is None:
            raise UsageError(f"task '{self.name}' has no training entry point")
        return load_attr(self.train)


def _spec(name: str, schema: str, **kw: Any) -> tuple[str, TaskSpec]:
    return name, TaskSpec(name, schema, **kw)


TASKS: dict[str, TaskSpec] = dict([
    _spec("data.synth", "emotk.data.synth:SynthConfig", summary="the built-in demo corpus"),
    _spec("demo", "emotk.demo:DemoConfig", recipe="demo", summary="the pipeline on the demo corpus"),
    _spec("pretrain.care", "emotk.models.care.config:CareConfig", train="emotk.models.care.task:train",
          load_export="emotk.models.care.export:load_export", recipe="pretrain/care",
          summary="CARE emotion-aware speech pre-training"),
    _spec("pretrain.text", "emotk.models.text.config:TextPretrainConfig", train="emotk.models.text.task:train",
          load_export="emotk.models.text.export:load_export", recipe="pretrain/text",
          summary="LLM-supervised text pre-training"),
    _spec("ser.superb", "emotk.models.ser.config:SerConfig", train="emotk.models.ser.task:train",
          load_export="emotk.models.ser.export:load_export", summary="SUPERB-protocol speech emotion recognition"),
    _spec("erc.hcam", "emotk.models.erc.config:ErcConfig", train="emotk.models.erc.task:train",
          load_export="emotk.models.erc.export:load_export", recipe="erc/iemocap-6-text",
          summary="HCAM emotion recognition in conversations"),
    _spec("transfer.zest", "emotk.models.zest.config:ZestConfig", train="emotk.models.zest.task:train",
          load_export="emotk.models.zest.export:load_bundle", summary="S2S-ZEST speaker / analysis stages"),
    _spec("transfer.vocoder", "emotk.models.zest.vocoder.config:VocoderConfig",
          train="emotk.models.zest.vocoder.task:train", load_export="emotk.models.zest.vocoder.export:load_generator",
          summary="S2S-ZEST BigVGAN vocoder"),
    _spec("evaluate.est", "emotk.eval.est.config:EstConfig", recipe="evaluate/est",
          summary="emotion style transfer evaluation"),
])


def configs_dir() -> Path:
    """The shipped configs/ folder ($EMOTK_CONFIGS overrides)."""
    env = os.environ.get("EMOTK_CONFIGS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "configs"


def task_spec(task: str) -> TaskSpec:
    if task not in TASKS:
        raise UsageError(f"unknown task '{task}'{did_you_mean(task, TASKS)}; known: {', '.join(sorted(TASKS))}")
    return TASKS[task]


def schema_for(task: str) -> type:
    return task_spec(task).schema_class()


def find_config(name_or_path: str | Path) -> Path:
    """A file path, or a recipe name relative to configs/ (with or without .yaml)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    base = configs_dir()
    for cand in (base / p, base / f"{p}.yaml"):
        if cand.is_file():
            return cand
    known = sorted(str(f.relative_to(base).with_suffix("")) for f in base.rglob("*.yaml"))
    raise UsageError(f"config '{name_or_path}' not found{did_you_mean(str(p), known)}; see `emotk config list`")

"""Which config schema belongs to which task, and where the shipped recipes live.

A config file names its task (``task: data.synth``); this table maps the task to its dataclass
schema (imported lazily) so ``emotk config show FILE`` can resolve any shipped or user file.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from emotk.errors import UsageError

TASKS: dict[str, str] = {
    "data.synth": "emotk.data.synth:SynthConfig",
    "demo": "emotk.demo:DemoConfig",
    "pretrain.care": "emotk.models.care.config:CareConfig",
    "ser.superb": "emotk.models.ser.config:SerConfig",
    "pretrain.text": "emotk.models.text.pretrain:TextPretrainConfig",
    "transfer.zest": "emotk.models.zest.config:ZestConfig",
    "transfer.vocoder": "emotk.models.zest.vocoder.config:VocoderConfig",
    "evaluate.est": "emotk.eval.est:EstConfig",
}


def configs_dir() -> Path:
    """The shipped configs/ folder ($EMOTK_CONFIGS overrides)."""
    env = os.environ.get("EMOTK_CONFIGS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "configs"


def schema_for(task: str) -> type:
    if task not in TASKS:
        import difflib

        close = difflib.get_close_matches(task, list(TASKS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UsageError(f"unknown task '{task}'{hint}; known: {', '.join(sorted(TASKS))}")
    module, cls = TASKS[task].split(":")
    return getattr(importlib.import_module(module), cls)


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
    import difflib

    close = difflib.get_close_matches(str(p), known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise UsageError(f"config '{name_or_path}' not found{hint}; see `emotk config list`")

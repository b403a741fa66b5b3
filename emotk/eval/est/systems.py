"""The systems of an EST run: ``--model [NAME=]DIR`` values and config ``systems`` names -> :class:`System` rows
(a model bundle, its ``NAME:fixed-durations`` ablation, or a floor of :mod:`emotk.eval.baselines`), and the
:class:`emotk.eval.systems.TransferSystem` of each (:func:`load_systems`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from emotk.core.names import name_problem
from emotk.errors import ConfigError, UsageError
from emotk.eval.baselines import BASELINES

DEFAULT_MODEL_NAME = "s2s-zest"
VARIANTS = ("fixed-durations",)


@dataclass(frozen=True)
class System:
    """One row group of the table: ``kind`` zest | world-baseline | copy-source; ``model`` for zest systems."""

    name: str
    kind: str
    model: str | None = None
    variant: str | None = None


def parse_models(items: Iterable[str | os.PathLike]) -> dict[str, Path]:
    """``--model [NAME=]DIR`` values -> {name: folder} (default name ``s2s-zest``; names must be unique)."""
    out: dict[str, Path] = {}
    for item in items:
        text = str(item)
        name, sep, path = text.partition("=")
        if not sep or os.sep in name or not name:
            name, path = DEFAULT_MODEL_NAME if not out else f"model{len(out) + 1}", text
        if name in BASELINES or ":" in name:
            raise UsageError(f"--model {text}: '{name}' cannot name a model (reserved or contains ':')")
        if name_problem(name) is not None:  # the name becomes OUT/audio/<name>/
            raise UsageError(f"--model {text}: '{name}' cannot name a model ({name_problem(name)})")
        if name in out:
            raise UsageError(f"--model {text}: the name '{name}' is given twice")
        out[name] = Path(os.path.expanduser(path))
    return out


def parse_systems(names: Sequence[str], models: Mapping[str, Any]) -> list[System]:
    """Config ``systems`` (or [] for the default) -> :class:`System` list, checked against the models."""
    wanted = list(names) or [*models, *BASELINES]
    out, seen = [], set()
    for name in wanted:
        if name in seen:
            raise ConfigError(f"config key 'systems': '{name}' is listed twice")
        seen.add(name)
        if name in BASELINES:
            out.append(System(name, name))
            continue
        model, _, variant = name.partition(":")
        if model not in models:
            known = ", ".join([*models, *BASELINES]) or "(no --model given)"
            raise ConfigError(f"config key 'systems': '{name}' is neither a baseline nor a --model name "
                              f"(known: {known}; a model variant is NAME:{VARIANTS[0]})")
        if variant and variant not in VARIANTS:
            raise ConfigError(f"config key 'systems': unknown variant '{variant}' of model '{model}' "
                              f"(known: {', '.join(VARIANTS)})")
        out.append(System(name, "zest", model, variant or None))
    return out


def load_systems(systems: Sequence[System], model_dirs: Mapping[str, Path], cfg: Any,
                 device: str) -> dict[str, Any]:
    """{system name: :class:`emotk.eval.systems.TransferSystem`} for the evaluated systems: model bundles through
    ``emotk.models.zest.infer.load_transfer_system`` (a model's variants share its loaded weights), the floors from
    :mod:`emotk.eval.baselines` (``cfg``: the :class:`EstConfig`)."""
    from emotk.eval.baselines import CopySource, WorldProsodyBaseline

    out: dict[str, Any] = {}
    loaded: dict[str, Any] = {}
    for system in systems:
        if system.kind == "copy-source":
            out[system.name] = CopySource()
        elif system.kind == "world-baseline":
            b = cfg.baseline
            out[system.name] = WorldProsodyBaseline(b.f0, b.tempo, b.max_tempo_change, b.f0_backend, b.f0_method)
        else:
            from emotk.models.zest.infer import load_transfer_system

            out[system.name] = load_transfer_system(
                model_dirs[system.model], name=system.name, device=device, synth=cfg.synth or None,
                duration_predictor=system.variant != "fixed-durations", share_with=loaded.get(system.model))
            loaded.setdefault(system.model, out[system.name])
    return out

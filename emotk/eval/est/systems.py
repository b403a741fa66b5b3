"""The systems of an EST run: ``--model [NAME=]DIR`` values and config ``systems`` names -> :class:`System` rows
(a model bundle, its ``NAME:fixed-durations`` ablation, or a floor of :mod:`emotk.eval.baselines`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

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

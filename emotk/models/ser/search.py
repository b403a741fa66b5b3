"""A small grid search over SER hyper-parameters, scored on the validation split only (``ser train --search``).

``SerConfig.search`` maps dotted config keys to candidate lists, e.g. ``{"train.optim.lr": [1e-3, 1e-4],
"model.dropout": [0.2, 0.5]}`` (YAML in configs/ser/*-strong.yaml; ``--search KEY=[v1,v2]`` on the command line
adds or replaces one key). :func:`grid` expands it to every combination (in key order, first key slowest).
For each fold, ``ser train`` trains one *trial* per combination with the first seed and scores it on that fold's
validation split (``train.select_metric``); no trial is ever evaluated on the test split. :func:`choose` picks the
best trial (ties: the earlier combination), and the fold's runs of every seed are then trained with the chosen
values. Trials live in ``OUT/search/<fold>/trial-NN/``; ``OUT/search.json``, ``run.json`` and ``summary.json``
record the grid, every trial's validation metrics and the chosen values per fold.

Keys that would change the cached features, the data or the runs themselves (``upstream.*``, ``data.*`` other than
``data.speaker_norm``, ``seeds``, ``task_type``, ``train.seed``, ``train.select_*``, ``search``) cannot be searched.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

from emotk.errors import ConfigError

MAX_TRIALS = 256  # a "small" search: beyond this the grid is almost certainly a typo
FORBIDDEN = ("upstream.", "data.", "seeds", "task_type", "train.seed", "train.select_metric", "train.select_mode",
             "search")
ALLOWED_DATA = ("data.speaker_norm",)


def parse_search(text: str) -> tuple[str, list[Any]]:
    """``'KEY=[v1, v2]'`` (YAML flow list) -> ``(KEY, [v1, v2])``; ConfigError with an example otherwise."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"--search {text!r}: expected KEY=[v1,v2,...], e.g. --search train.optim.lr=[1e-3,1e-4]")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        values = yaml.safe_load(raw)
    except yaml.YAMLError:
        values = None
    if not key or not isinstance(values, list):
        raise ConfigError(f"--search {text!r}: expected KEY=[v1,v2,...] (a list of candidate values), "
                          "e.g. --search model.dropout=[0.1,0.3]")
    return key, values


def check_search(space: Any, base: Any) -> dict[str, list[Any]]:
    """``space`` with every value coerced to its key's type (``"1e-3"`` -> 0.001), or ConfigError unless it is
    ``{dotted key: non-empty list}`` over searchable keys whose every value gives a valid config when set on
    ``base`` (a SerConfig) and the grid has at most :data:`MAX_TRIALS` trials."""
    from emotk.core.config import apply_overrides, to_dict

    if not isinstance(space, dict):
        raise ConfigError(f"search: expected a mapping of config keys to candidate lists, got {space!r}")
    out: dict[str, list[Any]] = {}
    for key, values in space.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"search: keys must be dotted config keys, got {key!r}")
        if key not in ALLOWED_DATA and any(key == f or (f.endswith(".") and key.startswith(f)) for f in FORBIDDEN):
            raise ConfigError(f"search: '{key}' cannot be searched (it changes the cached features, the data or the "
                              "runs); search over model.*, train.* (optimiser, epochs, patience), loss.* or "
                              "data.speaker_norm -- e.g. model.layers=[all,[-1]] instead of upstream.layers")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"search.{key}: expected a non-empty list of candidate values, got {values!r}")
        out[key] = []
        for value in values:
            node: Any = apply_overrides(_without_search(base), [(key, value)], what="--search")
            for part in key.split("."):
                node = getattr(node, part)
            out[key].append(to_dict(node))
    trials = 1
    for values in space.values():
        trials *= len(values)
    if trials > MAX_TRIALS:
        raise ConfigError(f"search: {trials} combinations (more than {MAX_TRIALS}); search fewer keys or values")
    return out


def grid(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of ``space`` as ``{key: value}`` (first key slowest); ``[{}]`` for an empty space."""
    keys = list(space)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(space[k] for k in keys))]


def trial_config(base: Any, values: dict[str, Any]) -> Any:
    """``base`` (a SerConfig) with ``values`` set and its ``search`` emptied (a trial or a chosen run)."""
    from emotk.core.config import apply_overrides

    return apply_overrides(_without_search(base), list(values.items()), what="--search")


def choose(trials: Sequence[dict[str, Any]], metric: str, mode: str = "max") -> int:
    """Index of the best trial by its ``valid`` metrics (``trials[i]["valid"][metric]``); ties go to the earlier
    trial. Only validation metrics are read. ConfigError when no trial has the metric (no validation split)."""
    scored = [(i, t["valid"][metric]) for i, t in enumerate(trials) if t.get("valid") and metric in t["valid"]]
    if not scored:
        raise ConfigError(f"search: no trial has a validation {metric}; a search needs a validation split")
    sign = 1.0 if mode == "max" else -1.0
    best = scored[0]
    for i, value in scored[1:]:
        if sign * value > sign * best[1]:
            best = (i, value)
    return best[0]


def describe(values: dict[str, Any]) -> str:
    """``{"model.dropout": 0.3}`` -> ``"model.dropout=0.3"`` (for logs and tables)."""
    import json

    return ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items()) or "(no search)"


def with_search(resolved: Any, texts: Sequence[str]) -> Any:
    """``resolved`` (a Resolved SerConfig) with ``--search KEY=[..]`` texts added to ``config.search`` (a key
    given again replaces the config file's list); validated, and recorded in ``sources``."""
    import dataclasses

    space = dict(resolved.config.search)
    for text in texts:
        key, values = parse_search(text)
        space[key] = values
    config = dataclasses.replace(resolved.config, search=space)
    config.validate()
    return dataclasses.replace(resolved, config=config, sources=[*resolved.sources, *(f"--search {t}" for t in texts)])


def _without_search(cfg: Any) -> Any:
    import dataclasses

    return dataclasses.replace(cfg, search={})

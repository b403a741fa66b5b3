"""Helpers shared by CLI modules: result printing, option types. Cheap to import."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import typer

from emotk.core.context import options

# Reusable option declarations.
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file (see configs/).")
SetOpt = typer.Option(
    None, "--set", help="Override a config value, e.g. --set train.lr=1e-4 (repeatable; unknown keys are errors)."
)
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace existing outputs.")
RootOpt = typer.Option(None, "--root", help="Named data root NAME=DIR for ${NAME}/... manifest paths (repeatable).")


def emit(result: Any, human: Callable[[Any], None] | str | None = None) -> None:
    """Print a result: JSON on stdout with --json, else the human form (rich table / text) on stdout."""
    if options.json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False, indent=2, default=str) + "\n")
        sys.stdout.flush()
        return
    if human is None:
        sys.stdout.write(json.dumps(result, ensure_ascii=False, indent=2, default=str) + "\n")
    elif isinstance(human, str):
        sys.stdout.write(human.rstrip("\n") + "\n")
    else:
        human(result)
    sys.stdout.flush()


def console():
    """A rich console on stdout for human-readable results (no colour when not a terminal)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for c in columns:
        t.add_column(str(c))
    for r in rows:
        t.add_row(*[str(v) for v in r])
    console().print(t)


def resolve_config(schema: type, task: str, file: Any = None, overrides: Any = (), base: Any = None):
    """:func:`emotk.core.config.resolve` plus the global ``--device`` written into ``runtime.device``.

    The CLI is the only place that reads the global options; library code takes the device from the
    resolved runtime section.
    """
    from emotk.core.config import resolve
    from emotk.core.runtime import with_device

    resolved = resolve(schema, task, file, list(overrides or ()), base=base)
    resolved.runtime = with_device(resolved.runtime, options.device)
    return resolved


def parse_roots(items: Any) -> dict[str, str]:
    """``--root`` values ``['IEMOCAP=/data/iemocap']`` -> ``{'IEMOCAP': '/data/iemocap'}`` (UsageError otherwise)."""
    from emotk.errors import UsageError

    roots = {}
    for item in items or ():
        if "=" not in item:
            raise UsageError(f"--root {item!r}: expected NAME=DIR")
        name, value = item.split("=", 1)
        roots[name.strip()] = value
    return roots


def metric_rows(agg: dict, percent: bool = False) -> list[list[str]]:
    """Table rows ``[metric, "mean ± std", per-run values]`` of an aggregate (``{name: {"mean", "std",
    "values"}}``); ``percent`` shows means and stds x 100 (the loss stays as it is)."""
    rows = []
    for name, v in agg.items():
        scale = 100.0 if percent and name != "loss" else 1.0
        digits = 2 if scale == 100.0 else 4
        rows.append([name, f"{v['mean'] * scale:.{digits}f} ± {v['std'] * scale:.{digits}f}",
                     ", ".join(f"{x:.4f}" for x in v["values"])])
    return rows

"""``emotk config``: list shipped recipes, show a resolved config and its hash."""

from __future__ import annotations

from typing import List, Optional

import typer

from emotk.cli.common import SetOpt, emit

app = typer.Typer(help="Configs: list recipes, show a resolved config with its hash.", no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """Shipped recipes under configs/ with their task."""
    import yaml

    from emotk.recipes import configs_dir

    base = configs_dir()
    rows = []
    for f in sorted(base.rglob("*.yaml")):
        try:
            task = (yaml.safe_load(f.read_text(encoding="utf-8")) or {}).get("task", "")
        except yaml.YAMLError:
            task = "<invalid YAML>"
        rows.append({"name": str(f.relative_to(base).with_suffix("")), "task": task, "path": str(f)})
    emit(rows, "\n".join(f"{r['name']:40s} {r['task']}" for r in rows))


@app.command("show")
def show(
    config: str = typer.Argument(..., help="A config file, a recipe name (see `emotk config list`) or a task name."),
    set_: Optional[List[str]] = SetOpt,
) -> None:
    """Print the resolved config (defaults < file < --set) and its hash (hyper-parameters only)."""
    from emotk.core.config import dump_yaml, read_yaml, resolve
    from emotk.recipes import TASKS, find_config, schema_for

    if config in TASKS:
        task, file = config, None
    else:
        file = find_config(config)
        task = read_yaml(file).get("task")
        if not task:
            from emotk.errors import ConfigError

            raise ConfigError(f"{file}: no 'task:' key, so its schema is unknown (known tasks: {', '.join(TASKS)})")
    resolved = resolve(schema_for(task), task, file, set_ or [])
    result = {"task": task, "hash": resolved.hash, "sources": resolved.sources, "config": resolved.as_dict()}
    emit(result, lambda r: typer.echo(f"# config hash: {r['hash']}\n# sources: {', '.join(r['sources'])}\n"
                                      + dump_yaml(resolved)))

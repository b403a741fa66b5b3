"""``emotk models``: the pretrained-model registry (list, info, path, download). Thin: the work is in emotk.hub."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emotk.cli.common import emit

app = typer.Typer(help="Pretrained-model registry: list, info, path, download.", no_args_is_help=True)


def _availability(name: str) -> dict:
    from emotk.hub.registry import get_spec
    from emotk.hub.resolve import locate

    spec = get_spec(name)
    found = locate(name)
    if found is not None:
        return {"available": True, "source": found.source, "location": str(found.path)}
    if spec.is_tiny:
        return {"available": True, "source": "built-in", "location": "(built in memory)"}
    return {"available": False, "source": None, "location": None}


@app.command("list")
def list_models(
    family: Optional[str] = typer.Option(None, "--family", "-f", help="Only this family (e.g. wavlm, whisper)."),
) -> None:
    """List registered models: name, family, format, whether a local copy exists, and where."""
    from emotk.errors import UsageError
    from emotk.hub.registry import families, list_specs

    if family is not None and family not in families():
        raise UsageError(f"unknown model family {family!r} (one of: {', '.join(families())})")
    rows = []
    for spec in list_specs(family):
        rows.append({"name": spec.name, "family": spec.family, "format": spec.format, "size": spec.size,
                     **_availability(spec.name)})

    def human(result: list[dict]) -> None:
        # Plain aligned columns: never truncated (rich tables cut long names on an 80-column pipe).
        head = ["name", "family", "format", "size", "local", "location"]
        body = [[r["name"], r["family"], r["format"], r["size"], "yes" if r["available"] else "no",
                 r["location"] or "-"] for r in result]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
        for row in [head, *body]:
            typer.echo("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())

    emit(rows, human)


@app.command("info")
def info(name: str = typer.Argument(..., help="Registry name, e.g. wavlm-base.")) -> None:
    """Show everything the registry knows about NAME, and where it was found (if anywhere)."""
    from emotk.hub.registry import get_spec
    from emotk.hub.resolve import candidates, default_dest, fetch_hint

    spec = get_spec(name)
    result = {**spec.to_dict(), **_availability(name),
              "looked_in": [loc.to_dict() for loc in candidates(name)],
              "fetch": fetch_hint(spec, default_dest(name))}

    def human(r: dict) -> None:
        keys = ["name", "family", "format", "kind", "description", "source", "files", "license", "size",
                "sample_rate", "available", "location", "fetch"]
        lines = [f"{k:12s} {', '.join(map(str, r[k])) if isinstance(r[k], list) else r[k]}"
                 for k in keys if r.get(k) not in (None, "", [], {})]
        lines.append("looked in    " + "; ".join(f"{x['source']}: {x['path']}" for x in r["looked_in"]))
        typer.echo("\n".join(lines))

    emit(result, human)


@app.command("path")
def path(
    name: str = typer.Argument(..., help="Registry name."),
    verify: bool = typer.Option(False, "--verify", help="Check the registry's sha256 digests of the files."),
) -> None:
    """Print the local path of NAME (exit 1 with a one-line message when it is not available)."""
    from emotk.hub.resolve import resolve

    found = resolve(name, verify=verify)
    emit({"name": name, "path": str(found)}, str(found))


@app.command("download")
def download(
    name: str = typer.Argument(..., help="Registry name."),
    dest: Optional[Path] = typer.Option(None, "--dest", help="Target folder (default: $EMOTK_MODELS/NAME)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Fetch again even when a complete copy exists."),
) -> None:
    """Fetch NAME into $EMOTK_MODELS/NAME (or --dest) as plain files; tiny-* models are written offline."""
    from emotk.hub.download import download as fetch

    found = fetch(name, dest=dest, overwrite=overwrite)
    emit({"name": name, "path": str(found)}, str(found))

"""``emotk pretrain``: emotion-aware pre-training (CARE) and LLM-supervised text pre-training (METHODS.md §2).

Thin: options -> the task's train entry point from the task table (:mod:`emotk.recipes`) -> print its result.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from emotk.cli.common import ConfigOpt, OverwriteOpt, SetOpt, emit, table

app = typer.Typer(help="Emotion-aware pre-training: CARE (speech) and text pre-training.", no_args_is_help=True)


def _overrides(set_: Optional[List[str]], data: Optional[Path]) -> list[str]:
    """--set values plus --data / the global --seed as config overrides."""
    from emotk.core.context import options

    overrides = list(set_ or [])
    if data is not None:
        overrides.append(f"data.manifest={json.dumps(str(data))}")
    if options.seed is not None:
        overrides.append(f"train.seed={options.seed}")
    return overrides


@app.command("care")
def care(
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Manifest (JSONL) with audio and text/asr_text; "
                                        "default: data.manifest of the config."),
    config: Optional[str] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (checkpoints, metrics, features/, export/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last checkpoint."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Pre-train CARE (semantic + acoustic targets); print the best validation losses and the export folder."""
    from emotk.cli.common import resolve_config as resolve
    from emotk.recipes import find_config, task_spec

    spec = task_spec("pretrain.care")
    resolved = resolve(spec.schema_class(), spec.name, find_config(config or spec.recipe), _overrides(set_, data))
    result = spec.train_fn()(resolved, out, resume=resume, overwrite=overwrite, argv=["emotk", *sys.argv[1:]])
    from emotk.train import distributed as dist

    if not dist.is_main():
        return

    def human(r: dict) -> None:
        best = r.get("best") or {}
        losses = ", ".join(f"{k} {best[k]:.4f}" for k in ("loss", "semantic_loss", "acoustic_loss") if k in best)
        typer.echo(f"care: {r.get('steps')} steps ({r.get('stopped')}); best validation {losses or 'n/a'}")
        typer.echo(f"export: {r['export']}  (use: emotk ser train --set upstream.name=care:{r['export']})")

    emit(result, human)


@app.command("text")
def text(
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Labelled manifest (emotk data label); default: "
                                        "data.manifest of the config."),
    config: Optional[str] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (checkpoints, metrics, export/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Fine-tune a text encoder on LLM sentiment pseudo-labels (thesis: RoBERTa-large, 10 epochs, lr 1e-4)."""
    from emotk.cli.common import resolve_config as resolve
    from emotk.recipes import find_config, task_spec

    spec = task_spec("pretrain.text")
    resolved = resolve(spec.schema_class(), spec.name, find_config(config or spec.recipe), _overrides(set_, data))
    summary = spec.train_fn()(resolved, out, resume=resume, overwrite=overwrite, argv=["emotk", *sys.argv[1:]])
    from emotk.train import distributed as dist

    if not dist.is_main():  # under torchrun/srun only rank 0 prints the result
        return

    def human(s: dict) -> None:
        valid = s.get("valid") or {}
        rows = [["encoder", s["encoder"]], ["train / valid", f"{s['data']['train']} / {s['data']['valid']}"],
                ["without label (skipped)", s["data"]["without_label"]], ["steps", s["steps"]],
                *[[f"valid {k}", f"{v:.4f}"] for k, v in valid.items()]]
        table("pretrain text", ["", "value"], rows)
        typer.echo(f"export: {s['export']}  (TextEncoder(model=...) / --set model.encoder=...)")

    emit(summary, human)

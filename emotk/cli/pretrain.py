"""``emotk pretrain``: emotion-aware pre-training (CARE). Thin: options -> one core call per command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from emotk.cli.common import ConfigOpt, OverwriteOpt, SetOpt, emit
from emotk.cli.text_pretrain import pretrain_text_command

app = typer.Typer(help="Emotion-aware pre-training: CARE (speech) and text pre-training.", no_args_is_help=True)
app.command("text")(pretrain_text_command)  # LLM-supervised text pre-training (METHODS.md §2)


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
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Manifest (JSONL) with audio and text/asr_text; default: data.manifest of the config."),
    config: Optional[str] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (checkpoints, metrics, features/, export/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last checkpoint."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Pre-train CARE (semantic + acoustic targets); print the best validation losses and the export folder."""
    from emotk.cli.common import resolve_config as resolve
    from emotk.core.context import options
    from emotk.models.care.config import TASK, CareConfig
    from emotk.models.care.task import pretrain
    from emotk.recipes import find_config

    resolved = resolve(CareConfig, TASK, find_config(config or "pretrain/care"), _overrides(set_, data))
    result = pretrain(resolved, out, resume=resume, overwrite=overwrite, device=options.device,
                      argv=["emotk", *sys.argv[1:]])
    from emotk.train import distributed as dist

    if not dist.is_main():
        return

    def human(r: dict) -> None:
        best = r.get("best") or {}
        losses = ", ".join(f"{k} {best[k]:.4f}" for k in ("loss", "semantic_loss", "acoustic_loss") if k in best)
        typer.echo(f"care: {r.get('steps')} steps ({r.get('stopped')}); best validation {losses or 'n/a'}")
        typer.echo(f"export: {r['export']}  (use: emotk ser train --set upstream.name=care:{r['export']})")

    emit(result, human)

"""Task command groups. Each becomes a thin layer over its core package as that capability lands."""

from __future__ import annotations

import typer

from emotk.cli.common import not_built


def _group(help_text: str, capability: str, issue: str) -> typer.Typer:
    app = typer.Typer(help=help_text, invoke_without_command=True, no_args_is_help=False)

    @app.callback()
    def _callback(ctx: typer.Context) -> None:
        if ctx.invoked_subcommand is None:
            not_built(capability, issue)

    return app


erc_app = _group(
    "[not built yet] Emotion recognition in conversations: HCAM and MiSTER-E.",
    "emotk erc (HCAM, MiSTER-E)", "a later issue",
)

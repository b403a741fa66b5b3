"""``emotk``: the entry point. Global options, command groups, error handling and exit codes.

Exit codes: 0 ok, 1 failed, 2 usage error, 3 interrupted after a checkpoint (resumable), 130 Ctrl-C.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from emotk import __version__
from emotk.cli import config as config_cli
from emotk.cli import data as data_cli
from emotk.cli import demo as demo_cli
from emotk.cli import erc as erc_cli
from emotk.cli import evaluate as evaluate_cli
from emotk.cli import features as features_cli
from emotk.cli import launch as launch_cli
from emotk.cli import models as models_cli
from emotk.cli import pretrain as pretrain_cli
from emotk.cli import ser as ser_cli
from emotk.cli import transfer as transfer_cli
from emotk.core.context import options, set_offline

app = typer.Typer(
    name="emotk",
    help="emotk — emotion in spoken language: pre-training, SER, ERC, emotion style transfer, evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"emotk {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    json_out: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors on stderr."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging; shows tracebacks on errors."),
    offline: bool = typer.Option(False, "--offline", help="Never touch the network (also HF_HUB_OFFLINE=1)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N (default: auto)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Global random seed (overrides the config's)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Global options go before or after the command (--json, -q, -v, --offline may appear anywhere)."""
    from emotk.core.log import setup_logging

    options.json = json_out
    options.verbosity = -1 if quiet else verbose
    options.device = device
    options.seed = seed
    set_offline(offline)
    setup_logging(options.verbosity)


app.add_typer(data_cli.app, name="data")
app.add_typer(features_cli.app, name="features")
app.add_typer(models_cli.app, name="models")
app.add_typer(pretrain_cli.app, name="pretrain")
app.add_typer(ser_cli.app, name="ser")
app.add_typer(erc_cli.app, name="erc")
app.add_typer(transfer_cli.app, name="transfer")
app.add_typer(evaluate_cli.app, name="evaluate")
app.add_typer(config_cli.app, name="config")
app.add_typer(launch_cli.app, name="launch")
app.command("demo")(demo_cli.demo)

# Flags that take no value and may appear anywhere on the command line (hoisted before the command).
_HOISTABLE = {"--json", "--quiet", "-q", "--verbose", "-v", "-vv", "-vvv", "--offline"}


def _hoist_global_flags(argv: list[str]) -> list[str]:
    if "--" in argv:
        cut = argv.index("--")
        head, tail = argv[:cut], argv[cut:]
    else:
        head, tail = argv, []
    flags = [a for a in head if a in _HOISTABLE]
    rest = [a for a in head if a not in _HOISTABLE]
    return flags + rest + tail


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn expected failures into one-line messages and documented exit codes."""
    from emotk.errors import EXIT_FAILED, EmotkError

    args = _hoist_global_flags(list(sys.argv[1:] if argv is None else argv))
    verbose = any(a in ("-v", "-vv", "-vvv", "--verbose") for a in args)
    command = typer.main.get_command(app)
    try:
        rc = command.main(args=args, prog_name="emotk", standalone_mode=False)
    except EmotkError as e:
        if verbose:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"emotk: error: {e}\n")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("emotk: interrupted\n")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)  # e.g. `emotk ... | head`
    except Exception as e:
        # Typer vendors click in recent versions, so match click's exception kinds by shape, not by class.
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):  # UsageError (2), ClickException (1)
            e.show()
            sys.exit(e.exit_code)
        if isinstance(getattr(e, "exit_code", None), int):  # Exit raised instead of returned
            sys.exit(e.exit_code)
        if type(e).__name__ == "Abort":
            sys.stderr.write("emotk: aborted\n")
            sys.exit(130)
        if verbose:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"emotk: error: {type(e).__name__}: {e} (run with --verbose for the traceback)\n")
        sys.exit(EXIT_FAILED)
    sys.exit(rc if isinstance(rc, int) else 0)

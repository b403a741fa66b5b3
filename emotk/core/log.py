"""Chatter goes to stderr; results go to stdout (see :mod:`emotk.cli.output`)."""

from __future__ import annotations

import logging
import sys

_LOGGER_NAME = "emotk"


def get_logger(name: str | None = None) -> logging.Logger:
    return logging.getLogger(_LOGGER_NAME if not name else f"{_LOGGER_NAME}.{name}")


def setup_logging(verbosity: int = 0) -> None:
    """-1 -> warnings only, 0 -> info, >=1 -> debug. Idempotent."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logger = logging.getLogger(_LOGGER_NAME)
    logger.setLevel(level)
    if not any(getattr(h, "_emotk", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._emotk = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (so redirection/capture keeps working)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class Progress:
    """A tiny progress reporter: a rich bar on a TTY, periodic log lines otherwise.

    Use as ``with Progress(total, "decoding") as p: p.advance()``.
    """

    def __init__(self, total: int | None, description: str, enabled: bool | None = None):
        from emotk.core.context import options

        self.total = total
        self.description = description
        self.enabled = options.show_progress if enabled is None else enabled
        self._bar = None
        self._task = None
        self.done = 0

    def __enter__(self) -> "Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                console=Console(stderr=True), transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

"""Chatter goes to stderr; results go to stdout (see :mod:`emotk.cli.output`)."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

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


PROGRESS_INTERVAL_ENV = "EMOTK_PROGRESS_INTERVAL"
DEFAULT_PROGRESS_INTERVAL = 30.0  # seconds between progress log lines off a terminal
FIRST_PROGRESS_LINE = 5.0  # seconds before the first such line (a loop that ends sooner logs none)
_clock = time.monotonic  # replaced in tests
T = TypeVar("T")


def progress_interval() -> float | None:
    """Seconds between progress log lines off a terminal: ``$EMOTK_PROGRESS_INTERVAL`` (``0``/``off``: none),
    else 30. Raises ConfigError for a value that is not a number."""
    raw = os.environ.get(PROGRESS_INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_PROGRESS_INTERVAL
    if raw.lower() in ("off", "none", "no", "false"):
        return None
    try:
        value = float(raw)
    except ValueError:
        from emotk.errors import ConfigError

        raise ConfigError(f"{PROGRESS_INTERVAL_ENV}={raw!r}: give seconds between progress lines (0 or off: none)")
    return value if value > 0 else None


def format_duration(seconds: float) -> str:
    """``4s``, ``5m20s``, ``2h03m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Progress:
    """Progress of a long loop on stderr: a rich bar on a terminal, plain log lines otherwise.

    Use as ``with Progress(total, "decoding", unit="utterances") as p: p.advance()``.

    enabled: ``False`` shows nothing; ``None`` (default) shows progress unless ``-q``; ``True`` always. On a
    terminal that is a transient rich bar; off a terminal (a log file, a batch job, a pipe) it is an INFO line of
    logger ``emotk.progress`` such as ``features: 120/1440 utterances (8%), 4.1/s, ETA 5m20s``, the first after
    5 s, then every ``interval`` seconds (None: ``$EMOTK_PROGRESS_INTERVAL``, else 30; 0: no lines), and a final
    ``done`` line when any line was written. A loop shorter than 5 s logs nothing. Lines are written from
    :meth:`advance`, so a single step longer than the interval delays the next line.
    """

    def __init__(self, total: int | None, description: str, enabled: bool | None = None, *,
                 unit: str = "items", interval: float | None = None):
        from emotk.core.context import options

        self.total = total
        self.description = description
        self.unit = unit
        if enabled is False or (enabled is None and options.verbosity < 0):
            self.mode = None
        else:
            self.mode = "bar" if sys.stderr.isatty() else "log"
        self.interval = progress_interval() if interval is None else (interval if interval > 0 else None)
        if self.mode == "log" and self.interval is None:
            self.mode = None
        self.enabled = self.mode is not None
        self._bar = None
        self._task = None
        self._log = get_logger("progress")
        self._start = 0.0
        self._next = 0.0
        self._lines = 0
        self.done = 0

    def __enter__(self) -> "Progress":
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                console=Console(stderr=True), transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total)
        elif self.mode == "log":
            self._start = _clock()
            self._next = self._start + min(FIRST_PROGRESS_LINE, self.interval)
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.advance(self._task, n)
        elif self.mode == "log":
            now = _clock()
            if now >= self._next:
                self._emit(now)
                self._next = now + self.interval

    def line(self, now: float | None = None, final: bool = False) -> str:
        """The log line for the current count, e.g. ``features: 120/1440 utterances (8%), 4.1/s, ETA 5m20s``."""
        elapsed = max((_clock() if now is None else now) - self._start, 1e-9)
        rate = self.done / elapsed
        count = f"{self.done}/{self.total} {self.unit}" if self.total else f"{self.done} {self.unit}"
        if self.total:
            count += f" ({100 * self.done / self.total:.0f}%)"
        speed = f"{rate:.1f}/s" if rate >= 1 else f"{elapsed / self.done:.1f}s each" if self.done else "0/s"
        if final:
            return f"{self.description}: {count} done in {format_duration(elapsed)}, {speed}"
        eta = ""
        if self.total and rate > 0 and self.done < self.total:
            eta = f", ETA {format_duration((self.total - self.done) / rate)}"
        return f"{self.description}: {count}, {speed}{eta}"

    def _emit(self, now: float, final: bool = False) -> None:
        self._lines += 1
        self._log.info(self.line(now, final))

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
        elif self.mode == "log" and self._lines and exc[0] is None:
            self._emit(_clock(), final=True)


def track(items: Iterable[T], description: str, total: int | None = None, *, unit: str = "items",
          enabled: bool | None = None) -> Iterator[T]:
    """Yield ``items`` while a :class:`Progress` counts them (one step when the loop asks for the next item).

    ``for sub in track(runs, "ser evaluate", unit="runs"):`` needs no re-indented ``with`` block; ``total``
    defaults to ``len(items)`` when it has one. A loop left by an exception writes no final line."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, description, enabled, unit=unit) as bar:
        for item in items:
            yield item
            bar.advance()

"""Graceful stop on SIGTERM / SIGUSR1: finish the current step, write a checkpoint, exit with code 3.

SLURM sends SIGUSR1 (``--signal=B:USR1@120``, forwarded by the batch script) or SIGTERM before a job's time
runs out; torchrun forwards SIGTERM to its workers. The handler only sets a flag — the trainer checks it
between optimiser steps (agreeing across processes), writes a checkpoint and raises :class:`Interrupted`,
which the CLI turns into exit code 3 (:data:`emotk.errors.EXIT_INTERRUPTED`): "resumable, run again with
``--resume``".
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from emotk.core.log import get_logger
from emotk.errors import EXIT_INTERRUPTED, EmotkError

log = get_logger("train")

STOP_SIGNALS = ("SIGTERM", "SIGUSR1")


class Interrupted(EmotkError):
    """Training stopped on a signal after writing a checkpoint (exit code 3, resumable).

    Attributes: ``signal`` (name, e.g. ``"SIGTERM"``), ``step`` (optimiser steps done), ``checkpoint`` (the
    checkpoint folder written) and ``result`` (the summary dict :meth:`Trainer.fit` would have returned, with
    ``"stopped": "signal"``).
    """

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str, *, signal: str | None = None, step: int | None = None,
                 checkpoint: str | None = None, result: dict[str, Any] | None = None):
        super().__init__(message)
        self.signal = signal
        self.step = step
        self.checkpoint = checkpoint
        self.result = result


class StopSignal:
    """Context manager that turns SIGTERM/SIGUSR1 into a flag (``requested``) instead of killing the process.

    Handlers can only be installed from the main thread; elsewhere the flag still works through
    :meth:`request` but OS signals keep their previous behaviour. Previous handlers are restored on exit.
    """

    def __init__(self, names: tuple[str, ...] = STOP_SIGNALS):
        self.names = tuple(n for n in names if hasattr(signal, n))
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def request(self, name: str = "SIGTERM") -> None:
        """Set the flag as if signal ``name`` had arrived (also used by the OS handler)."""
        if not self.requested:
            self.signal_name = name
        self.requested = True

    def _handle(self, signum: int, frame: Any) -> None:
        # Async-signal context: only set attributes here; the trainer acts on the flag between steps.
        self.request(signal.Signals(signum).name)

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is not threading.main_thread():
            log.debug("not in the main thread: SIGTERM/SIGUSR1 keep their default behaviour")
            return self
        for name in self.names:
            signum = getattr(signal, name)
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

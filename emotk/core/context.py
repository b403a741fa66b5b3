"""Process-wide options set by the CLI's global flags (``--json``, ``-q/-v``, ``--offline``, ...).

Library users can ignore this module; the defaults give a quiet, offline-safe library.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


@dataclass
class GlobalOptions:
    json: bool = False
    verbosity: int = 0  # -1 quiet, 0 normal, 1+ verbose (tracebacks shown)
    offline: bool = False
    device: str | None = None
    seed: int | None = None

    @property
    def show_progress(self) -> bool:
        """Progress bars only on an interactive terminal and never in quiet mode."""
        return self.verbosity >= 0 and sys.stderr.isatty()


options = GlobalOptions()


def set_offline(offline: bool) -> None:
    """Make every Hugging Face / hub library stay off the network."""
    options.offline = offline or options.offline
    if options.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"


def is_offline() -> bool:
    return options.offline or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")

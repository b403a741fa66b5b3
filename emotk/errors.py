"""Exceptions that the CLI turns into one-line messages and documented exit codes.

Exit codes (README "Exit codes"):
    0  success
    1  the work failed (bad input data, missing model, failed validation, ...)
    2  usage error (bad option, unknown config key, bad --set value)
    3  interrupted by SIGTERM/SIGUSR1 after writing a checkpoint (resumable)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 3


class EmotkError(Exception):
    """An expected failure with a message meant for the user (one line, names the file/line/key)."""

    exit_code = EXIT_FAILED


class UsageError(EmotkError):
    """Wrong options, unknown config keys, badly typed overrides."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A config file or override that does not fit the schema."""


class DataError(EmotkError):
    """Bad input data: manifests, audio files, label maps, corpus folders."""


class AudioError(DataError):
    """An audio file that cannot be used (missing, corrupt, empty, NaN, too short)."""


class ModelNotFoundError(EmotkError):
    """A pretrained model that is not available locally."""


class OutputExistsError(EmotkError):
    """Refusing to overwrite an existing output without --overwrite."""

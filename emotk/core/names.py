"""Names from data files that become file or folder names: one checker for all of them.

Protocol fold names (``OUT/<fold>/train.jsonl``, ``runs/<fold>-seed<S>/``), pair ids (``<id>.wav``), utterance
ids written as ``<id>.npz``, label-map and dataset names: a value read from a file the user did not write
themselves must never reach outside the output folder (``../../victim``, ``/etc``) or hide itself (``.x``).
:func:`safe_name` accepts a single path component and nothing else.
"""

from __future__ import annotations

from typing import Any

from emotk.errors import DataError

MAX_NAME_BYTES = 200  # leaves room for a suffix ("-seed12", ".shard-3-of-8.jsonl") within the usual 255 bytes


def name_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a file name (a short phrase), or None when it can."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "is empty"
    if "/" in value or "\\" in value:
        return "contains a path separator"
    if value.startswith("."):
        return "starts with '.'" if value not in (".", "..") else "is a relative path"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "contains a control character"
    if value != value.strip():
        return "starts or ends with whitespace"
    if len(value.encode("utf-8")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


def safe_name(value: Any, what: str, where: str) -> str:
    """``value`` when it can be used as one file or folder name, else a one-line DataError.

    what: what the value is (``"fold name"``, ``"key 'id'"``); where: the file (and line / key) it came from.
    The message reads ``<where>: <what> '<value>' cannot be a file name (<reason>)``.
    """
    problem = name_problem(value)
    if problem is not None:
        raise DataError(f"{where}: {what} {value!r} cannot be a file name ({problem})")
    return value

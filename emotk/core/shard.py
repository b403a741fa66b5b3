"""One ``--shard i/N`` for every command that splits its work over a SLURM array.

The CLI parses the option with :func:`parse_shard`; library functions take the parsed ``(i, N)`` tuple (or
None for "all of it"). Worker ``i`` of ``N`` owns items ``i, i+N, i+2N, ...`` of an agreed order
(:func:`select`), so the shards are disjoint and together complete. Files that one shard writes are named
with :func:`shard_name`, the one scheme every sharded output uses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence, TypeVar

from emotk.errors import UsageError

Shard = tuple[int, int]
T = TypeVar("T")

_SHARD_SUFFIX = re.compile(r"\.shard-(\d+)-of-(\d+)$")


def parse_shard(value: str | Sequence[int] | None) -> Shard | None:
    """``'i/N'`` (or ``(i, N)``) -> ``(i, N)`` with ``0 <= i < N``; None or ``''`` -> None. UsageError otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        parts = value.split("/")
        try:
            if len(parts) != 2:
                raise ValueError
            i, n = int(parts[0]), int(parts[1])
        except ValueError:
            raise UsageError(f"--shard {value!r}: expected I/N, e.g. --shard 0/4") from None
    else:
        try:
            i, n = (int(v) for v in value)
        except (TypeError, ValueError):
            raise UsageError(f"shard {value!r}: expected a pair (I, N)") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {i}/{n}: need 0 <= I < N (shards are numbered from 0)")
    return i, n


def select(items: Sequence[T], shard: Shard | None) -> list[T]:
    """The items worker ``shard = (i, N)`` owns, in order: positions ``i, i+N, ...`` (all when None)."""
    if shard is None:
        return list(items)
    i, n = shard
    return list(items[i::n])


def owned(count: int, shard: Shard | None) -> list[int]:
    """Indices ``j < count`` that worker ``shard`` owns (``j % N == i``; all when None)."""
    return select(range(count), shard)


def is_whole(shard: Shard | None) -> bool:
    """True when the shard is the whole job (None or ``(0, 1)``)."""
    return shard is None or shard[1] == 1


def shard_name(stem: str, shard: Shard | None, suffix: str = ".jsonl") -> str:
    """``stem + suffix`` for the whole job, ``stem.shard-i-of-N + suffix`` for one shard."""
    if is_whole(shard):
        return f"{stem}{suffix}"
    return f"{stem}.shard-{shard[0]}-of-{shard[1]}{suffix}"


def shard_files(folder: str | Path, stem: str, suffix: str = ".jsonl") -> list[Path]:
    """Every file :func:`shard_name` may have made for ``stem`` in ``folder`` (whole-job file first, then by
    shard index)."""
    folder = Path(folder)
    found: list[tuple[int, int, Path]] = []
    whole = folder / f"{stem}{suffix}"
    if whole.is_file():
        found.append((-1, 0, whole))
    for p in folder.glob(f"{stem}.shard-*-of-*{suffix}"):
        m = _SHARD_SUFFIX.search(p.name[: len(p.name) - len(suffix)] if suffix else p.name)
        if m and p.name.startswith(f"{stem}.shard-"):
            found.append((int(m.group(2)), int(m.group(1)), p))
    return [p for _, _, p in sorted(found)]

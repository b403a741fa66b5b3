"""Atomic writes and hashing. Every file emotk writes goes through here (temp file + rename)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from emotk.errors import OutputExistsError


def cache_dir() -> Path:
    """emotk's cache folder (demo corpus, converted model weights): ``$EMOTK_CACHE`` or ``~/.cache/emotk``."""
    env = os.environ.get("EMOTK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "emotk"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched, so a
    crash never leaves a half-written output behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp_path
        fsync_file(tmp_path)  # the data is on disk before the name points at it (power loss: old or new, never empty)
        os.replace(tmp_path, path)
        fsync_dir(path.parent)  # ... and the rename itself is on disk
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk (a folder written in its place, e.g. by a library: each file in it)."""
    path = Path(path)
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file():
                fsync_file(child)
        fsync_dir(path)
        return
    if not path.exists():  # the caller wrote nothing (or moved the file away): nothing to flush
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and Windows) do not fsync folders
        pass
    finally:
        os.close(fd)


def stale_temps(path: str | os.PathLike) -> list[Path]:
    """The temporary files :func:`atomic_path` made for ``path`` that are still there (a kill at the rename)."""
    import glob
    import re

    path = Path(path)
    pattern = re.compile(r"^\." + re.escape(path.name) + r"\.[A-Za-z0-9_]{8}(\..*)?$")  # mkstemp: 8 random chars
    try:
        return sorted(p for p in path.parent.glob(f".{glob.escape(path.name)}.*") if pattern.match(p.name))
    except OSError:
        return []


def remove_stale_temps(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Delete what a killed writer left beside each of ``paths`` (its outputs); returns the files removed.

    Call it at the start of a command, for the outputs this process owns: a concurrent writer of the same
    output would lose its temporary file."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    gone = []
    for target in paths:
        for tmp in stale_temps(target):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                gone.append(tmp)
    return gone


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def to_json(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=False, default=_json_default) + "\n"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays / scalars
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, to_json(obj, indent=indent))


def canonical_json(obj: Any) -> str:
    """Key-sorted, whitespace-free JSON: the form every hash in emotk is taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return sha256_bytes(canonical_json(obj).encode("utf-8"))


def check_writable(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse to replace an existing output unless ``overwrite`` is set."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it")
    return path

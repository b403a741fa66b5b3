"""One resumable, append-only JSONL journal for every long command that works item by item.

``data transcribe``, ``data label``, ``evaluate est`` (scores) and ``transfer --pairs`` record each finished
item in a journal. File layout: the first line is the header ``{"journal": KIND, "version": 1, ...identity}``;
each further line is one record. A record is written whole, flushed and fsynced before the command moves on,
so after a kill the file holds every item that was finished.

Torn-last-line policy (the same everywhere): a last line without its newline was being written when the
process died. Opening the journal to append cuts it off (the item is redone); reading a journal only skips it.
A complete line that is not a JSON object is corruption: a :class:`~emotk.errors.DataError` naming file:line.
Resuming a journal written with another identity (model, config hash, shard, ...) is a DataError naming the
key, so results of two different setups never mix. Sharded commands name their journals with
:func:`emotk.core.shard.shard_name`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from emotk.errors import DataError, OutputExistsError

JOURNAL_VERSION = 1


def _json_default(obj: Any) -> Any:
    from emotk.core.io import _json_default as default

    return default(obj)


def _dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_json_default)


def _parse(path: Path, data: bytes, kind: str | None) -> tuple[dict[str, Any] | None, list[dict[str, Any]], int]:
    """(header, records, byte length of the complete lines) of a journal's bytes."""
    complete = data.rfind(b"\n") + 1
    header: dict[str, Any] | None = None
    records: list[dict[str, Any]] = []
    for lineno, raw in enumerate(data[:complete].split(b"\n")[:-1], 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise DataError(f"{path}:{lineno}: corrupt journal line; pass --overwrite to start again") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object in the journal")
        if lineno == 1 and "journal" in obj:
            header = obj
            continue
        records.append(obj)
    if header is None and (records or complete < len(data)):
        raise DataError(f"{path}:1: not an emotk journal (no header line); pass --overwrite to start again")
    if header is not None and kind is not None and header.get("journal") != kind:
        raise DataError(f"{path}:1: a '{header.get('journal')}' journal, expected '{kind}'")
    return header, records, complete


def read_journal(path: str | os.PathLike, kind: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, records) of a journal, read only: a torn last line is skipped, the file is not changed."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: journal not found") from None
    header, records, _ = _parse(path, data, kind)
    return header or {"journal": kind, "version": JOURNAL_VERSION}, records


class Journal:
    """An open journal: :attr:`header`, the :attr:`records` found when it was opened, and :meth:`append`.

    Use :meth:`open`; close it (or use it as a context manager) when done.
    """

    def __init__(self, path: Path, header: dict[str, Any], records: list[dict[str, Any]], resumed: bool) -> None:
        self.path = path
        self.header = header
        self.records = records
        self.resumed = resumed
        self._fh = open(path, "a", encoding="utf-8")

    @classmethod
    def open(cls, path: str | os.PathLike, kind: str, identity: Mapping[str, Any] | None = None, *,
             resume: bool, overwrite: bool = False) -> "Journal":
        """Open ``path`` to append records of ``kind``.

        A new file gets the header ``{"journal": kind, "version": 1, **identity}``. An existing file is an
        :class:`OutputExistsError` unless ``resume`` (continue it; its identity must equal ``identity`` key by
        key) or ``overwrite`` (start again). ``resume`` and ``overwrite`` together: resume.
        """
        path = Path(path)
        identity = json.loads(_dumps(dict(identity or {})))  # what the header will read back as
        header = {"journal": kind, "version": JOURNAL_VERSION, **identity}
        if path.exists():
            if not resume and not overwrite:
                raise OutputExistsError(f"{path} already exists; pass --resume to continue it or --overwrite to "
                                        "start again")
            if resume:
                data = path.read_bytes()
                stored, records, complete = _parse(path, data, kind)
                if stored is not None:
                    for key, value in identity.items():
                        if stored.get(key) != value:
                            raise DataError(
                                f"{path}:1: journal was written with {key}={stored.get(key)!r}, this run has "
                                f"{value!r}; pass --overwrite to start again")
                    if complete < len(data):  # torn last line: cut it, its item is redone
                        with open(path, "r+b") as f:
                            f.truncate(complete)
                            f.flush()
                            os.fsync(f.fileno())
                    return cls(path, stored, records, resumed=True)
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        journal = cls(path, header, [], resumed=False)
        journal._write([header])
        from emotk.core.io import fsync_dir

        fsync_dir(path.parent)  # the new file's name is on disk too, not only its lines
        return journal

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record, flushed and fsynced before returning."""
        self._write([record])

    def extend(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write several records with one fsync (a batch is finished together)."""
        self._write(list(records))

    def _write(self, records: list[Mapping[str, Any]]) -> None:
        if not records:
            return
        text = "".join(_dumps(r) + "\n" for r in records)  # serialise first: a bad record writes nothing
        self._fh.write(text)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

"""Feature caches keyed by the extractor config hash: a sharded one per manifest, and a per-utterance one.

Two formats live here:

* :class:`FeatureCache` (format ``emotk.feature_cache``): the storage shards of one manifest's utterance set,
  partitioned for ``emotk features extract --shard i/N`` (described below). Its folder belongs to one id set.
* :class:`UtteranceCache` (format ``emotk.utterance_cache``): features stored per utterance, keyed by id, audio
  file (stat, else sha256 of its bytes) and segment, so a subset, a superset or another manifest of the same
  audio reuses whatever is stored and encodes only what is missing (SER's cache; layout, keys, crash and
  concurrency rules in its docstring). :func:`open_cache` opens either.

Layout of a :class:`FeatureCache`::

    DIR/<kind>-<hash12>/
        meta.json                   kind, extractor config, config hash, manifest sha256, ids sha256,
                                    shard size, number of storage shards, emotk version
        shard-00000.safetensors     the arrays of up to ``shard_size`` utterances
        shard-00000.json            the shard's index; written atomically *after* its safetensors file,
                                    so its presence is the mark of a complete shard; it records the data
                                    file's size and sha256 (``"data": {"size", "sha256"}``)
        ...

``hash12`` is the first 12 hex digits of the sha256 of the canonical JSON of
``{"task": kind, "config": config}`` (:func:`emotk.core.config.config_hash`), so a cache is reused
only by the same extractor with the same settings.

Partition (documented contract):
    * the manifest's ids are **sorted**; storage shard ``j`` holds the contiguous block
      ``ids[j*shard_size:(j+1)*shard_size]``;
    * a worker ``--shard i/N`` owns the storage shards ``j`` with ``j % N == i`` (round-robin over
      blocks, :func:`emotk.core.shard.owned`), so the N workers' id sets are disjoint and together
      complete, for any N, and a worker's shards never touch another worker's files (a SLURM array
      needs no locking).
Resume: a complete shard (index present) is never recomputed; only missing shards are processed, so
a killed run loses at most the shard it was writing. An index is not trusted blindly: on resume each of this
worker's complete shards is checked against the size and sha256 its index records (:meth:`FeatureCache.
shard_problem`); a deleted, truncated or corrupt shard (or an unreadable index) is reported and recomputed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from emotk.core.io import atomic_path, atomic_write_json, sha256_bytes
from emotk.core.shard import owned
from emotk.errors import DataError, OutputExistsError, UsageError

CACHE_FORMAT = "emotk.feature_cache"
CACHE_VERSION = 1
DEFAULT_SHARD_SIZE = 64

Arrays = dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------------
# shards
# ---------------------------------------------------------------------------------------------
def shard_blocks(ids: Iterable[str], shard_size: int) -> list[list[str]]:
    """Sorted ids cut into contiguous blocks of ``shard_size`` (the storage shards)."""
    if shard_size < 1:
        raise UsageError(f"shard_size must be >= 1, got {shard_size}")
    ordered = sorted(ids)
    return [ordered[s : s + shard_size] for s in range(0, len(ordered), shard_size)]


def ids_sha256(ids: Iterable[str]) -> str:
    return sha256_bytes("\n".join(sorted(ids)).encode("utf-8"))


def cache_dir_name(kind: str, config: Any) -> tuple[str, str]:
    """(folder name ``<kind>-<hash12>``, full sha256 config hash) for an extractor config."""
    from emotk.core.config import config_hash

    full = config_hash(config, task=kind)
    return f"{kind}-{full[:12]}", full


# ---------------------------------------------------------------------------------------------
# the cache
# ---------------------------------------------------------------------------------------------
def _read_meta(folder: Path, fmt: str, what: str) -> dict[str, Any]:
    """A cache folder's meta.json, checked to be format ``fmt``; one-line DataError otherwise."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise DataError(f"{folder}: not a feature cache (no meta.json)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{meta_path}: invalid JSON ({e.msg})") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise DataError(f"{meta_path}: not an emotk {what}")
    return meta


class FeatureCache:
    """Read/write access to one ``<kind>-<hash12>`` cache folder.

    Open an existing cache with ``FeatureCache(path)`` (or :meth:`open`); make or continue one with
    :meth:`create`. Reading: :meth:`ids`, :meth:`get`, :meth:`items`, ``id in cache``, ``len(cache)``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.meta: dict[str, Any] = _read_meta(self.path, CACHE_FORMAT, "feature cache")
        self.bad_shards: dict[int, str] = {}  # shard -> why it was recomputed (create(resume=True))
        self._where: dict[str, tuple[int, dict[str, Any]]] | None = None  # id -> (shard, index entry)

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike, kind: str, config: Any) -> "FeatureCache":
        """The cache of ``kind`` with ``config`` under ``root`` (DataError when it does not exist)."""
        name, _ = cache_dir_name(kind, config)
        return cls(Path(root) / name)

    @classmethod
    def create(
        cls,
        root: str | os.PathLike,
        kind: str,
        config: Any,
        ids: Sequence[str],
        manifest_sha256: str | None = None,
        shard_size: int = DEFAULT_SHARD_SIZE,
        shard: tuple[int, int] | None = None,
        resume: bool = False,
        overwrite: bool = False,
    ) -> "FeatureCache":
        """Make (or continue) the cache for ``kind``/``config`` over ``ids`` under ``root``.

        Without ``resume``/``overwrite``, finding complete shards that this worker (``shard``) owns is
        an OutputExistsError. ``overwrite`` deletes them (the whole folder when ``shard`` is None).
        A cache built over other ids or another shard size cannot be continued (DataError).
        """
        from emotk import __version__
        from emotk.core.config import to_dict

        if len(set(ids)) != len(ids):
            raise DataError("feature cache: duplicate utterance ids in the manifest")
        name, full_hash = cache_dir_name(kind, config)
        path = Path(root) / name
        if overwrite and shard is None and path.exists():
            shutil.rmtree(path)
        blocks = shard_blocks(ids, shard_size)
        meta = {
            "format": CACHE_FORMAT,
            "format_version": CACHE_VERSION,
            "kind": kind,
            "config": to_dict(config),
            "config_hash": full_hash,
            "manifest_sha256": manifest_sha256,
            "ids_sha256": ids_sha256(ids),
            "num_ids": len(ids),
            "shard_size": int(shard_size),
            "num_shards": len(blocks),
            "partition": "sorted ids; storage shard j = contiguous block j; worker i/N owns blocks j % N == i",
            "emotk_version": __version__,
        }
        meta_path = path / "meta.json"
        if meta_path.is_file():
            cache = cls(path)
            old = cache.meta
            if old.get("ids_sha256") != meta["ids_sha256"] or old.get("shard_size") != meta["shard_size"]:
                raise DataError(
                    f"{path}: this cache was built over other utterances or another shard size "
                    f"({old.get('num_ids')} ids, shard size {old.get('shard_size')}); "
                    "pass --overwrite or write to another folder"
                )
            if old.get("manifest_sha256") != manifest_sha256:
                from emotk.core.log import get_logger

                get_logger("features").warning(
                    f"{path}: manifest changed since the cache was started (same ids); continuing"
                )
        else:
            meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            atomic_write_json(meta_path, meta)
            cache = cls(path)
        mine = owned(len(blocks), shard)
        done = [j for j in mine if cache.is_complete(j)]
        if done and overwrite:
            for j in done:
                for p in (cache._index_path(j), cache._data_path(j)):
                    if p.exists():
                        p.unlink()
        elif done and not resume:
            raise OutputExistsError(
                f"{path} already holds {len(done)} of this run's {len(mine)} shards; "
                "pass --resume to continue or --overwrite to recompute"
            )
        cache.bad_shards = {}
        for j in done if resume and not overwrite else []:
            problem = cache.shard_problem(j)
            if problem is not None:  # its index is a lie: drop the shard so it is recomputed
                from emotk.core.log import get_logger

                get_logger("features").warning(f"{cache._data_path(j)}: {problem}; recomputing the shard")
                cache.bad_shards[j] = problem
                for p in (cache._index_path(j), cache._data_path(j)):
                    p.unlink(missing_ok=True)
        cache._where = None
        cache._remove_stale_temps(mine)
        cache._blocks = blocks
        return cache

    # ---- layout -----------------------------------------------------------------------------
    def _data_path(self, j: int) -> Path:
        return self.path / f"shard-{j:05d}.safetensors"

    def _index_path(self, j: int) -> Path:
        return self.path / f"shard-{j:05d}.json"

    def _remove_stale_temps(self, blocks: Iterable[int]) -> None:
        """Temp files a killed writer left behind for this worker's shards (no other worker owns them)."""
        for j in blocks:
            for p in self.path.glob(f".shard-{j:05d}.*"):
                p.unlink(missing_ok=True)

    def blocks(self) -> list[list[str]]:
        """Storage shards as lists of ids (only after :meth:`create`)."""
        blocks = getattr(self, "_blocks", None)
        if blocks is None:
            raise UsageError("the shard plan is only known to a cache opened with FeatureCache.create()")
        return blocks

    def is_complete(self, j: int) -> bool:
        return self._index_path(j).is_file()

    def shard_problem(self, j: int, full: bool = True) -> str | None:
        """Why complete shard ``j`` cannot be trusted (a short phrase), or None when it checks out.

        Checks that its index reads and belongs to shard ``j`` of this cache, and that the data file exists
        with the size (and, with ``full``, the sha256) the index records. Indexes written before sizes were
        recorded get a structural check instead (the safetensors header covers the file exactly).
        """
        try:
            index = json.loads(self._index_path(j).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return "unreadable shard index"
        if not isinstance(index, dict) or index.get("shard") != j or not isinstance(index.get("entries"), dict):
            return "shard index of another shard or format"
        if index.get("config_hash") != self.meta.get("config_hash"):
            return "shard index of another extractor config"
        return _data_problem(self._data_path(j), index, full)

    def complete_shards(self) -> list[int]:
        return [j for j in range(int(self.meta["num_shards"])) if self.is_complete(j)]

    # ---- writing ----------------------------------------------------------------------------
    def write_shard(self, j: int, arrays: Mapping[str, Mapping[str, np.ndarray]],
                    skipped: Mapping[str, str] | None = None) -> None:
        """Store shard ``j``: ``arrays`` maps id -> {name: array}; ``skipped`` maps id -> reason.

        The safetensors file is written first, the index last (both atomically), so a shard is
        either complete or absent.
        """
        from safetensors.numpy import save_file

        skipped = dict(skipped or {})
        tensors: dict[str, np.ndarray] = {}
        entries: dict[str, dict[str, Any]] = {}
        order = sorted(arrays)
        for pos, uid in enumerate(order):
            entries[uid] = {}
            for name, arr in arrays[uid].items():
                a = np.ascontiguousarray(np.asarray(arr))
                if a.dtype == np.float64:
                    a = a.astype(np.float32)
                key = f"{pos}.{name}"
                tensors[key] = a
                entries[uid][name] = {"key": key, "shape": list(a.shape), "dtype": str(a.dtype)}
        data = None
        if tensors:
            with atomic_path(self._data_path(j), suffix=".safetensors") as tmp:
                save_file(tensors, str(tmp), metadata={"config_hash": self.meta["config_hash"], "shard": str(j)})
                data = _file_record(tmp)
        index = {"shard": j, "complete": True, "ids": order, "entries": entries, "skipped": skipped,
                 "config_hash": self.meta["config_hash"], "data": data,
                 "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_json(self._index_path(j), index)
        self._where = None

    # ---- reading ----------------------------------------------------------------------------
    def _index(self, j: int) -> dict[str, Any]:
        try:
            return json.loads(self._index_path(j).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{self._index_path(j)}: unreadable shard index ({e})") from None

    def _locate(self) -> dict[str, tuple[int, dict[str, Any]]]:
        if self._where is None:
            where: dict[str, tuple[int, dict[str, Any]]] = {}
            for j in self.complete_shards():
                for uid, entry in self._index(j)["entries"].items():
                    where[uid] = (j, entry)
            self._where = where
        return self._where

    def ids(self) -> list[str]:
        """Sorted ids with stored features (complete shards only; skipped ids excluded)."""
        return sorted(self._locate())

    def skipped(self) -> dict[str, str]:
        """id -> reason for utterances skipped (``skip_bad``) in complete shards."""
        out: dict[str, str] = {}
        for j in self.complete_shards():
            out.update(self._index(j).get("skipped", {}))
        return dict(sorted(out.items()))

    def __contains__(self, uid: object) -> bool:
        return uid in self._locate()

    def __len__(self) -> int:
        return len(self._locate())

    def get(self, uid: str, name: str | None = None) -> Arrays | np.ndarray:
        """Arrays of utterance ``uid`` as {name: array}; with ``name``, that one array.

        Raises KeyError-like DataError for an unknown id or name.
        """
        from safetensors import safe_open

        where = self._locate()
        if uid not in where:
            raise DataError(f"{self.path}: no features for id '{uid}'")
        j, entry = where[uid]
        names = [name] if name is not None else list(entry)
        for n in names:
            if n not in entry:
                raise DataError(f"{self.path}: id '{uid}' has no array '{n}' (has: {', '.join(entry)})")
        with safe_open(str(self._data_path(j)), framework="numpy") as f:
            out = {n: f.get_tensor(entry[n]["key"]) for n in names}
        return out[name] if name is not None else out

    def items(self) -> Iterator[tuple[str, Arrays]]:
        """(id, {name: array}) for every stored utterance, in sorted id order (one file open per shard)."""
        from safetensors import safe_open

        for j in self.complete_shards():
            entries = self._index(j)["entries"]
            if not entries:
                continue
            with safe_open(str(self._data_path(j)), framework="numpy") as f:
                for uid in sorted(entries):
                    yield uid, {n: f.get_tensor(e["key"]) for n, e in entries[uid].items()}

    def status(self) -> dict[str, Any]:
        """Counts for ``features info``: shards complete/total, ids stored/skipped/expected."""
        done = self.complete_shards()
        total = int(self.meta["num_shards"])
        return {
            "path": str(self.path),
            "kind": self.meta["kind"],
            "config_hash": self.meta["config_hash"],
            "manifest_sha256": self.meta.get("manifest_sha256"),
            "shards_complete": len(done),
            "shards_total": total,
            "complete": len(done) == total,
            "ids_stored": len(self),
            "ids_skipped": len(self.skipped()),
            "ids_expected": int(self.meta["num_ids"]),
        }

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.path)!r}, kind={self.meta['kind']!r})"


def _file_record(path: Path) -> dict[str, Any]:
    """``{"size", "sha256"}`` of a written data file, kept in its index so a reader can check the file."""
    from emotk.core.io import sha256_file

    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def _data_problem(data_path: Path, index: Mapping[str, Any], full: bool) -> str | None:
    """Why the data file of a shard/chunk index is not what the index says, or None."""
    entries = index.get("entries")
    record = index.get("data")
    if not entries and record is None:
        return None  # nothing stored (every utterance skipped): no data file
    try:
        size = data_path.stat().st_size
    except OSError:
        return "data file is missing"
    if isinstance(record, dict) and "size" in record:
        if size != record["size"]:
            return f"data file is {size} bytes, its index says {record['size']} (truncated or replaced)"
        if full and record.get("sha256"):
            from emotk.core.io import sha256_file

            if sha256_file(data_path) != record["sha256"]:
                return "data file content differs from its index (sha256): corrupt"
        return None
    return _safetensors_problem(data_path, size)


def _safetensors_problem(path: Path, size: int) -> str | None:
    """A structural check of a safetensors file (for indexes without a recorded size): the header parses and
    its tensors end exactly at the end of the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or 8 + n > size:
                return "data file is truncated or not a safetensors file"
            header = json.loads(f.read(n).decode("utf-8"))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError):
        return "data file has a corrupt header"
    if 8 + n + max(ends, default=0) != size:
        return "data file is truncated or has trailing bytes"
    return None


# ---------------------------------------------------------------------------------------------
# the per-utterance cache
# ---------------------------------------------------------------------------------------------
UTTERANCE_FORMAT = "emotk.utterance_cache"
UTTERANCE_VERSION = 1
DEFAULT_CHUNK_SIZE = 64
ORPHAN_SECONDS = 3600.0  # a chunk's data file without an index, or a temp file, older than this is debris


def _segment_value(x: Any) -> float | None:
    return None if x is None else round(float(x), 6)


class AudioSource:
    """An utterance's audio: the file (made absolute, symlinks resolved) and segment (seconds; None = whole file).

    :meth:`stat` (size, mtime_ns) and :meth:`sha256` (the file's bytes) are computed once, when first needed.
    """

    def __init__(self, path: str | os.PathLike, start: Any = None, end: Any = None) -> None:
        self.path = os.path.realpath(os.fspath(path))
        self.start = _segment_value(start)
        self.end = _segment_value(end)
        self._stat: tuple[int, int] | None | bool = False
        self._sha: str | None = None

    def stat(self) -> tuple[int, int] | None:
        """(size in bytes, mtime in ns), or None when the file cannot be read."""
        if self._stat is False:
            try:
                st = os.stat(self.path)
                self._stat = (int(st.st_size), int(st.st_mtime_ns))
            except OSError:
                self._stat = None
        return self._stat  # type: ignore[return-value]

    def sha256(self) -> str | None:
        """The sha256 of the file's bytes (None when it cannot be read)."""
        if self._sha is None and self.stat() is not None:
            from emotk.core.io import sha256_file

            try:
                self._sha = sha256_file(self.path)
            except OSError:
                return None
        return self._sha

    def __repr__(self) -> str:
        return f"AudioSource({self.path!r}, start={self.start}, end={self.end})"


class UtteranceCache:
    """Features stored per utterance: any manifest reuses whatever is stored, whatever set it came from.

    Layout::

        ROOT/<kind>-<hash12>/
            meta.json                   format "emotk.utterance_cache", kind, extractor config, config hash,
                                        chunk size, emotk version (written once, atomically)
            chunk-<time>-<host>-<pid>-<rand>.safetensors   the arrays of up to ``chunk_size`` utterances
            chunk-<time>-<host>-<pid>-<rand>.json          its index, written atomically *after* the data file:
                                        its presence is the mark of a complete chunk

    ``hash12`` is taken over ``{"task": kind, "config": config}`` (as :class:`FeatureCache`): a folder holds
    the features of one extractor with one config. Each index lists its utterances as entries ``{"id", "path",
    "size", "mtime_ns", "sha256", "start", "end", "arrays": {name: {"key", "shape", "dtype"}}}``: the id, the
    audio file's absolute path, size and modification time when it was read, the sha256 of its bytes, and the
    segment (seconds, None = whole file).

    Lookup of an utterance ``(id, file, segment)`` (:meth:`lookup`):
        1. an entry with the same id and segment whose path, size and mtime equal the file's now: reused without
           reading the file (the common case: a rerun, a subset, a superset, another fold);
        2. otherwise the file's sha256 is computed and an entry with that sha256 and segment (any id, any path)
           is reused -- a touched, copied or moved corpus, or the same audio under another id;
        3. otherwise the utterance is missing and is encoded again. An edited file (new bytes) therefore never
           reuses stale features; only an edit that keeps the size *and* the nanosecond mtime (``touch -r``)
           and the id would go unnoticed.

    Crash and concurrency safety: chunks are written by one process each under unique names (no two writers
    ever share a file), data file first, index last, both atomically (temp file + rename). A killed writer
    loses at most the chunk it was filling; its leftovers (a data file without index, temp files) are ignored
    by readers and removed by any writer once older than an hour. Two processes that extract the same missing
    utterance at the same time both store it; readers take the first complete chunk in name order. Nothing is
    ever rewritten in place, so readers never see a half-written file. Each index records its data file's
    size and sha256; a chunk whose data file is missing or of another size is not used (:meth:`refresh`).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.meta: dict[str, Any] = _read_meta(self.path, UTTERANCE_FORMAT, "per-utterance feature cache")
        self._chunks: dict[str, list[dict[str, Any]]] = {}
        self._by_id: dict[str, list[dict[str, Any]]] = {}
        self._by_sha: dict[tuple[str, float | None, float | None], dict[str, Any]] = {}
        self.bad_chunks: dict[str, str] = {}  # chunk name -> why it is not used (refresh)
        self.refresh()

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, kind: str, config: Any,
               chunk_size: int = DEFAULT_CHUNK_SIZE) -> "UtteranceCache":
        """Open the cache of ``kind``/``config`` under ``root``, making it (meta.json) when absent."""
        from emotk import __version__
        from emotk.core.config import to_dict

        if chunk_size < 1:
            raise UsageError(f"chunk_size must be >= 1, got {chunk_size}")
        name, full_hash = cache_dir_name(kind, config)
        path = Path(root) / name
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            meta = {
                "format": UTTERANCE_FORMAT, "format_version": UTTERANCE_VERSION, "kind": kind,
                "config": to_dict(config), "config_hash": full_hash, "chunk_size": int(chunk_size),
                "keys": "id + segment + (path, size, mtime_ns), else sha256 of the audio file + segment",
                "emotk_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            atomic_write_json(meta_path, meta)  # two creators write the same facts; the rename is atomic
        cache = cls(path)
        if cache.meta.get("config_hash") != full_hash:
            raise DataError(f"{path}: holds features of another config (hash {cache.meta.get('config_hash')})")
        return cache

    @classmethod
    def open(cls, root: str | os.PathLike, kind: str, config: Any) -> "UtteranceCache":
        """The cache of ``kind`` with ``config`` under ``root`` (DataError when it does not exist)."""
        return cls(Path(root) / cache_dir_name(kind, config)[0])

    # ---- index ------------------------------------------------------------------------------
    def _data_path(self, chunk: str) -> Path:
        return self.path / f"{chunk}.safetensors"

    def refresh(self) -> None:
        """Read the indexes of chunks completed since the last look (by this or another process).

        A chunk whose index does not read or whose data file is missing or has another size than its index
        records is left out (warned about once, listed in :attr:`bad_chunks`): its utterances count as missing
        and are encoded again; the next writer deletes it (:meth:`remove_debris`)."""
        names = sorted(p.stem for p in self.path.glob("chunk-*.json"))
        for name in names:
            if name in self._chunks or name in self.bad_chunks:
                continue
            problem = None
            try:
                index = json.loads((self.path / f"{name}.json").read_text(encoding="utf-8"))
                if not isinstance(index, dict) or not isinstance(index.get("entries", []), list):
                    problem = "chunk index of another format"
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                if not (self.path / f"{name}.json").exists():
                    continue  # removed meanwhile by another process
                problem = "unreadable chunk index"
            if problem is None:
                problem = _data_problem(self._data_path(name), index, full=False)
            if problem is not None:
                from emotk.core.log import get_logger

                get_logger("features").warning(f"{self._data_path(name)}: {problem}; its utterances are "
                                               "encoded again")
                self.bad_chunks[name] = problem
                continue
            self._add_chunk(name, index.get("entries", []))

    def _add_chunk(self, name: str, entries: list[dict[str, Any]]) -> None:
        self._chunks[name] = entries
        for e in entries:
            e["chunk"] = name
            self._by_id.setdefault(e["id"], []).append(e)
            self._by_sha.setdefault((e["sha256"], e.get("start"), e.get("end")), e)

    def ids(self) -> list[str]:
        """Every stored utterance id (sorted)."""
        return sorted(self._by_id)

    def entries(self, uid: str) -> list[dict[str, Any]]:
        """The stored entries of ``uid`` (one per audio source / segment it was stored for; [] if none)."""
        return [dict(e) for e in self._by_id.get(uid, ())]

    def lookup(self, uid: str, source: AudioSource) -> dict[str, Any] | None:
        """The stored entry for utterance ``uid`` read from ``source``, or None (see the class docstring)."""
        st = source.stat()
        if st is None:
            return None
        seg = (source.start, source.end)
        same = [e for e in self._by_id.get(uid, ()) if (e.get("start"), e.get("end")) == seg]
        for e in same:
            if e["path"] == source.path and e["size"] == st[0] and e["mtime_ns"] == st[1]:
                return e
        if not self._by_sha:
            return None
        sha = source.sha256()
        if sha is None:
            return None
        for e in same:
            if e["sha256"] == sha:
                return e
        return self._by_sha.get((sha, *seg))

    # ---- reading ----------------------------------------------------------------------------
    def read(self, entry: Mapping[str, Any], name: str | None = None) -> Arrays | np.ndarray:
        """The arrays of a stored ``entry`` as {name: array}; with ``name``, that one array."""
        return _read_entry(self.path, entry, name)

    def view(self, found: Mapping[str, Mapping[str, Any]]) -> "CacheView":
        """Read access to the utterances ``{id: entry}`` (what :meth:`lookup` found for a manifest)."""
        return CacheView(self.path, self.meta, found)

    def num_entries(self) -> int:
        return sum(len(v) for v in self._chunks.values())

    def status(self) -> dict[str, Any]:
        """Counts for ``features info`` (keys as :meth:`FeatureCache.status`; chunks count as shards)."""
        n = len(self._chunks)
        return {
            "path": str(self.path), "kind": self.meta["kind"], "config_hash": self.meta["config_hash"],
            "manifest_sha256": None, "shards_complete": n, "shards_total": n, "complete": True,
            "ids_stored": len(self._by_id), "ids_skipped": 0, "ids_expected": len(self._by_id),
            "entries": self.num_entries(),
        }

    # ---- writing ----------------------------------------------------------------------------
    def writer(self, chunk_size: int | None = None) -> "ChunkWriter":
        """A :class:`ChunkWriter` adding utterances to this cache (one per process)."""
        self.remove_debris()
        return ChunkWriter(self, int(chunk_size or self.meta.get("chunk_size") or DEFAULT_CHUNK_SIZE))

    def remove_debris(self, older_than: float = ORPHAN_SECONDS) -> list[Path]:
        """Delete what killed writers left: chunk data files without an index and temp files, older than
        ``older_than`` seconds (a live writer renames its files within seconds). Returns what was removed."""
        now = time.time()
        gone = []
        for name in list(self.bad_chunks):  # a bad chunk never heals (indexes are written last): delete it now
            for p in (self.path / f"{name}.json", self._data_path(name)):
                if p.exists():
                    p.unlink(missing_ok=True)
                    gone.append(p)
        for p in list(self.path.glob("chunk-*.safetensors")) + list(self.path.glob(".chunk-*")):
            if p.name.startswith("chunk-") and (self.path / f"{p.stem}.json").exists():
                continue
            try:
                if now - p.stat().st_mtime > older_than:
                    p.unlink()
                    gone.append(p)
            except FileNotFoundError:
                continue
        return gone

    def __repr__(self) -> str:
        return f"UtteranceCache({str(self.path)!r}, kind={self.meta['kind']!r})"


class ChunkWriter:
    """Buffers encoded utterances and stores them as a complete chunk every ``chunk_size`` of them.

    Use as a context manager: on leaving (also on an exception, e.g. Ctrl-C) what is buffered is stored.
    """

    def __init__(self, cache: UtteranceCache, chunk_size: int) -> None:
        self.cache = cache
        self.chunk_size = chunk_size
        self.pending: list[tuple[str, AudioSource, Mapping[str, np.ndarray]]] = []
        self.written = 0

    def add(self, uid: str, source: AudioSource, arrays: Mapping[str, np.ndarray]) -> None:
        """Buffer one utterance (readable once its chunk is written: every ``chunk_size``, and on leaving)."""
        if source.sha256() is None:
            raise DataError(f"{source.path}: cannot read the audio file to key its features")
        self.pending.append((uid, source, arrays))
        if len(self.pending) >= self.chunk_size:
            self.flush()

    def flush(self) -> None:
        """Store the buffered utterances as one chunk (data file, then index; both atomic)."""
        if not self.pending:
            return
        import secrets
        import socket

        from safetensors.numpy import save_file

        name = (f"chunk-{time.strftime('%Y%m%dT%H%M%S')}-{socket.gethostname().split('.')[0][:16]}-"
                f"{os.getpid()}-{secrets.token_hex(4)}")
        tensors: dict[str, np.ndarray] = {}
        entries: list[dict[str, Any]] = []
        for pos, (uid, src, arrays) in enumerate(self.pending):
            size, mtime_ns = src.stat() or (None, None)
            entry: dict[str, Any] = {"id": uid, "path": src.path, "size": size, "mtime_ns": mtime_ns,
                                     "sha256": src.sha256(), "start": src.start, "end": src.end, "arrays": {}}
            for arr_name, arr in arrays.items():
                a = np.ascontiguousarray(np.asarray(arr))
                if a.dtype == np.float64:
                    a = a.astype(np.float32)
                key = f"{pos}.{arr_name}"
                tensors[key] = a
                entry["arrays"][arr_name] = {"key": key, "shape": list(a.shape), "dtype": str(a.dtype)}
            entries.append(entry)
        config_hash = self.cache.meta["config_hash"]
        with atomic_path(self.cache._data_path(name), suffix=".safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"config_hash": config_hash, "chunk": name})
            data = _file_record(tmp)
        atomic_write_json(self.cache.path / f"{name}.json",
                          {"chunk": name, "config_hash": config_hash, "entries": entries, "data": data,
                           "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        self.cache._add_chunk(name, [dict(e) for e in entries])
        self.written += len(self.pending)
        self.pending = []

    def __enter__(self) -> "ChunkWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.flush()
            return
        try:  # keep what was encoded before the error (Ctrl-C included); the original error is raised
            self.flush()
        except Exception:  # noqa: BLE001
            pass


def _read_entry(folder: Path, entry: Mapping[str, Any], name: str | None) -> Arrays | np.ndarray:
    from safetensors import safe_open

    arrays = entry["arrays"]
    names = [name] if name is not None else list(arrays)
    for n in names:
        if n not in arrays:
            raise DataError(f"{folder}: id '{entry['id']}' has no array '{n}' (has: {', '.join(arrays)})")
    with safe_open(str(folder / f"{entry['chunk']}.safetensors"), framework="numpy") as f:
        out = {n: f.get_tensor(arrays[n]["key"]) for n in names}
    return out[name] if name is not None else out


class CacheView:
    """The stored features of one set of utterances (:meth:`UtteranceCache.view`), read like a
    :class:`FeatureCache`: ``ids()``, ``get(id, name)``, ``items()``, ``id in view``, ``len(view)``, ``path``
    (the cache folder) and ``meta`` (its meta.json). Holds no open file, so it pickles (data-loader workers)."""

    def __init__(self, path: str | os.PathLike, meta: Mapping[str, Any], found: Mapping[str, Mapping[str, Any]]):
        self.path = Path(path)
        self.meta = dict(meta)
        self._found = {uid: dict(e) for uid, e in found.items()}

    def ids(self) -> list[str]:
        return sorted(self._found)

    def __contains__(self, uid: object) -> bool:
        return uid in self._found

    def __len__(self) -> int:
        return len(self._found)

    def entry(self, uid: str) -> dict[str, Any]:
        if uid not in self._found:
            raise DataError(f"{self.path}: no features for id '{uid}'")
        return self._found[uid]

    def get(self, uid: str, name: str | None = None) -> Arrays | np.ndarray:
        """Arrays of utterance ``uid`` as {name: array}; with ``name``, that one array (DataError if unknown)."""
        return _read_entry(self.path, self.entry(uid), name)

    def items(self) -> Iterator[tuple[str, Arrays]]:
        """(id, {name: array}) for every utterance of the view, in sorted id order."""
        for uid in self.ids():
            yield uid, self.get(uid)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"CacheView({str(self.path)!r}, {len(self)} utterances)"


def open_cache(path: str | os.PathLike) -> "FeatureCache | UtteranceCache":
    """A cache folder of either format (by its meta.json)."""
    meta_path = Path(path) / "meta.json"
    try:
        fmt = json.loads(meta_path.read_text(encoding="utf-8")).get("format")
    except (OSError, json.JSONDecodeError, AttributeError):
        fmt = None
    return UtteranceCache(path) if fmt == UTTERANCE_FORMAT else FeatureCache(path)


def find_caches(root: str | os.PathLike) -> list[Path]:
    """Cache folders at ``root`` itself or directly inside it (sorted)."""
    root = Path(root)
    if (root / "meta.json").is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "meta.json").is_file())


__all__ = [
    "AudioSource", "CacheView", "ChunkWriter", "FeatureCache", "UtteranceCache", "cache_dir_name", "find_caches",
    "ids_sha256", "open_cache", "shard_blocks",
]

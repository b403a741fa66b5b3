"""A sharded, resumable feature cache keyed by the extractor config hash and the utterance id.

Layout::

    DIR/<kind>-<hash12>/
        meta.json                   kind, extractor config, config hash, manifest sha256, ids sha256,
                                    shard size, number of storage shards, emotk version
        shard-00000.safetensors     the arrays of up to ``shard_size`` utterances
        shard-00000.json            the shard's index; written atomically *after* its safetensors file,
                                    so its presence is the mark of a complete shard
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
a killed run loses at most the shard it was writing.
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
class FeatureCache:
    """Read/write access to one ``<kind>-<hash12>`` cache folder.

    Open an existing cache with ``FeatureCache(path)`` (or :meth:`open`); make or continue one with
    :meth:`create`. Reading: :meth:`ids`, :meth:`get`, :meth:`items`, ``id in cache``, ``len(cache)``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{self.path}: not a feature cache (no meta.json)")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{meta_path}: invalid JSON ({e.msg})") from None
        if self.meta.get("format") != CACHE_FORMAT:
            raise DataError(f"{meta_path}: not an emotk feature cache")
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
        if tensors:
            with atomic_path(self._data_path(j), suffix=".safetensors") as tmp:
                save_file(tensors, str(tmp), metadata={"config_hash": self.meta["config_hash"], "shard": str(j)})
        index = {"shard": j, "complete": True, "ids": order, "entries": entries, "skipped": skipped,
                 "config_hash": self.meta["config_hash"], "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
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


def find_caches(root: str | os.PathLike) -> list[Path]:
    """Cache folders at ``root`` itself or directly inside it (sorted)."""
    root = Path(root)
    if (root / "meta.json").is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "meta.json").is_file())


__all__ = [
    "FeatureCache", "cache_dir_name", "find_caches", "ids_sha256", "shard_blocks",
]

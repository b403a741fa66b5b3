"""Feature cache: shard partition, round trip, resume rules, config-hash keying."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emotk.core.shard import owned, parse_shard, select
from emotk.errors import DataError, OutputExistsError, UsageError
from emotk.features.cache import FeatureCache, cache_dir_name, find_caches, shard_blocks

IDS = [f"ds-{i:03d}" for i in range(23)]


def test_parse_shard():
    assert parse_shard("0/4") == (0, 4) and parse_shard("3/4") == (3, 4) and parse_shard((1, 2)) == (1, 2)
    assert parse_shard(None) is None
    for bad in ("4/4", "-1/4", "1/0", "a/b", "1", "1/2/3"):
        with pytest.raises(UsageError):
            parse_shard(bad)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 30])
def test_worker_partition_is_disjoint_and_complete(n):
    shuffled = list(np.random.default_rng(0).permutation(IDS))
    blocks = shard_blocks(shuffled, shard_size=4)
    assert [len(b) for b in blocks] == [4, 4, 4, 4, 4, 3]
    assert sum(blocks, []) == sorted(IDS)  # contiguous blocks of the sorted ids
    seen: list[str] = []
    for i in range(n):
        for j in owned(len(blocks), (i, n)):
            assert j % n == i
            seen.extend(blocks[j])
    assert sorted(seen) == sorted(IDS) and len(seen) == len(set(seen))
    per_id = [select(sorted(shuffled), (i, n)) for i in range(n)]
    flat = sum(per_id, [])
    assert sorted(flat) == sorted(IDS) and len(flat) == len(set(flat))


def _arrays(uid: str) -> dict[str, np.ndarray]:
    k = int(uid.split("-")[1])
    return {"x": np.full((k + 1, 3), k, np.float32), "n": np.arange(k, dtype=np.int64)}


def _fill(cache: FeatureCache, blocks=None):
    for j, block in enumerate(cache.blocks()):
        if blocks is None or j in blocks:
            cache.write_shard(j, {u: _arrays(u) for u in block})


def test_round_trip_get_items_ids_and_layout(tmp_path):
    cache = FeatureCache.create(tmp_path, "fake", {"a": 1}, IDS, manifest_sha256="m" * 64, shard_size=5)
    name, full = cache_dir_name("fake", {"a": 1})
    assert cache.path == tmp_path / name and name == f"fake-{full[:12]}"
    _fill(cache)
    files = sorted(p.name for p in cache.path.iterdir())
    assert files == ["meta.json"] + [f"shard-{j:05d}.{ext}" for j in range(5) for ext in ("json", "safetensors")]
    reopened = FeatureCache(cache.path)
    assert reopened.ids() == sorted(IDS) and len(reopened) == 23 and "ds-007" in reopened
    got = reopened.get("ds-007")
    np.testing.assert_array_equal(got["x"], _arrays("ds-007")["x"])
    assert got["n"].dtype == np.int64
    np.testing.assert_array_equal(reopened.get("ds-002", "n"), np.arange(2))
    assert [u for u, _ in reopened.items()] == sorted(IDS)
    for u, arrs in reopened.items():
        np.testing.assert_array_equal(arrs["x"], _arrays(u)["x"])
    meta = json.loads((cache.path / "meta.json").read_text())
    assert meta["config"] == {"a": 1} and meta["config_hash"] == full and meta["num_shards"] == 5
    assert reopened.status()["complete"] is True
    with pytest.raises(DataError, match="no features for id"):
        reopened.get("nope")
    with pytest.raises(DataError, match="has no array"):
        reopened.get("ds-001", "y")
    assert find_caches(tmp_path) == [cache.path] and find_caches(cache.path) == [cache.path]


def test_config_change_gives_another_folder(tmp_path):
    a = FeatureCache.create(tmp_path, "fake", {"a": 1}, IDS)
    b = FeatureCache.create(tmp_path, "fake", {"a": 2}, IDS)
    c = FeatureCache.create(tmp_path, "other", {"a": 1}, IDS)
    assert len({a.path, b.path, c.path}) == 3


def test_resume_overwrite_and_existing_output_rules(tmp_path):
    cache = FeatureCache.create(tmp_path, "fake", {}, IDS, shard_size=5)
    _fill(cache, blocks={0, 2})
    assert cache.complete_shards() == [0, 2]
    with pytest.raises(OutputExistsError, match="--resume"):
        FeatureCache.create(tmp_path, "fake", {}, IDS, shard_size=5)
    # another worker's shards are not this worker's outputs: worker 1/2 owns blocks 1 and 3 only
    FeatureCache.create(tmp_path, "fake", {}, IDS, shard_size=5, shard=(1, 2))
    resumed = FeatureCache.create(tmp_path, "fake", {}, IDS, shard_size=5, resume=True)
    assert resumed.complete_shards() == [0, 2]
    # --overwrite with a shard deletes only that worker's complete shards
    FeatureCache.create(tmp_path, "fake", {}, IDS, shard_size=5, shard=(0, 2), overwrite=True)
    assert resumed.complete_shards() == []
    _fill(resumed, blocks={1})
    fresh = FeatureCache.create(tmp_path, "fake", {}, IDS, shard_size=5, overwrite=True)
    assert fresh.complete_shards() == [] and not list(fresh.path.glob("shard-*"))


def test_a_cache_of_other_ids_cannot_be_continued(tmp_path):
    FeatureCache.create(tmp_path, "fake", {}, IDS, shard_size=5)
    with pytest.raises(DataError, match="other utterances"):
        FeatureCache.create(tmp_path, "fake", {}, IDS[:-1], shard_size=5, resume=True)
    with pytest.raises(DataError, match="shard size"):
        FeatureCache.create(tmp_path, "fake", {}, IDS, shard_size=6, resume=True)
    with pytest.raises(DataError, match="duplicate"):
        FeatureCache.create(tmp_path, "fake2", {}, IDS + IDS[:1])


def test_incomplete_shard_is_invisible_and_stale_temps_are_removed(tmp_path):
    cache = FeatureCache.create(tmp_path, "fake", {}, IDS, shard_size=5)
    _fill(cache, blocks={0})
    # a writer killed between the data file and the index: data present, index missing
    (cache.path / "shard-00001.safetensors").write_bytes(b"partial")
    (cache.path / ".shard-00001.safetensors.abc.tmp.safetensors").write_bytes(b"torn")
    assert FeatureCache(cache.path).complete_shards() == [0]
    assert "ds-005" not in FeatureCache(cache.path)
    again = FeatureCache.create(tmp_path, "fake", {}, IDS, shard_size=5, resume=True)
    assert not list(again.path.glob(".shard-00001.*"))
    skipped_cache = FeatureCache(cache.path)
    cache.write_shard(1, {u: _arrays(u) for u in cache.blocks()[1][1:]}, skipped={"ds-005": "bad audio"})
    assert skipped_cache.skipped() == {"ds-005": "bad audio"} and "ds-005" not in skipped_cache


def test_not_a_cache(tmp_path):
    with pytest.raises(DataError, match="not a feature cache"):
        FeatureCache(tmp_path)

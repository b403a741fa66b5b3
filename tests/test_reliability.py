"""Issue 15 items 1, 4 (part), 6, 7: names from data files stay names, wrong input is refused, resume trusts nothing
it can check, writes are durable."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import write_wav

from emotk.core.io import sha256_json
from emotk.errors import DataError


def _tree(root: Path) -> dict[str, int]:
    """Every file under ``root`` -> its size (what a write outside -o would change)."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _manifest(folder: Path, speakers: int = 4, per: int = 2) -> Path:
    lines = []
    for s in range(speakers):
        for u in range(per):
            write_wav(folder / "w" / f"s{s}_{u}.wav", seconds=0.3)
            lines.append({"id": f"toy-s{s}_{u}", "path": f"w/s{s}_{u}.wav", "dataset": "toy", "speaker": f"toy-s{s}",
                          "emotion": ["angry", "sad"][u % 2], "duration": 0.3})
    path = folder / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def _hostile_protocol(path: Path, fold: str = "../../victim", signed: bool = True) -> Path:
    """A protocol whose fold name is a path, with a correct sha256 (anyone can compute one)."""
    body = {"name": "evil", "dataset": "toy", "description": "", "source": "", "unit": "speaker",
            "folds": [{"name": fold, "train": ["toy-s0", "toy-s1"], "valid": ["toy-s2"], "test": ["toy-s3"]}]}
    path.write_text(json.dumps({**body, **({"sha256": sha256_json(body)} if signed else {})}))
    return path


# ---- item 1: names from data files are names, never paths ---------------------------------------------------------
@pytest.mark.parametrize("value, reason", [
    ("../../victim", "path separator"), ("..", "relative path"), (".hidden", "starts with '.'"), ("", "empty"),
    ("a\\b", "path separator"), ("/etc", "path separator"), ("a\nb", "control character"), (" a", "whitespace"),
    ("x" * 201, "longer than"), (3, "must be a string"),
])
def test_safe_name_refuses_paths_with_a_one_line_error(value, reason):
    from emotk.core.names import safe_name

    with pytest.raises(DataError) as err:
        safe_name(value, "fold name", "p.json")
    text = str(err.value)
    assert text.startswith("p.json: fold name ") and reason in text and "\n" not in text


def test_safe_name_accepts_ordinary_names():
    from emotk.core.names import safe_name

    for value in ("fold0", "Ses01", "f0-seed1", "toy-s0_1", "a.b+c", "été", "x" * 200):
        assert safe_name(value, "name", "here") == value


def test_protocol_fold_named_as_a_path_writes_nothing_outside_out(cli, tmp_path):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    m = _manifest(work)
    proto = _hostile_protocol(work / "evil.json")
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "train.jsonl").write_text("precious\n")
    before = _tree(tmp_path)
    res = cli("data", "split", m, "--protocol", proto, "--write-manifests", "-o", work / "out")
    assert res.code == 1 and len(res.err.strip().splitlines()) == 1, res.err
    assert str(proto) in res.err and "fold name '../../victim'" in res.err and "path separator" in res.err
    assert _tree(tmp_path) == before and not (work / "out").exists()
    assert (tmp_path / "victim" / "train.jsonl").read_text() == "precious\n"
    # ser train reads the same protocol: refused before any folder (run.json, features) is made
    res = cli("ser", "train", "-c", "ser/tiny", "--data", m, "--protocol", proto, "--set", "upstream.name=lld",
              "-o", work / "run")
    assert res.code == 1 and len(res.err.strip().splitlines()) == 1 and "fold name '../../victim'" in res.err
    assert _tree(tmp_path) == before and not (work / "run").exists()


def test_protocol_without_sha256_is_an_error_unless_no_verify(cli, tmp_path):
    from emotk.data.protocols import Protocol

    m = _manifest(tmp_path)
    hand = _hostile_protocol(tmp_path / "hand.json", fold="f0", signed=False)
    with pytest.raises(DataError, match="no 'sha256' key") as err:
        Protocol.load(hand)
    assert str(hand) in str(err.value) and "\n" not in str(err.value)
    res = cli("data", "split", m, "--protocol", hand, "--write-manifests", "-o", tmp_path / "out")
    assert res.code == 1 and "no 'sha256' key" in res.err and "--no-verify" in res.err
    assert not (tmp_path / "out").exists()
    # --no-verify accepts it loudly; without --write-manifests it signs the file
    res = cli("--json", "data", "split", m, "--protocol", hand, "--no-verify", "-o", tmp_path / "signed.json")
    assert res.code == 0 and "UNCHECKED" in res.err, res.err
    signed = Protocol.load(tmp_path / "signed.json")
    assert signed.fold_names == ["f0"] and json.loads((tmp_path / "signed.json").read_text())["sha256"]
    # a wrong sha256 stays an error with --no-verify
    data = json.loads(hand.read_text())
    data["sha256"] = "0" * 64
    hand.write_text(json.dumps(data))
    res = cli("data", "split", m, "--protocol", hand, "--no-verify", "-o", tmp_path / "again.json")
    assert res.code == 1 and "sha256 mismatch" in res.err
    res = cli("data", "split", m, "--folds", "2", "--no-verify", "-o", tmp_path / "x.json")
    assert res.code == 2 and "--no-verify only applies with --protocol" in res.err


def test_pair_ids_and_model_names_go_through_the_same_checker(tmp_path):
    from emotk.errors import UsageError
    from emotk.eval.est.systems import parse_models
    from emotk.models.zest.infer import read_pairs

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"src": "a.wav", "ref": "b.wav", "id": "ok"}\n{"src": "a.wav", "ref": "b.wav", "id": ".."}\n')
    with pytest.raises(DataError) as err:
        read_pairs(pairs)
    assert str(err.value) == f"{pairs}:2: key 'id': '..' cannot be a file name (is a relative path)"
    with pytest.raises(UsageError, match="cannot name a model"):
        parse_models(["..=/tmp/bundle"])


def test_vocoder_items_check_every_id_before_writing(tmp_path):
    from emotk.data.manifest import Manifest
    from emotk.models.zest.infer import export_vocoder_items

    recs = [{"id": "fine", "path": "a.wav", "dataset": "x"}, {"id": "../escape", "path": "b.wav", "dataset": "x"}]
    with pytest.raises(DataError, match="manifest:2: key 'id': '../escape' cannot be a file name"):
        export_vocoder_items(None, Manifest.from_records(recs), tmp_path / "items")
    assert not (tmp_path / "items").exists()


# ---- item 7: durability --------------------------------------------------------------------------------------------
def _record_fsyncs(monkeypatch) -> list[tuple[str, str]]:
    """Record every os.fsync as (kind, path) in order, together with os.replace calls."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, *a, **k):
        calls.append(("replace", str(dst)))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return calls


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name file descriptors")
def test_atomic_path_fsyncs_file_before_and_folder_after_the_rename(tmp_path, monkeypatch):
    from emotk.core.io import atomic_write_text

    calls = _record_fsyncs(monkeypatch)
    target = tmp_path / "index.json"
    atomic_write_text(target, "complete")
    assert target.read_text() == "complete"
    kinds = [k for k, _ in calls]
    assert kinds == ["fsync", "replace", "fsync"], calls
    assert Path(calls[0][1]).parent == tmp_path and Path(calls[0][1]).name.startswith(".index.json.")  # the temp file
    assert calls[1][1] == str(target) and calls[2][1] == str(tmp_path)  # then its folder, after the rename
    assert [p.name for p in tmp_path.iterdir()] == ["index.json"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name file descriptors")
def test_new_journal_fsyncs_its_folder(tmp_path, monkeypatch):
    from emotk.core.journal import Journal

    calls = _record_fsyncs(monkeypatch)
    with Journal.open(tmp_path / "j" / "scores.jsonl", "test", {"model": "m"}, resume=False) as j:
        j.append({"id": "a"})
    synced = [p for k, p in calls if k == "fsync"]
    assert synced[:2] == [str(tmp_path / "j" / "scores.jsonl"), str(tmp_path / "j")]  # header line, then the name
    assert synced[2:] == [str(tmp_path / "j" / "scores.jsonl")]  # each record


# ---- item 6a: resume checks the shards an index vouches for ------------------------------------------------------
def _arrays(uid: str):
    import numpy as np

    k = int(uid.split("-")[1])
    return {"x": np.full((k + 1, 3), k, np.float32)}


def test_feature_cache_resume_recomputes_deleted_truncated_and_corrupt_shards(tmp_path):
    import numpy as np

    from emotk.features.cache import FeatureCache

    ids = [f"ds-{i:03d}" for i in range(23)]
    cache = FeatureCache.create(tmp_path, "fake", {}, ids, shard_size=5)
    for j, block in enumerate(cache.blocks()):
        cache.write_shard(j, {u: _arrays(u) for u in block})
    index = json.loads(cache._index_path(0).read_text())
    assert index["data"]["size"] == cache._data_path(0).stat().st_size and len(index["data"]["sha256"]) == 64
    cache._data_path(1).unlink()  # deleted
    data = cache._data_path(2).read_bytes()
    cache._data_path(2).write_bytes(data[: len(data) // 2])  # truncated
    data = bytearray(cache._data_path(3).read_bytes())
    data[-4:] = b"\xff\xff\xff\xff"  # corrupt, same size
    cache._data_path(3).write_bytes(bytes(data))
    cache._index_path(4).write_text("{not json")  # a corrupt index
    assert FeatureCache(cache.path).complete_shards() == [0, 1, 2, 3, 4]  # what an index-only check believes
    resumed = FeatureCache.create(tmp_path, "fake", {}, ids, shard_size=5, resume=True)
    assert sorted(resumed.bad_shards) == [1, 2, 3, 4]
    assert "missing" in resumed.bad_shards[1] and "truncated" in resumed.bad_shards[2]
    assert "corrupt" in resumed.bad_shards[3] and "unreadable" in resumed.bad_shards[4]
    assert resumed.complete_shards() == [0] and not resumed._data_path(2).exists()
    for j in (1, 2, 3, 4):
        resumed.write_shard(j, {u: _arrays(u) for u in resumed.blocks()[j]})
    again = FeatureCache.create(tmp_path, "fake", {}, ids, shard_size=5, resume=True)
    assert again.bad_shards == {} and again.ids() == ids
    for uid, arrays in again.items():
        np.testing.assert_array_equal(arrays["x"], _arrays(uid)["x"])


def test_feature_cache_index_without_recorded_size_gets_a_structural_check(tmp_path):
    from emotk.features.cache import FeatureCache

    ids = [f"ds-{i:03d}" for i in range(10)]
    cache = FeatureCache.create(tmp_path, "fake", {}, ids, shard_size=5)
    for j, block in enumerate(cache.blocks()):
        cache.write_shard(j, {u: _arrays(u) for u in block})
        index = json.loads(cache._index_path(j).read_text())
        del index["data"]  # as written by emotk before sizes were recorded
        cache._index_path(j).write_text(json.dumps(index))
    data = cache._data_path(1).read_bytes()
    cache._data_path(1).write_bytes(data[:-3])
    assert cache.shard_problem(0) is None and "truncated" in cache.shard_problem(1)


def test_cli_extract_resume_recomputes_a_truncated_shard(cli, tmp_path):
    from emotk.features.cache import FeatureCache

    lines = []
    for i in range(6):
        write_wav(tmp_path / "wav" / f"t{i}.wav", seconds=0.3, freq=120 + 20 * i)
        lines.append({"id": f"syn-{i:03d}", "path": f"wav/t{i}.wav", "dataset": "syn"})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    args = ["--json", "features", "extract", "f0", "--data", tmp_path / "m.jsonl", "-o", tmp_path / "c",
            "--set", "backend=world", "--shard-size", "3"]
    first = cli(*args)
    assert first.code == 0, first.err
    cache = FeatureCache(json.loads(first.out)["cache"])
    want = cache.get("syn-004", "f0")
    shard = cache._data_path(1)
    shard.write_bytes(shard.read_bytes()[:100])  # power loss / full disk / a careless copy
    res = cli(*args, "--resume")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["count"] == 3 and out["complete"] and list(out["shards_recomputed"]) == ["1"]
    assert "shard-00001.safetensors" in res.err and "recomputing" in res.err
    import numpy as np

    np.testing.assert_array_equal(FeatureCache(cache.path).get("syn-004", "f0"), want)


def test_utterance_cache_ignores_and_removes_chunks_whose_data_file_is_bad(tmp_path):
    import numpy as np

    from emotk.features.cache import AudioSource, UtteranceCache

    wavs = [write_wav(tmp_path / f"u{i}.wav", seconds=0.2, freq=150 + 30 * i) for i in range(4)]
    cache = UtteranceCache.create(tmp_path / "c", "fake", {}, chunk_size=2)
    with cache.writer() as w:
        for i, p in enumerate(wavs):
            w.add(f"x-{i}", AudioSource(p), {"h": np.full((2, 2), i, np.float32)})
    chunks = sorted(cache.path.glob("chunk-*.safetensors"))
    assert len(chunks) == 2
    first = json.loads(chunks[0].with_suffix(".json").read_text())
    chunks[0].write_bytes(chunks[0].read_bytes()[:-5])  # truncated under a complete index
    reopened = UtteranceCache(cache.path)
    assert list(reopened.bad_chunks) == [chunks[0].stem] and "truncated" in reopened.bad_chunks[chunks[0].stem]
    bad_ids = {e["id"] for e in first["entries"]}
    for i, p in enumerate(wavs):
        found = reopened.lookup(f"x-{i}", AudioSource(p))
        assert (found is None) == (f"x-{i}" in bad_ids)  # missing, so it is encoded again; never a broken read
    reopened.writer()  # a writer deletes the bad chunk for good
    assert not chunks[0].exists() and not chunks[0].with_suffix(".json").exists() and chunks[1].exists()


# ---- item 6c/6d: temp files of a kill at the rename are cleaned; usage errors leave no output behind ---------------
def test_remove_stale_temps_takes_only_what_atomic_path_made(tmp_path):
    from emotk.core.io import atomic_path, remove_stale_temps, stale_temps

    target = tmp_path / "p.jsonl"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            os.link(tmp, tmp_path / "kept")  # what a kill between the write and the rename leaves: this name
            left = tmp.name
            raise KeyboardInterrupt
    (tmp_path / "kept").rename(tmp_path / left)
    mine = [tmp_path / ".p.jsonl.notes", tmp_path / ".p.jsonl.backup-2024.txt", tmp_path / "p.jsonl.x1234567.tmp"]
    for p in mine:
        p.write_text("the user's")
    assert [p.name for p in stale_temps(target)] == [left]
    assert remove_stale_temps(target) == [tmp_path / left] and stale_temps(target) == []
    assert all(p.exists() for p in mine)


def test_transfer_pairs_checks_inputs_before_the_model_and_cleans_stale_temps(cli, tmp_path):
    import numpy as np

    from emotk.models.zest import infer

    a, b = write_wav(tmp_path / "a.wav", seconds=0.3), write_wav(tmp_path / "b.wav", seconds=0.3)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"src": str(a), "ref": str(b)}) + "\n" + json.dumps({"src": str(a)}) + "\n")
    res = cli("transfer", "--pairs", pairs, "--out-dir", tmp_path / "out", "--model", tmp_path / "no-bundle")
    assert res.code == 1 and f"{pairs}:2: key 'ref' is missing" in res.err, res.err  # not the missing bundle
    assert not (tmp_path / "out").exists()
    res = cli("transfer", "--src", tmp_path / "typo.wav", "--ref", b, "-o", tmp_path / "o.wav", "-m", tmp_path / "nb")
    assert res.code == 1 and "typo.wav: source audio file not found" in res.err, res.err
    pairs.write_text(json.dumps({"src": str(a), "ref": str(b), "id": "one"}) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".one.wav.{'x1' * 4}.tmp.wav"
    stale.write_bytes(b"RIFF half")
    result = infer.transfer_batch(None, pairs, out, transfer_fn=lambda *a: (np.zeros(3200, np.float32), {}))
    assert result["ok"] == 1 and not stale.exists() and (out / "one.wav").is_file()


def test_ser_predict_cleans_stale_temps_of_its_output(cli, tmp_path):
    out = tmp_path / "p.jsonl"
    stale = tmp_path / f".p.jsonl.{'k' * 8}.tmp.jsonl"
    stale.write_text('{"id": "half')
    res = cli("ser", "predict", "-m", tmp_path / "no-model", write_wav(tmp_path / "a.wav"), "-o", out)
    assert res.code != 0 and not stale.exists() and not out.exists()


def test_ser_train_with_an_unknown_upstream_makes_no_run_folder(cli, tmp_path, hub_env):
    m = _manifest(tmp_path)
    res = cli("data", "split", m, "--folds", "4", "--valid", "1", "-o", tmp_path / "p.json")
    assert res.code == 0, res.err
    for name, message in (("nonexist", "unknown model 'nonexist'"), ("wavlm-base", "not found locally")):
        res = cli("ser", "train", "-c", "ser/tiny", "--data", m, "--protocol", tmp_path / "p.json",
                  "--set", "data.fold=fold0", "--set", f"upstream.name={name}", "-o", tmp_path / "run")
        assert res.code != 0 and message in res.err and len(res.err.strip().splitlines()) == 1, res.err
        assert not (tmp_path / "run").exists()


# ---- item 4 (part): inputs that are wrong but were accepted --------------------------------------------------------
def test_an_empty_manifest_is_not_valid(cli, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    res = cli("data", "validate", str(empty))
    assert res.code == 1 and "no records" in res.out + res.err and "ok: 0 utterances" not in res.out


def test_ser_predict_refuses_a_batch_size_below_one(cli, tmp_path):
    for bad in ("0", "-1"):
        res = cli("ser", "predict", "-m", str(tmp_path), "-b", bad, "x.wav")
        assert res.code == 2 and "--batch-size" in res.err and "Traceback" not in res.err

"""The shared core seams: --shard parsing/selection/naming, the resumable journal, did-you-mean, runtime."""

from __future__ import annotations

import json

import pytest

from emotk.core import audio
from emotk.core.journal import Journal, read_journal
from emotk.core.runtime import derived_seed, device_name, resolve_threads, with_device
from emotk.core.shard import is_whole, owned, parse_shard, select, shard_files, shard_name
from emotk.core.suggest import closest, did_you_mean
from emotk.errors import DataError, OutputExistsError, UsageError


def test_audio_constants_agree():
    assert audio.SAMPLE_RATE == audio.HOP * audio.FRAME_RATE == 16000


@pytest.mark.parametrize("text,expected", [(None, None), ("", None), ("0/1", (0, 1)), ("3/16", (3, 16)),
                                           ((1, 2), (1, 2))])
def test_parse_shard_accepts(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["1/1", "4/4", "-1/3", "0/0", "a/b", "1", "1/2/3", (2, 1)])
def test_parse_shard_rejects(text):
    with pytest.raises(UsageError, match="shard"):
        parse_shard(text)


def test_shards_are_disjoint_and_complete():
    items = [f"u{k:03d}" for k in range(23)]
    parts = [select(items, (i, 4)) for i in range(4)]
    assert sorted(sum(parts, [])) == items
    assert all(not set(a) & set(b) for a in parts for b in parts if a is not b)
    assert select(items, None) == items and select(items, (0, 1)) == items
    assert owned(5, (1, 2)) == [1, 3] and owned(3, None) == [0, 1, 2]
    assert is_whole(None) and is_whole((0, 1)) and not is_whole((0, 2))


def test_shard_names_round_trip(tmp_path):
    assert shard_name("scores", None) == "scores.jsonl" == shard_name("scores", (0, 1))
    assert shard_name("scores", (2, 8)) == "scores.shard-2-of-8.jsonl"
    for name in ["scores.jsonl", "scores.shard-1-of-2.jsonl", "scores.shard-0-of-2.jsonl", "other.jsonl",
                 "scores.shard-x-of-2.jsonl"]:
        (tmp_path / name).write_text("")
    assert [p.name for p in shard_files(tmp_path, "scores")] == [
        "scores.jsonl", "scores.shard-0-of-2.jsonl", "scores.shard-1-of-2.jsonl"]


def test_journal_writes_header_and_resumes(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal.open(path, "test", {"model": "a", "shard": [0, 1]}, resume=False) as j:
        assert not j.resumed and j.records == []
        j.append({"id": "x", "v": 1})
        j.extend([{"id": "y", "v": 2}, {"id": "z", "v": 3}])
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"journal": "test", "version": 1, "model": "a", "shard": [0, 1]}
    with pytest.raises(OutputExistsError, match="--resume"):
        Journal.open(path, "test", {"model": "a", "shard": [0, 1]}, resume=False)
    with Journal.open(path, "test", {"model": "a", "shard": [0, 1]}, resume=True) as j:
        assert j.resumed and [r["id"] for r in j.records] == ["x", "y", "z"]
    with pytest.raises(DataError, match="model='a'"):
        Journal.open(path, "test", {"model": "b", "shard": [0, 1]}, resume=True)
    with pytest.raises(DataError, match="'test' journal, expected 'other'"):
        Journal.open(path, "other", {}, resume=True)
    with Journal.open(path, "test", {"model": "b"}, resume=False, overwrite=True) as j:
        assert j.records == []
    assert read_journal(path)[1] == []


def test_journal_torn_last_line_is_cut_on_resume_and_skipped_on_read(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal.open(path, "test", {}, resume=False) as j:
        j.append({"id": "x"})
    with open(path, "a") as f:
        f.write('{"id": "y", "v"')  # the writer died here
    header, records = read_journal(path, "test")
    assert header["journal"] == "test" and records == [{"id": "x"}]
    assert path.read_text().endswith('"v"')  # reading changes nothing
    with Journal.open(path, "test", {}, resume=True) as j:
        assert j.records == [{"id": "x"}]
        j.append({"id": "y"})
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()[1:]] == ["x", "y"]


def test_journal_corruption_and_bad_records(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"journal": "test", "version": 1}\nnot json\n{"id": 1}\n')
    with pytest.raises(DataError, match=r"j.jsonl:2: corrupt journal line"):
        Journal.open(path, "test", {}, resume=True)
    path.write_text('{"id": "x"}\n')
    with pytest.raises(DataError, match="not an emotk journal"):
        read_journal(path)
    with Journal.open(tmp_path / "k.jsonl", "test", {}, resume=False) as j:
        with pytest.raises(ValueError):
            j.append({"score": float("nan")})  # refused whole: nothing half-written
    assert len((tmp_path / "k.jsonl").read_text().splitlines()) == 1


def test_did_you_mean():
    assert did_you_mean("trian", ["train", "valid", "test"]) == " (did you mean 'train'?)"
    assert did_you_mean("zzz", ["train"]) == ""
    assert closest("Train", ["train", "trains"]) == ["train"]
    assert did_you_mean("wavlm", ["wavlm-base", "wavlm-large", "hubert"], n=2, cutoff=0.5) == \
        " (did you mean 'wavlm-base' or 'wavlm-large'?)"


def test_runtime_helpers():
    import dataclasses

    from emotk.core.config import RuntimeConfig

    assert device_name("CPU") == "cpu" and device_name("cuda:1") == "cuda:1"
    assert device_name(None) in ("cpu", "cuda")
    rt = RuntimeConfig()
    assert with_device(rt, None) is rt and with_device(rt, "cpu") == dataclasses.replace(rt, device="cpu")
    assert resolve_threads(5) == 5
    assert derived_seed(1, 2) == derived_seed(1, 2) != derived_seed(2, 1)

"""Text-only manifest records: schema, `data validate`, and the one-line "needs audio" error of audio commands."""

from __future__ import annotations

import json

import pytest
from conftest import write_wav

from emotk.data.manifest import Manifest, record_problems
from emotk.errors import DataError


def _manifest(tmp_path, with_audio=1):
    recs = []
    for i in range(with_audio):
        write_wav(tmp_path / f"a{i}.wav", seconds=0.5)
        recs.append({"id": f"x-a{i}", "dataset": "x", "path": f"a{i}.wav", "text": "with audio", "emotion": "sad"})
    recs += [{"id": "x-t1", "dataset": "x", "text": "only words", "emotion": "sad"},
             {"id": "x-t2", "dataset": "x", "text": "more words", "emotion": "angry"}]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def test_schema_allows_path_only_to_be_missing_with_text():
    assert record_problems({"id": "a", "dataset": "x", "text": "hi"}) == []
    assert record_problems({"id": "a", "dataset": "x"}) == [
        ("path", "missing required field 'path' (only a record with a non-empty 'text' may omit it: a text-only "
                 "record)")]
    assert record_problems({"id": "a", "dataset": "x", "text": "  "})[0][0] == "path"
    assert record_problems({"id": "a", "dataset": "x", "text": "hi", "path": ""}) == [
        ("path", "field 'path' must be a non-empty string")]


def test_validate_counts_text_only_records(tmp_path, cli):
    path = _manifest(tmp_path)
    res = cli("data", "validate", str(path))
    assert res.code == 0, res.out + res.err
    assert "3 utterances (2 text-only: no audio)" in res.out
    res = cli("--json", "data", "validate", str(path))
    report = json.loads(res.out)
    assert report["ok"] and report["utterances"] == 3 and report["text_only"] == 2 and report["hours"] > 0
    m = Manifest.load(path)
    assert m.text_only() == [1, 2]
    assert "path" not in m.with_absolute_paths()[1]  # text-only records stay without a path when saved elsewhere
    with pytest.raises(DataError, match=r"m\.jsonl:2: record 'x-t1' has no 'path' \(a text-only record\) \(and 1 "
                                        r"more\): my command needs audio"):
        m.require_audio("my command")
    m.filter(lambda r: "path" in r).require_audio("my command")  # nothing to say


@pytest.mark.parametrize("argv, command", [
    (["features", "extract", "acoustic", "-d", "{m}", "-o", "{tmp}/feats"], "features extract acoustic"),
    (["data", "transcribe", "{m}", "-o", "{tmp}/asr.jsonl"], "transcribe"),
    (["ser", "train", "-c", "configs/ser/demo.yaml", "--data", "{m}", "-o", "{tmp}/run"], "ser train/evaluate"),
])
def test_audio_commands_name_the_first_text_only_record(tmp_path, cli, monkeypatch, argv, command):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    path = _manifest(tmp_path)
    res = cli(*[a.format(m=path, tmp=tmp_path) for a in argv])
    assert res.code == 1, res.out + res.err
    lines = [x for x in res.err.splitlines() if "error" in x]
    assert len(lines) == 1
    assert f"{path}:2: record 'x-t1' has no 'path' (a text-only record) (and 1 more): {command} needs audio" in lines[0]


def test_text_features_work_on_text_only_records(tmp_path, cli):
    path = _manifest(tmp_path, with_audio=0)
    res = cli("--json", "features", "extract", "text", "-d", str(path), "-o", str(tmp_path / "feats"))
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert summary["count"] == 2 and summary["complete"] and summary["skipped"] == []

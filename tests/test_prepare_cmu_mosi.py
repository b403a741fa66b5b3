"""CMU-MOSI importer on a fake raw release (segmented wavs, .annotprocessed transcripts, label CSV)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotk.data.prepare import get_importer
from emotk.data.prepare.base import PrepareOptions, write_result
from emotk.errors import DataError

REPO = Path(__file__).resolve().parents[1]
# start, end, video, segment, score (OpinionLevelSentiment.csv has no header)
LABELS = [
    (12.63, 15.97, "03bSnISJMiM", 1, 2.4),
    (17.01, 21.34, "03bSnISJMiM", 2, -0.4),
    (1.48, 4.45, "_dI--eQ6qVU", 10, 0.0),
    (4.61, 8.09, "_dI--eQ6qVU", 2, -3.0),
]
TRANSCRIPTS = {
    "03bSnISJMiM": ["1_DELIM_A LOT OF SAD PARTS", "2_DELIM_THERE IS SAD PARTS BUT"],
    "_dI--eQ6qVU": ["2_DELIM_I HATED IT", "10_DELIM_UMM IT WAS OK"],
}


def make_release(base: Path, corrupt: str | None = None) -> Path:
    raw = base / "Raw"
    seg = raw / "Audio" / "WAV_16000" / "Segmented"
    seg.mkdir(parents=True)
    for i, (_, _, video, s, _) in enumerate(LABELS):
        path = seg / f"{video}_{s}.wav"
        if path.name == corrupt:
            path.write_bytes(b"RIFF1234WAVEfmt ")
        else:
            sf.write(str(path), (0.1 * np.random.default_rng(i).standard_normal(3200)).astype(np.float32), 16000)
    (raw / "Transcript" / "Segmented").mkdir(parents=True)
    for video, lines in TRANSCRIPTS.items():
        (raw / "Transcript" / "Segmented" / f"{video}.annotprocessed").write_text("\n".join(lines) + "\n")
    (raw / "Labels").mkdir()
    (raw / "Labels" / "OpinionLevelSentiment.csv").write_text(
        "".join(f"{a},{b},{v},{s},{score}\n" for a, b, v, s, score in LABELS))
    return raw


def run(root: Path, out: Path, **extra):
    opts = PrepareOptions(out_dir=out, workers=2, extra=extra)
    result = get_importer("cmu-mosi").prepare(root, opts)
    summary = write_result(result, opts)
    return result, summary, [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]


def test_records(tmp_path):
    make_release(tmp_path / "mosi")
    result, summary, records = run(tmp_path / "mosi", tmp_path / "out")  # folder holding Raw/
    assert [r["id"] for r in records] == [
        "cmu-mosi-03bSnISJMiM_1", "cmu-mosi-03bSnISJMiM_2", "cmu-mosi-_dI--eQ6qVU_10", "cmu-mosi-_dI--eQ6qVU_2"]
    by = {r["id"]: r for r in records}
    r = by["cmu-mosi-_dI--eQ6qVU_10"]
    assert r["video"] == "_dI--eQ6qVU" and r["segment"] == 10 and r["sentiment"] == 0.0
    assert r["emotion"] == "positive" and r["text"] == "UMM IT WAS OK"  # score 0 counts as positive
    assert by["cmu-mosi-03bSnISJMiM_2"]["emotion"] == "negative" and by["cmu-mosi-_dI--eQ6qVU_2"]["sentiment"] == -3.0
    assert by["cmu-mosi-03bSnISJMiM_1"]["text"] == "A LOT OF SAD PARTS"
    assert r["path"] == "../mosi/Raw/Audio/WAV_16000/Segmented/_dI--eQ6qVU_10.wav" and r["duration"] == 0.2
    assert summary["counts"]["emotion"] == {"negative": 2, "positive": 2}
    assert any("found 2 videos, the official release has 93" in w for w in result.warnings)
    assert any("found 4 segments, the official release has 2199" in w for w in result.warnings)
    assert json.loads((tmp_path / "out" / "label_map.json").read_text()) == \
        json.loads((REPO / "data_manifests" / "cmu-mosi" / "label_map.json").read_text())


def test_corrupt_audio_and_explicit_labels(tmp_path):
    raw = make_release(tmp_path / "mosi", corrupt="03bSnISJMiM_2.wav")
    moved = tmp_path / "labels.csv"
    (raw / "Labels" / "OpinionLevelSentiment.csv").rename(moved)
    with pytest.raises(DataError, match="label file not found"):
        get_importer("cmu-mosi").prepare(raw, PrepareOptions(out_dir=tmp_path / "o"))
    result, _, records = run(raw, tmp_path / "out", labels=str(moved))
    assert "cmu-mosi-03bSnISJMiM_2" not in {r["id"] for r in records} and len(records) == 3
    assert any("skipped cmu-mosi-03bSnISJMiM_2" in w for w in result.warnings)


def test_wrong_root_and_bad_label_row(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="not a CMU-MOSI raw folder"):
        get_importer("cmu-mosi").prepare(tmp_path / "x", PrepareOptions(out_dir=tmp_path / "o"))
    raw = make_release(tmp_path / "mosi")
    with open(raw / "Labels" / "OpinionLevelSentiment.csv", "a") as f:
        f.write("1.0,2.0,abc,3,very good\n")
    with pytest.raises(DataError, match=r"OpinionLevelSentiment\.csv:5: segment/score must be numbers"):
        get_importer("cmu-mosi").prepare(raw, PrepareOptions(out_dir=tmp_path / "o"))


def test_cli_entry_point(tmp_path):
    from emotk.cli import main as cli
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "prepare", "--help"])
    assert e.value.code == 0
    raw = make_release(tmp_path / "mosi")
    with pytest.raises(SystemExit) as e:
        cli.main(["-q", "data", "prepare", "cmu-mosi", str(raw), "-o", str(tmp_path / "out")])
    assert e.value.code == 0
    assert len((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()) == 4

"""MSP-Podcast importer on fake release trees (labels_consensus.csv, and the older text-file variant)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotk.data.labels import LabelMap
from emotk.data.prepare import get_importer
from emotk.data.prepare.base import PrepareOptions, write_result
from emotk.errors import DataError

REPO = Path(__file__).resolve().parents[1]
CSV_HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
CSV_ROWS = [
    "MSP-PODCAST_0001_0008.wav,N,4.2,4.0,4.6,127,Female,Train",
    "MSP-PODCAST_0001_0019.wav,A,5.8,2.2,5.6,127,Female,Development",
    "MSP-PODCAST_0002_0033.wav,O,3.0,4.0,4.0,Unknown,Unknown,Test1",
    "MSP-PODCAST_0003_0001.wav,X,4.4,3.6,4.0,931,Male,Test2",
    "MSP-PODCAST_0004_0002.wav,C,3.2,2.8,4.2,14,Male,Validation",
    "MSP-PODCAST_0005_0001.wav,U,5.0,5.0,4.0,22,Female,Test3",
]


def _wav(path: Path, seed: int, seconds: float = 0.2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32),
             16000, subtype="PCM_16")


def make_release(base: Path, corrupt: str | None = None) -> Path:
    root = base / "MSP-PODCAST-Publish-1.11"
    (root / "Labels").mkdir(parents=True)
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join([CSV_HEADER, *CSV_ROWS]) + "\n")
    for i, row in enumerate(CSV_ROWS):
        name = row.split(",")[0]
        if name == corrupt:
            (root / "Audios").mkdir(exist_ok=True)
            (root / "Audios" / name).write_bytes(b"\x00" * 100)
        else:
            _wav(root / "Audios" / name, seed=i)
    (root / "Transcripts").mkdir()
    (root / "Transcripts" / "MSP-PODCAST_0001_0008.txt").write_text("I think that's fine.\n")
    (root / "Transcripts" / "MSP-PODCAST_0001_0019.txt").write_text("No, absolutely not!\n")
    return root


def run(root: Path, out: Path, **extra):
    opts = PrepareOptions(out_dir=out, workers=2, extra=extra)
    result = get_importer("msp-podcast").prepare(root, opts)
    summary = write_result(result, opts)
    return result, summary, [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]


def test_consensus_csv(tmp_path):
    make_release(tmp_path / "data", corrupt="MSP-PODCAST_0005_0001.wav")
    result, summary, records = run(tmp_path / "data", tmp_path / "out")  # parent folder is found too
    by = {r["id"]: r for r in records}
    assert list(by) == sorted(by) and len(by) == 5
    r = by["msp-podcast-MSP-PODCAST_0001_0019"]
    assert r["emotion"] == "angry" and r["emotion_raw"] == "A" and r["split"] == "development"
    assert (r["arousal"], r["valence"], r["dominance"]) == (5.8, 2.2, 5.6)
    assert r["speaker"] == "msp-podcast-127" and r["gender"] == "F" and r["text"] == "No, absolutely not!"
    assert r["path"] == "../data/MSP-PODCAST-Publish-1.11/Audios/MSP-PODCAST_0001_0019.wav" and r["sr"] == 16000
    other = by["msp-podcast-MSP-PODCAST_0002_0033"]
    assert (other["emotion"] == "other" and other["split"] == "test1"
            and "speaker" not in other and "gender" not in other)
    noagree = by["msp-podcast-MSP-PODCAST_0003_0001"]
    assert "emotion" not in noagree and noagree["emotion_raw"] == "X" and noagree["split"] == "test2"
    assert by["msp-podcast-MSP-PODCAST_0004_0002"]["split"] == "development"  # "Validation" in older releases
    assert by["msp-podcast-MSP-PODCAST_0004_0002"]["emotion"] == "contempt"
    assert "text" not in by["msp-podcast-MSP-PODCAST_0004_0002"]
    assert any("skipped msp-podcast-MSP-PODCAST_0005_0001" in w for w in result.warnings)
    lm = LabelMap.load(tmp_path / "out" / "label_map.json")
    assert lm.classes == ["angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert [lm.convert(by[k].get("emotion")) for k in sorted(by)] == ["neutral", "angry", None, None, "contempt"]
    assert lm.convert("U") == "surprise" and lm.convert("O") is None and lm.knows("other")
    assert json.loads((tmp_path / "out" / "label_map.json").read_text()) == \
        json.loads((REPO / "data_manifests" / "msp-podcast" / "label_map.json").read_text())
    _, _, no_text = run(tmp_path / "data", tmp_path / "out2", transcripts="false")
    assert not any("text" in r for r in no_text)


def test_text_file_variant(tmp_path):
    root = tmp_path / "MSP-PODCAST-Publish-1.4"
    (root / "Labels").mkdir(parents=True)
    (root / "Labels" / "labels.txt").write_text(
        "MSP-PODCAST_0001_0008.wav; N; A:4.800000; V:4.000000; D:4.600000;\n"
        "WORKER00014; Neutral; A:5.000000; V:4.000000; D:5.000000;\n\n"
        "MSP-PODCAST_0002_0001.wav; H; A:5.200000; V:6.000000; D:4.000000;\n"
        "WORKER00002; Happy; A:5.000000; V:6.000000; D:4.000000;\n"
    )
    (root / "Partitions.txt").write_text("Train; MSP-PODCAST_0001_0008.wav\nTest1; MSP-PODCAST_0002_0001.wav\n")
    (root / "Speaker_ids.txt").write_text(
        "Speaker_0001; Female\nSpeaker_0002; Male\n"
        "MSP-PODCAST_0001_0008.wav; 0001\nMSP-PODCAST_0002_0001.wav; 0002\n"
    )
    _wav(root / "Audios" / "MSP-PODCAST_0001_0008.wav", 0)
    _wav(root / "Audios" / "MSP-PODCAST_0002_0001.wav", 1)
    _, _, records = run(root, tmp_path / "out")
    a, b = records
    assert (a["id"], a["emotion"], a["split"], a["speaker"], a["gender"], a["arousal"]) == \
        ("msp-podcast-MSP-PODCAST_0001_0008", "neutral", "train", "msp-podcast-0001", "F", 4.8)
    assert (b["emotion"], b["split"], b["speaker"], b["gender"], b["valence"]) == \
        ("happy", "test1", "msp-podcast-0002", "M", 6.0)


def test_wrong_root_and_bad_value(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="not an MSP-Podcast release"):
        get_importer("msp-podcast").prepare(tmp_path / "x", PrepareOptions(out_dir=tmp_path / "o"))
    root = make_release(tmp_path / "data")
    (root / "Labels" / "labels_consensus.csv").write_text(
        CSV_HEADER + "\nMSP-PODCAST_0001_0008.wav,N,high,4,4,1,Male,Train\n")
    with pytest.raises(DataError, match=r"labels_consensus\.csv:2: expected a number, got 'high'"):
        get_importer("msp-podcast").prepare(root, PrepareOptions(out_dir=tmp_path / "o"))


def test_cli_entry_point(tmp_path):
    from emotk.cli import main as cli
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "prepare", "--help"])
    assert e.value.code == 0
    root = make_release(tmp_path / "data")
    with pytest.raises(SystemExit) as e:
        cli.main(["-q", "data", "prepare", "msp-podcast", str(root), "-o", str(tmp_path / "out"), "--root-name", "MSP"])
    assert e.value.code == 0
    first = json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[0])
    assert first["path"] == "${MSP}/Audios/MSP-PODCAST_0001_0008.wav"

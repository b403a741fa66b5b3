"""DAIC-WOZ importer on a fake release: session folders, tab-separated transcripts, AVEC 2017 split CSVs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotk.data.prepare import get_importer
from emotk.data.prepare.base import PrepareOptions, write_result
from emotk.data.prepare.daic_woz import participant_segments
from emotk.errors import DataError, UsageError

REPO = Path(__file__).resolve().parents[1]
T_HEADER = "start_time\tstop_time\tspeaker\tvalue"
TRANSCRIPTS = {
    "300": [
        (1.0, 3.0, "Ellie", "hi i'm ellie thanks for coming in today"),
        (3.5, 4.0, "Participant", "hi"),  # 0.5 s stretch: dropped
        (5.0, 6.0, "Ellie", "how are you doing today"),
        (6.5, 8.0, "Participant", "i'm good"),
        (9.0, 10.5, "Participant", "thanks"),  # pause 1 s: merged with the row above
        (11.0, 12.0, "Ellie", "where are you from originally"),
        (12.5, 26.0, "Participant", "los angeles i grew up here and never left"),  # 13.5 s: cut into 10 + 3.5
        (30.0, 30.5, "Participant", "um"),  # pause 4 s > max_gap: own stretch, too short
        (33.0, 40.0, "Participant", "bye"),  # runs past the 35 s audio: clipped
    ],
    "301": [(0.5, 2.0, "Ellie", "hello"), (2.5, 6.0, "Participant", "hello there")],
    "302": [(1.0, 4.0, "Participant", "i am fine"), (4.5, 5.0, "Ellie", "okay")],
}
SECONDS = {"300": 35.0, "301": 7.0, "302": 6.0}


def make_release(base: Path, corrupt: str | None = None) -> Path:
    root = base / "DAIC-WOZ"
    root.mkdir(parents=True)
    for pid, rows in TRANSCRIPTS.items():
        d = root / f"{pid}_P"
        d.mkdir()
        (d / f"{pid}_TRANSCRIPT.csv").write_text("\n".join([T_HEADER] + ["\t".join(map(str, r)) for r in rows]) + "\n")
        if pid == corrupt:
            (d / f"{pid}_AUDIO.wav").write_bytes(b"\xff" * 64)
        else:
            sf.write(str(d / f"{pid}_AUDIO.wav"), np.zeros(int(16000 * SECONDS[pid]), np.float32), 16000,
                     subtype="PCM_16")
    (root / "303_P").mkdir()  # a session in no split file
    items = ("PHQ8_NoInterest,PHQ8_Depressed,PHQ8_Sleep,PHQ8_Tired,PHQ8_Appetite,PHQ8_Failure,"
             "PHQ8_Concentrating,PHQ8_Moving")
    (root / "train_split_Depression_AVEC2017.csv").write_text(
        f"Participant_ID,PHQ8_Binary,PHQ8_Score,Gender,{items}\n300,1,15,1,2,2,2,2,2,2,2,1\n304,0,2,0,0,0,1,1,0,0,0,0\n")
    (root / "dev_split_Depression_AVEC2017.csv").write_text(
        f"Participant_ID,PHQ8_Binary,PHQ8_Score,Gender,{items}\n301,0,3,0,0,0,1,1,0,0,1,0\n")
    (root / "full_test_split.csv").write_text("Participant_ID,PHQ_Binary,PHQ_Score,Gender\n302,1,11,1\n")
    (root / "test_split_Depression_AVEC2017.csv").write_text("participant_ID,Gender\n302,1\n")
    return root


def run(root: Path, out: Path, **extra):
    opts = PrepareOptions(out_dir=out, workers=2, extra=extra)
    result = get_importer("daic-woz").prepare(root, opts)
    summary = write_result(result, opts)
    return result, summary, [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]


def test_segments_and_fields(tmp_path):
    make_release(tmp_path / "data")
    result, summary, records = run(tmp_path / "data", tmp_path / "out")  # release one level down is found
    by = {r["id"]: r for r in records}
    assert list(by) == ["daic-woz-300-0000", "daic-woz-300-0001", "daic-woz-300-0002", "daic-woz-300-0003",
                        "daic-woz-301-0000", "daic-woz-302-0000"]
    spans = [(by[f"daic-woz-300-000{k}"]["start"], by[f"daic-woz-300-000{k}"]["end"]) for k in range(4)]
    assert spans == [(6.5, 10.5), (12.5, 22.5), (22.5, 26.0), (33.0, 35.0)]
    assert by["daic-woz-300-0000"]["text"] == "i'm good thanks" and "text" not in by["daic-woz-300-0001"]
    assert by["daic-woz-300-0003"]["text"] == "bye" and by["daic-woz-300-0003"]["duration"] == 2.0
    r = by["daic-woz-300-0001"]
    assert (r["split"], r["speaker"], r["emotion"], r["emotion_raw"], r["phq8_score"]) == \
        ("train", "daic-woz-300", "depressed", "1", 15)
    assert r["path"] == "../data/DAIC-WOZ/300_P/300_AUDIO.wav" and r["sr"] == 16000 and r["duration"] == 10.0
    assert r["gender_code"] == "1" and "gender" not in r  # numeric code only read with gender_coding
    assert by["daic-woz-301-0000"]["split"] == "dev" and by["daic-woz-301-0000"]["emotion"] == "not-depressed"
    t = by["daic-woz-302-0000"]
    assert (t["split"], t["emotion"], t["phq8_score"]) == ("test", "depressed", 11)  # full_test_split's PHQ_* columns
    assert summary["counts"]["split"] == {"dev": 1, "test": 1, "train": 4}
    assert summary["hours"] == pytest.approx((4 + 10 + 3.5 + 2 + 3.5 + 3) / 3600, abs=1e-3)
    w = "\n".join(result.warnings)
    assert "session 303_P is in no split file" in w and "participant 304 (train) has no 304_P folder" in w
    assert "interview 300: 1 segment(s) ran past the end" in w
    assert "found 4 interviews, the official release has 189" in w
    assert json.loads((tmp_path / "out" / "label_map.json").read_text()) == \
        json.loads((REPO / "data_manifests" / "daic-woz" / "label_map.json").read_text())


def test_options_and_corrupt_audio(tmp_path):
    root = make_release(tmp_path / "data", corrupt="301")
    result, _, records = run(root, tmp_path / "out", segment_seconds="5", min_seconds="0.4", gender_coding="1=M,0=F")
    assert not any(r["interview"] == "301" for r in records)
    assert any("skipped interview 301" in w and "cannot decode" in w for w in result.warnings)
    s300 = [(r["start"], r["end"]) for r in records if r["interview"] == "300"]
    assert s300 == [(3.5, 4.0), (6.5, 10.5), (12.5, 17.5), (17.5, 22.5), (22.5, 26.0), (30.0, 30.5), (33.0, 35.0)]
    assert {r["gender"] for r in records if r["interview"] == "300"} == {"M"}
    with pytest.raises(UsageError, match="gender_coding"):
        get_importer("daic-woz").prepare(root, PrepareOptions(out_dir=tmp_path / "o", extra={"gender_coding": "1=X"}))
    with pytest.raises(UsageError, match="segment_seconds"):
        get_importer("daic-woz").prepare(root, PrepareOptions(out_dir=tmp_path / "o", extra={"segment_seconds": "ten"}))


def test_segmenter_unit():
    rows = [(0.0, 4.0, "Participant", "a"), (5.0, 9.0, "Participant", "b"), (9.5, 10.0, "Ellie", "q"),
            (10.5, 31.0, "Participant", "c")]
    # the Ellie row breaks the stretch even though the pause is short; 20.5 s -> 10 + 10 + 0.5 (dropped)
    assert participant_segments(rows, 10.0, 1.0, 2.0) == [(0.0, 9.0, "a b"), (10.5, 20.5, None), (20.5, 30.5, None)]
    assert participant_segments(rows, 10.0, 1.0, 0.5) == [(0.0, 4.0, "a"), (5.0, 9.0, "b"), (10.5, 20.5, None),
                                                          (20.5, 30.5, None)]


def test_wrong_root_and_bad_split_file(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="not a DAIC-WOZ folder"):
        get_importer("daic-woz").prepare(tmp_path / "x", PrepareOptions(out_dir=tmp_path / "o"))
    root = make_release(tmp_path / "data")
    (root / "dev_split_Depression_AVEC2017.csv").write_text("Participant_ID,PHQ8_Binary,PHQ8_Score,Gender\n301,2,3,0\n")
    with pytest.raises(DataError, match=r"dev_split_Depression_AVEC2017\.csv:2: PHQ binary label must be 0 or 1"):
        get_importer("daic-woz").prepare(root, PrepareOptions(out_dir=tmp_path / "o"))


def test_cli_entry_point(tmp_path):
    from emotk.cli import main as cli
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "prepare", "--help"])
    assert e.value.code == 0
    root = make_release(tmp_path / "data")
    with pytest.raises(SystemExit) as e:
        cli.main(["-q", "data", "prepare", "daic-woz", str(root), "-o", str(tmp_path / "out"),
                  "--option", "segment_seconds=5"])
    assert e.value.code == 0
    assert len((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()) == 7

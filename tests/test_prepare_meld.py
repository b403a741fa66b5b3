"""MELD importer: fake MELD.Raw tree (real CSV format), ffmpeg extraction, and the real label CSVs."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

from emotk.data.prepare import get_importer
from emotk.data.prepare.base import PrepareOptions, write_result
from emotk.errors import DataError, EmotkError

REPO = Path(__file__).resolve().parents[1]
SHARED_MELD = Path(__file__).resolve().parents[2] / "shared" / "data" / "meld"
HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"

# (split) -> CSV rows in the release's format: quoted fields, typographic characters, CRLF endings
ROWS = {
    "train": [
        '1,"Oh my God, he\u2019s lost it. He\u2019s totally lost it.",Phoebe,sadness,negative,0,0,4,7,'
        '"00:20:57,256","00:21:00,049"',
        '2,What?,Monica,surprise,negative,0,1,4,7,"00:21:01,927","00:21:03,261"',
        '3,"She said \u201cfine\u201d \u2026 ok",The Interviewer,joy,positive,1,0,8,21,"00:16:16,059","00:16:21,731"',
    ],
    "dev": [
        '1,Hi!,Ross,neutral,neutral,0,0,2,3,"00:01:00,000","00:01:01,000"',
        '2,No way.,Rachel,anger,negative,0,1,2,3,"00:01:01,500","00:01:02,000"',
    ],
    "test": [
        '1,Why?,Mark,fear,negative,0,0,3,19,"00:14:38,127","00:14:40,378"',
    ],
}
VIDEO_DIRS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}


def write_csvs(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for split, rows in ROWS.items():
        (root / f"{split}_sent_emo.csv").write_bytes(("\r\n".join([HEADER, *rows]) + "\r\n").encode("utf-8"))


def clip_names(split: str) -> list[str]:
    return [f"dia{row[5]}_utt{row[6]}" for row in csv.reader(ROWS[split])]


def make_mp4(path: Path) -> None:
    """A 0.3 s clip with a 16x16 video track and a 44.1 kHz stereo sine audio track, made by ffmpeg."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=0.3",
         "-f", "lavfi", "-i", "color=c=black:s=16x16:d=0.3:r=10",
         "-c:v", "mpeg4", "-c:a", "aac", "-ar", "44100", "-ac", "2", "-shortest", str(path)],
        check=True, capture_output=True,
    )


def run(root: Path, out: Path, **extra):
    opts = PrepareOptions(out_dir=out, workers=2, extra=extra)
    result = get_importer("meld").prepare(root, opts)
    summary = write_result(result, opts, overwrite=True)
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    return result, summary, records


def test_transcript_only(tmp_path):
    root = tmp_path / "MELD.Raw"
    write_csvs(root)
    result, summary, records = run(tmp_path, tmp_path / "out", extract_audio="false")  # parent folder works too
    assert [r["id"] for r in records] == sorted(r["id"] for r in records) and len(records) == 6
    by = {r["id"]: r for r in records}
    r = by["meld-train-dia0_utt1"]
    assert r["split"] == "train" and r["dialogue"] == "meld-train-dia0" and r["turn"] == 1
    assert r["speaker"] == "meld-Monica" and r["emotion"] == "surprise" and r["sentiment"] == "negative"
    assert r["media"] == "video" and "sr" not in r and "duration" not in r
    assert r["path"] == "../MELD.Raw/train_splits/dia0_utt1.mp4"
    assert by["meld-train-dia0_utt0"]["text"] == "Oh my God, he\u2019s lost it. He\u2019s totally lost it."
    assert by["meld-train-dia1_utt0"]["text"] == "She said \u201cfine\u201d \u2026 ok"
    assert by["meld-train-dia1_utt0"]["speaker"] == "meld-The Interviewer"
    assert by["meld-dev-dia0_utt1"]["emotion"] == "anger" and by["meld-test-dia0_utt0"]["emotion"] == "fear"
    assert summary["counts"]["split"] == {"dev": 2, "test": 1, "train": 3}
    assert any("found 3 train utterances, the official release has 9989" in w for w in result.warnings)
    written = json.loads((tmp_path / "out" / "label_map.json").read_text())
    assert written == json.loads((REPO / "data_manifests" / "meld" / "label_map.json").read_text())
    assert written["classes"] == ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]


def test_bad_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no MELD label CSVs"):
        get_importer("meld").prepare(tmp_path / "empty", PrepareOptions(out_dir=tmp_path / "o"))
    root = tmp_path / "MELD.Raw"
    write_csvs(root)
    with pytest.raises(DataError, match="no MELD clip folder"):  # default = extract, but there are no clips
        get_importer("meld").prepare(root, PrepareOptions(out_dir=tmp_path / "o"))
    (root / "dev_sent_emo.csv").write_text(HEADER + "\n" + '1,Hi,Ross,happiness,positive,0,0,1,1,"a","b"\n')
    with pytest.raises(DataError, match=r"dev_sent_emo\.csv:2: unknown emotion 'happiness'"):
        get_importer("meld").prepare(root, PrepareOptions(out_dir=tmp_path / "o", extra={"extract_audio": "no"}))


def test_missing_ffmpeg_is_a_clear_error(tmp_path, monkeypatch):
    from emotk.data.prepare import meld

    root = tmp_path / "MELD.Raw"
    write_csvs(root)
    (root / "train_splits").mkdir()
    (root / "train_splits" / "dia0_utt0.mp4").write_bytes(b"\x00" * 64)
    monkeypatch.setattr(meld.shutil, "which", lambda name: None)
    with pytest.raises(EmotkError, match="apt-get install ffmpeg"):
        meld.prepare(root, PrepareOptions(out_dir=tmp_path / "o"))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg program")
def test_extract_audio_resumable(tmp_path):
    root = tmp_path / "MELD.Raw"
    write_csvs(root)
    src = tmp_path / "clip.mp4"
    make_mp4(src)
    for split in ROWS:
        for name in clip_names(split):
            dst = root / VIDEO_DIRS[split] / f"{name}.mp4"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    (root / "dev_splits_complete" / "dia0_utt1.mp4").unlink()  # like dev dia110_utt7 in the release
    (root / "output_repeated_splits_test" / "dia0_utt0.mp4").write_bytes(b"not a video")  # corrupt clip
    out = tmp_path / "out"
    stale = out / "audio" / "train" / ".dia0_utt0.wav.abc123.part.wav"  # left by a killed run
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    half = out / "audio" / "train" / "dia0_utt1.wav"
    half.write_bytes(b"RIFF")  # an invalid file at the final name is redone

    result, summary, records = run(root, out)
    ids = [r["id"] for r in records]
    assert ids == ["meld-dev-dia0_utt0", "meld-train-dia0_utt0", "meld-train-dia0_utt1", "meld-train-dia1_utt0"]
    assert any("skipped meld-dev-dia0_utt1" in w and "clip not found" in w for w in result.warnings)
    assert any("skipped meld-test-dia0_utt0" in w and "ffmpeg failed" in w for w in result.warnings)
    assert any("found 1 dev utterances" in w for w in result.warnings)
    assert not stale.exists() and not list(out.rglob("*.part.wav"))
    for r in records:
        assert r["path"] == f"audio/{r['split']}/{r['id'].split('-', 2)[2]}.wav"
        info = sf.info(str(out / r["path"]))
        assert (info.samplerate, info.channels) == (16000, 1) and r["sr"] == 16000
        assert r["duration"] == pytest.approx(0.3, abs=0.05)
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*.wav")}

    # second run: nothing left to extract, so ffmpeg is not even needed; files are untouched
    (root / "output_repeated_splits_test" / "dia0_utt0.mp4").unlink()
    result2, _, records2 = run(root, out, ffmpeg="/nonexistent/ffmpeg")
    assert [r["id"] for r in records2] == ids
    assert {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*.wav")} == mtimes


def test_cli_entry_point(tmp_path):
    from emotk.cli import main as cli
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "prepare", "--help"])
    assert e.value.code == 0
    write_csvs(tmp_path / "MELD.Raw")
    with pytest.raises(SystemExit) as e:
        cli.main(["-q", "data", "prepare", "meld", str(tmp_path), "-o", str(tmp_path / "out"),
                  "--option", "extract_audio=false"])
    assert e.value.code == 0
    assert len((tmp_path / "out" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()) == 6
    with pytest.raises(SystemExit) as e:
        cli.main(["-q", "data", "prepare", "meld", str(tmp_path), "-o", str(tmp_path / "out2"),
                  "--option", "extract_audio=maybe"])
    assert e.value.code == 2


# MELD README numbers (emotion per split)
REAL_EMOTIONS = {
    "train": {"neutral": 4710, "joy": 1743, "surprise": 1205, "anger": 1109, "sadness": 683, "disgust": 271,
              "fear": 268},
    "dev": {"neutral": 470, "joy": 163, "surprise": 150, "anger": 153, "sadness": 111, "disgust": 22, "fear": 40},
    "test": {"neutral": 1256, "joy": 402, "surprise": 281, "anger": 345, "sadness": 208, "disgust": 68, "fear": 50},
}


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED_MELD / "train_sent_emo.csv").is_file(), reason="../shared/data/meld not present")
def test_real_meld_csvs_transcript_only(tmp_path):
    result, summary, records = run(SHARED_MELD, tmp_path / "out", extract_audio="false")
    assert summary["counts"]["split"] == {"dev": 1109, "test": 2610, "train": 9989}
    assert summary["utterances"] == 13708
    for split, expected in REAL_EMOTIONS.items():
        assert Counter(r["emotion"] for r in records if r["split"] == split) == expected
    assert summary["counts"]["emotion"]["neutral"] == 6436
    assert Counter(r["sentiment"] for r in records) == {"neutral": 6436, "negative": 4184, "positive": 3088}
    assert {s: len({r["dialogue"] for r in records if r["split"] == s}) for s in REAL_EMOTIONS} == \
        {"train": 1038, "dev": 114, "test": 280}
    assert not [w for w in result.warnings if "official release" in w]  # every count matches
    first = next(r for r in records if r["id"] == "meld-dev-dia0_utt0")
    assert (first["text"] == "Oh my God, he\u2019s lost it. He\u2019s totally lost it."
            and first["speaker"] == "meld-Phoebe")

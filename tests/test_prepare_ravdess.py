"""RAVDESS importer: fake official tree (speech + song parts), real shared copy, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotk.data.labels import LabelMap
from emotk.data.prepare import get_importer, ravdess
from emotk.data.prepare.base import PrepareOptions, write_result
from emotk.errors import DataError, UsageError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess"


def _tone(path: Path, sr: int = 16000, seconds: float = 0.2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    sf.write(str(path), (0.1 * rng.standard_normal(int(sr * seconds))).astype(np.float32), sr)


def _tree(root: Path) -> None:
    speech = root / "Audio_Speech_Actors_01-24"
    song = root / "Audio_Song_Actors_01-24"
    for name in ("03-01-01-01-01-01-01", "03-01-06-02-02-01-01", "03-01-08-02-01-02-01"):
        _tone(speech / "Actor_01" / f"{name}.wav")
    for name in ("03-01-05-02-01-01-02", "03-01-07-01-02-02-02"):
        _tone(speech / "Actor_02" / f"{name}.wav", sr=48000)
    _tone(song / "Actor_01" / "03-02-02-02-01-01-01.wav")
    _tone(song / "Actor_02" / "03-02-06-01-02-02-02.wav")
    (speech / "Actor_02" / "03-01-04-01-01-01-02.wav").write_bytes(b"not audio at all")  # corrupt
    (speech / "Actor_02" / "notes.wav").write_bytes(b"x")  # not a RAVDESS name


def _opts(tmp_path: Path, **extra) -> PrepareOptions:
    return PrepareOptions(out_dir=tmp_path / "out", workers=2, extra=extra)


def test_registry_and_contract():
    mod = get_importer("ravdess")
    assert mod is ravdess
    assert mod.DATASET == "ravdess" and mod.DESCRIPTION and "Actor_01" in mod.LAYOUT
    assert set(mod.OPTIONS) == {"part"}


def test_parse_name_fields():
    rec = ravdess.parse_name("03-01-06-02-02-01-12")
    assert rec == {
        "id": "ravdess-03-01-06-02-02-01-12", "dataset": "ravdess", "speaker": "ravdess-12", "gender": "F",
        "language": "en", "emotion": "fearful", "emotion_raw": "06", "intensity": "strong",
        "text": "Dogs are sitting by the door", "statement": 2, "repetition": 1, "vocal_channel": "speech",
    }
    song = ravdess.parse_name("03-02-02-01-01-02-07")
    assert song["dataset"] == "ravdess-song" and song["gender"] == "M" and song["emotion"] == "calm"
    assert ravdess.parse_name("03-02-07-01-01-01-01") is None  # song has no disgust
    assert ravdess.parse_name("03-01-01-02-01-01-01") is None  # neutral has no strong intensity
    assert ravdess.parse_name("03-01-09-01-01-01-01") is None
    assert ravdess.parse_name("03-01-01-01-01-01-25") is None
    assert ravdess.parse_name("03-01-01-01-01-01") is None


def test_prepare_both_parts(tmp_path):
    root = tmp_path / "RAVDESS"
    _tree(root)
    opts = _opts(tmp_path)
    result = ravdess.prepare(root, opts)
    summary = write_result(result, opts)

    lines = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    ids = [r["id"] for r in recs]
    assert ids == sorted(ids)
    assert ids == [
        "ravdess-03-01-01-01-01-01-01", "ravdess-03-01-05-02-01-01-02", "ravdess-03-01-06-02-02-01-01",
        "ravdess-03-01-07-01-02-02-02", "ravdess-03-01-08-02-01-02-01", "ravdess-03-02-02-02-01-01-01",
        "ravdess-03-02-06-01-02-02-02",
    ]
    by_id = {r["id"]: r for r in recs}
    angry = by_id["ravdess-03-01-05-02-01-01-02"]
    assert angry["speaker"] == "ravdess-02" and angry["gender"] == "F" and angry["emotion"] == "angry"
    assert angry["intensity"] == "strong" and angry["text"] == "Kids are talking by the door"
    assert angry["sr"] == 48000 and angry["duration"] == pytest.approx(0.2)
    assert angry["path"] == "../RAVDESS/Audio_Speech_Actors_01-24/Actor_02/03-01-05-02-01-01-02.wav"
    song = by_id["ravdess-03-02-06-01-02-02-02"]
    assert song["dataset"] == "ravdess-song" and song["emotion"] == "fearful" and song["vocal_channel"] == "song"
    assert {r["dataset"] for r in recs} == {"ravdess", "ravdess-song"}

    # corrupt file skipped with a warning, bad name ignored with a warning, partial-copy count warnings
    assert any("ravdess-03-01-04-01-01-01-02" in w for w in result.warnings)
    assert any("not RAVDESS audio names" in w for w in result.warnings)
    assert any("speech files" in w and "1440" in w for w in result.warnings)
    assert any("song files" in w and "1012" in w for w in result.warnings)
    assert summary["expected"] == {"speech files": 1440, "speech actors": 24, "song files": 1012, "song actors": 23}
    assert summary["utterances"] == 7

    out = tmp_path / "out"
    assert LabelMap.load(out / "label_map.json").classes == sorted(ravdess.EMOTIONS.values())
    song_map = LabelMap.load(out / "label_map.ravdess-song.json")
    assert song_map.num_classes == 6 and song_map.convert("06") == "fearful" and song_map.convert("07") is None
    assert json.loads((out / "prepare.json").read_text())["dataset"] == "ravdess"


def test_part_option_and_flat_layout(tmp_path):
    root = tmp_path / "flat"
    _tone(root / "Actor_03" / "03-01-02-01-01-01-03.flac")
    _tone(root / "Actor_03" / "03-02-03-02-02-02-03.wav")
    _tone(root / "Actor_03" / "03-01-02-01-01-01-03.wav")  # same name as the flac: second copy ignored
    song = ravdess.prepare(root, _opts(tmp_path, part="song"))
    assert song.dataset == "ravdess-song" and [r["id"] for r in song.records] == ["ravdess-03-02-03-02-02-02-03"]
    assert [lm.name for lm in song.label_maps] == ["ravdess-song"]
    speech = ravdess.prepare(root, _opts(tmp_path, part="speech"))
    assert [r["path"].rsplit(".", 1)[1] for r in speech.records] == ["wav"]
    assert any("second copies" in w for w in speech.warnings)
    with pytest.raises(UsageError, match="part"):
        ravdess.prepare(root, _opts(tmp_path, part="video"))


def test_wrong_root(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="Actor_XX"):
        ravdess.prepare(tmp_path / "empty", _opts(tmp_path))
    with pytest.raises(DataError):
        ravdess.prepare(tmp_path / "missing", _opts(tmp_path))


def test_committed_label_maps_match():
    assert [lm.name for lm in ravdess.label_maps()] == ["ravdess", "ravdess-song"]
    for lm in ravdess.label_maps():
        name = lm.name
        committed = LabelMap.load(REPO / "data_manifests" / name / "label_map.json")
        assert committed.to_dict() == lm.to_dict()
        assert json.loads((REPO / "data_manifests" / name / "label_map.json").read_text())["sha256"] == lm.sha256


def test_cli_prepare(tmp_path, capsys):
    from emotk.cli.main import main
    root = tmp_path / "RAVDESS"
    _tree(root)
    with pytest.raises(SystemExit) as exc:
        main(["--json", "data", "prepare", "ravdess", str(root), "-o", str(tmp_path / "cli"), "--option", "part=song"])
    assert exc.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"] == "ravdess-song" and summary["utterances"] == 2
    with pytest.raises(SystemExit) as exc:
        main(["data", "prepare", "ravdess", str(root), "-o", str(tmp_path / "cli"), "--option", "part=song"])
    assert exc.value.code == 1  # exists, no --overwrite
    with pytest.raises(SystemExit) as exc:
        main(["data", "prepare", "ravdess", str(root), "-o", str(tmp_path / "cli2"), "--option", "prt=song"])
    assert exc.value.code == 2


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "manifest.jsonl").is_file(), reason="../shared/data/ravdess is not available")
def test_shared_ravdess_matches_reference_manifest(tmp_path):
    opts = PrepareOptions(out_dir=tmp_path / "out", workers=4, extra={"part": "speech"})
    result = ravdess.prepare(SHARED, opts)
    assert result.warnings == []
    write_result(result, opts)
    ours = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (SHARED / "manifest.jsonl").read_text().splitlines()]
    assert len(ours) == len(ref) == 1440
    assert [r["id"] for r in ours] == [r["id"] for r in ref]
    fields = ("dataset", "speaker", "gender", "emotion", "intensity", "text", "statement", "repetition", "sr",
              "duration")
    for mine, theirs in zip(ours, ref):
        for key in fields:
            assert mine[key] == theirs[key], (mine["id"], key)
        assert (tmp_path / "out" / mine["path"]).resolve() == (SHARED / theirs["path"]).resolve()

"""Generic importer: CSV tables with column mapping, regex over paths, plain folders, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotk.data.labels import LabelMap
from emotk.data.prepare import generic, get_importer
from emotk.data.prepare.base import PrepareOptions, write_result
from emotk.errors import DataError, UsageError


def _tone(path: Path, sr: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    sf.write(str(path), (0.1 * rng.standard_normal(int(0.2 * sr))).astype(np.float32), sr)


def _tree(root: Path) -> None:
    _tone(root / "spk1" / "happy_01.wav")
    _tone(root / "spk1" / "Sad_02.flac", sr=22050)
    _tone(root / "spk2" / "angry_01.wav")
    _tone(root / "spk2" / "extra" / "noise.ogg")
    (root / "spk2" / "neutral_03.wav").write_bytes(b"not a wav")  # corrupt
    (root / "notes.txt").write_text("ignore me")


def _opts(tmp_path: Path, **extra) -> PrepareOptions:
    return PrepareOptions(out_dir=tmp_path / "out", workers=2, extra=extra)


def test_contract():
    assert get_importer("generic") is generic
    assert set(generic.OPTIONS) == {"csv", "columns", "regex", "dataset", "ext"}
    assert generic.DESCRIPTION and generic.LAYOUT


def test_regex(tmp_path):
    root = tmp_path / "My Corpus"
    _tree(root)
    opts = _opts(tmp_path, regex=r"(?P<speaker>[^/]+)/(?P<emotion>[A-Za-z]+)_\d+\.(wav|flac)$")
    result = generic.prepare(root, opts)
    summary = write_result(result, opts)
    assert result.dataset == "my-corpus"
    recs = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [(r["id"], r["speaker"], r["emotion"], r["emotion_raw"]) for r in recs] == [
        ("my-corpus-spk1_Sad_02", "my-corpus-spk1", "sad", "Sad"),
        ("my-corpus-spk1_happy_01", "my-corpus-spk1", "happy", "happy"),
        ("my-corpus-spk2_angry_01", "my-corpus-spk2", "angry", "angry"),
    ]
    assert recs[0]["sr"] == 22050 and recs[0]["path"] == "../My Corpus/spk1/Sad_02.flac"
    warnings = "\n".join(result.warnings)
    assert "my-corpus-spk2_neutral_03" in warnings  # corrupt, skipped after matching
    assert "1 audio files that the regex does not match (e.g. spk2/extra/noise.ogg)" in warnings
    lm = LabelMap.load(tmp_path / "out" / "label_map.json")
    assert lm.classes == ["angry", "happy", "sad"] and lm.map == {"Sad": "sad"}  # skipped neutral_03 adds none
    assert summary["dataset"] == "my-corpus"


def test_regex_errors(tmp_path):
    root = tmp_path / "c"
    _tree(root)
    with pytest.raises(DataError, match="matches none of the 5 audio files"):
        generic.prepare(root, _opts(tmp_path, regex=r"(?P<emotion>xyz)"))
    with pytest.raises(UsageError, match="invalid pattern"):
        generic.prepare(root, _opts(tmp_path, regex=r"(?P<emotion>[a-z"))
    with pytest.raises(UsageError, match="named groups"):
        generic.prepare(root, _opts(tmp_path, regex=r"[a-z]+"))
    with pytest.raises(UsageError, match="exclude each other"):
        generic.prepare(root, _opts(tmp_path, regex=r"(?P<x>a)", csv="t.csv"))


def test_plain_folder_with_ext_and_dataset(tmp_path):
    root = tmp_path / "c"
    _tree(root)
    result = generic.prepare(root, _opts(tmp_path, ext="ogg,flac", dataset="Demo"))
    assert [(r["id"], r["dataset"]) for r in result.records] == [
        ("demo-spk1_Sad_02", "demo"), ("demo-spk2_extra_noise", "demo")]
    assert result.label_maps == [] and "emotion" not in result.records[0]


def test_csv_with_columns(tmp_path):
    root = tmp_path / "c"
    _tree(root)
    (root / "labels.csv").write_text(
        "file,label,actor,valence,note\n"
        "spk1/happy_01.wav,Happy,A,0.8,first\n"
        "spk2/angry_01.wav,angry,B,,\n"
        "spk2/missing.wav,sad,B,0.1,\n"
        "spk2/neutral_03.wav,neutral,B,0.5,broken audio\n")
    opts = _opts(tmp_path, csv="labels.csv", columns="path:file,emotion:label,speaker:actor", dataset="lab")
    result = generic.prepare(root, opts)
    write_result(result, opts)
    recs = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert recs[0] == {**recs[0], "id": "lab-spk1_happy_01", "dataset": "lab", "emotion": "happy",
                       "emotion_raw": "Happy", "speaker": "lab-A", "valence": 0.8, "note": "first"}
    assert "label" not in recs[0] and "file" not in recs[0] and "actor" not in recs[0]
    assert recs[1]["id"] == "lab-spk2_angry_01" and "valence" not in recs[1]
    assert len(recs) == 2
    warnings = "\n".join(result.warnings)
    assert "skipped 1 CSV rows whose audio file does not exist" in warnings and "labels.csv:4" in warnings
    assert "lab-spk2_neutral_03" in warnings
    lm = result.label_maps[0]
    assert lm.name == "lab" and lm.classes == ["angry", "happy"] and lm.convert("Happy") == "happy"


def test_csv_default_columns_and_ids(tmp_path):
    root = tmp_path / "c"
    _tree(root)
    (root / "meta.csv").write_text("id,path,emotion,start,end\nutt1,spk1/happy_01.wav,happy,0.0,0.1\n")
    result = generic.prepare(root, _opts(tmp_path, csv=str(root / "meta.csv")))
    rec = result.records[0]
    assert (rec["id"], rec["start"], rec["end"], rec["emotion"]) == ("c-utt1", 0.0, 0.1, "happy")


def test_csv_errors(tmp_path):
    root = tmp_path / "c"
    _tree(root)
    (root / "t.csv").write_text("file,label\nspk1/happy_01.wav,happy\n")
    with pytest.raises(DataError, match=r"t.csv:1: column 'emo' \(for field 'emotion'\) not in the header"):
        generic.prepare(root, _opts(tmp_path, csv="t.csv", columns="emotion:emo"))
    (root / "u.csv").write_text("audio,label\nspk1/happy_01.wav,happy\n")
    with pytest.raises(DataError, match="no audio path column"):
        generic.prepare(root, _opts(tmp_path, csv="u.csv"))
    (root / "v.csv").write_text("path,valence\nspk1/happy_01.wav,high\n")
    with pytest.raises(DataError, match=r"v.csv:2: field 'valence' must be a number"):
        generic.prepare(root, _opts(tmp_path, csv="v.csv"))
    (root / "w.csv").write_text("path,id\nspk1/happy_01.wav,a\nspk2/angry_01.wav,a\n")
    with pytest.raises(DataError, match=r"w.csv:3: duplicate id 'c-a' \(first on line 2\)"):
        generic.prepare(root, _opts(tmp_path, csv="w.csv"))
    with pytest.raises(DataError, match="CSV file not found"):
        generic.prepare(root, _opts(tmp_path, csv="nope.csv"))
    with pytest.raises(UsageError, match="FIELD:COLUMN"):
        generic.prepare(root, _opts(tmp_path, csv="t.csv", columns="emotion"))
    with pytest.raises(UsageError, match="needs csv"):
        generic.prepare(root, _opts(tmp_path, columns="emotion:label"))


def test_wrong_root(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        generic.prepare(tmp_path / "empty", _opts(tmp_path))
    with pytest.raises(DataError, match="folder not found"):
        generic.prepare(tmp_path / "missing", _opts(tmp_path))


def test_cli_prepare(tmp_path, capsys):
    from emotk.cli.main import main
    root = tmp_path / "c"
    _tree(root)
    with pytest.raises(SystemExit) as exc:
        main(["--json", "data", "prepare", "generic", str(root), "-o", str(tmp_path / "cli"),
              "--option", r"regex=(?P<speaker>[^/]+)/(?P<emotion>[a-z]+)_\d+\.wav$", "--option", "dataset=toy"])
    assert exc.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"] == "toy" and summary["utterances"] == 2
    assert summary["label_maps"] == {"toy": "label_map.json"}
    with pytest.raises(SystemExit) as exc:
        main(["data", "prepare", "generic", str(root), "-o", str(tmp_path / "cli2"), "--option", "regex=[a-z]+"])
    assert exc.value.code == 2

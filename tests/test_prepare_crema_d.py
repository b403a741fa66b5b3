"""CREMA-D importer on a fake copy of the release (AudioWAV + VideoDemographics.csv)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotk.data.labels import LabelMap
from emotk.data.prepare import crema_d, get_importer
from emotk.data.prepare.base import PrepareOptions, write_result
from emotk.errors import DataError

REPO = Path(__file__).resolve().parents[1]
DEMOGRAPHICS = (
    '"ActorID","Age","Sex","Race","Ethnicity"\n'
    '1001,51,"Male","Caucasian","Not Hispanic"\n'
    '1002,21,"Female","Caucasian","Not Hispanic"\n'
    '1076,25,"Female","Caucasian","Not Hispanic"\n'
)


def _tone(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    sf.write(str(path), (0.1 * rng.standard_normal(3200)).astype(np.float32), 16000)


def _tree(root: Path) -> None:
    audio = root / "AudioWAV"
    for name in ("1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_WSI_FEA_LO", "1002_IEO_DIS_MD", "1076_TSI_NEU_XX",
                 "1091_ITH_SAD_XX"):  # 1091 is not in the (shortened) demographics table
        _tone(audio / f"{name}.wav")
    (audio / "1076_MTI_SAD_XX.wav").write_bytes(b"")  # the known empty file of the release
    (audio / "1002_TAI_NEU_XX.wav").write_bytes(b"RIFF....WAVEfmt garbage")  # corrupt
    (audio / "1001_XYZ_ANG_XX.wav").write_bytes(b"x")  # unknown sentence code
    (root / "VideoDemographics.csv").write_text(DEMOGRAPHICS)
    (root / "SentenceFilenames.csv").write_text("Stimulus_Number,Filename\n1,1001_DFA_ANG_XX\n")


def _opts(tmp_path: Path) -> PrepareOptions:
    return PrepareOptions(out_dir=tmp_path / "out", workers=2)


def test_contract():
    assert get_importer("crema-d") is crema_d and get_importer("crema_d") is crema_d
    assert crema_d.DATASET == "crema-d" and crema_d.DESCRIPTION and "AudioWAV" in crema_d.LAYOUT
    assert len(crema_d.SENTENCES) == 12


def test_parse_name():
    assert crema_d.parse_name("1001_DFA_ANG_XX") == {
        "id": "crema-d-1001_DFA_ANG_XX", "dataset": "crema-d", "speaker": "crema-d-1001", "language": "en",
        "emotion": "angry", "emotion_raw": "ANG", "intensity": "unspecified", "sentence": "DFA",
        "text": "Don't forget a jacket",
    }
    assert crema_d.parse_name("1040_IEO_FEA_MD")["intensity"] == "medium"
    assert crema_d.parse_name("1040_IEO_CAL_MD") is None
    assert crema_d.parse_name("1040_IEO_FEA_ZZ") is None


def test_prepare_fake_tree(tmp_path):
    root = tmp_path / "CREMA-D"
    _tree(root)
    opts = _opts(tmp_path)
    result = crema_d.prepare(root, opts)
    summary = write_result(result, opts)
    recs = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in recs}
    assert list(by_id) == ["crema-d-1001_DFA_ANG_XX", "crema-d-1001_IEO_HAP_HI", "crema-d-1002_IEO_DIS_MD",
                           "crema-d-1002_WSI_FEA_LO", "crema-d-1076_TSI_NEU_XX", "crema-d-1091_ITH_SAD_XX"]
    assert by_id["crema-d-1001_DFA_ANG_XX"]["gender"] == "M"
    fear = by_id["crema-d-1002_WSI_FEA_LO"]
    assert (fear["gender"], fear["emotion"], fear["intensity"], fear["text"]) == (
        "F", "fear", "low", "We'll stop in a couple of minutes")
    assert fear["path"] == "../CREMA-D/AudioWAV/1002_WSI_FEA_LO.wav" and fear["sr"] == 16000
    assert "gender" not in by_id["crema-d-1091_ITH_SAD_XX"]
    warnings = "\n".join(result.warnings)
    assert "skipped 1076_MTI_SAD_XX.wav: empty in the CREMA-D release (known issue)" in warnings
    assert "crema-d-1002_TAI_NEU_XX" in warnings  # corrupt, skipped
    assert "not CREMA-D clip names" in warnings
    assert "1 actors are not in VideoDemographics.csv" in warnings
    assert "found 8 clips, the official release has 7442" in warnings
    assert summary["expected"] == {"clips": 7442, "actors": 91}
    lm = LabelMap.load(tmp_path / "out" / "label_map.json")
    assert lm.classes == ["angry", "disgust", "fear", "happy", "neutral", "sad"] and lm.convert("FEA") == "fear"


def test_demographics_errors_and_missing(tmp_path):
    root = tmp_path / "c"
    _tone(root / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    result = crema_d.prepare(root, _opts(tmp_path))  # no demographics: warning, no gender
    assert "gender" not in result.records[0] and any("not found" in w for w in result.warnings)
    (root / "VideoDemographics.csv").write_text('"ActorID","Age","Sex"\n1001,51,"Robot"\n')
    with pytest.raises(DataError, match=r"VideoDemographics.csv:2: Sex"):
        crema_d.prepare(root, _opts(tmp_path))
    (root / "VideoDemographics.csv").write_text('"Actor","Age"\n1001,51\n')
    with pytest.raises(DataError, match=r"VideoDemographics.csv:1: expected columns"):
        crema_d.prepare(root, _opts(tmp_path))


def test_wrong_root(tmp_path):
    (tmp_path / "AudioFiles").mkdir()
    with pytest.raises(DataError, match="AudioWAV"):
        crema_d.prepare(tmp_path, _opts(tmp_path))


def test_committed_label_map_matches():
    [lm] = crema_d.label_maps()
    assert LabelMap.load(REPO / "data_manifests" / "crema-d" / "label_map.json").to_dict() == lm.to_dict()


def test_cli_prepare(tmp_path, capsys):
    from emotk.cli.main import main
    root = tmp_path / "CREMA-D"
    _tree(root)
    with pytest.raises(SystemExit) as exc:
        main(["--json", "data", "prepare", "crema-d", str(root), "-o", str(tmp_path / "cli")])
    assert exc.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["utterances"] == 6 and summary["speakers"] == 4

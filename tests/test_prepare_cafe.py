"""CaFE importer on a fake copy of the official CaFE_48k / CaFE_192k layout."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotk.data.labels import LabelMap
from emotk.data.prepare import cafe, get_importer
from emotk.data.prepare.base import PrepareOptions, write_result
from emotk.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def _tone(path: Path, sr: int = 48000, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    sf.write(str(path), (0.1 * rng.standard_normal(int(sr * 0.2))).astype(np.float32), sr, format=fmt)


def _tree(root: Path) -> None:
    base = root / "CaFE_48k"
    _tone(base / "Colère" / "Faible" / "01-C-1-1.wav")
    _tone(base / "Colère" / "Fort" / "01-C-2-1.wav")
    _tone(base / "Neutre" / "02-N-3.wav")
    _tone(base / "Joie" / "Fort" / "12-J-2-6.wav")
    _tone(base / unicodedata.normalize("NFD", "Dégoût") / "Faible" / "05-D-1-4.wav")  # decomposed accents
    _tone(base / "Peur" / "Faible" / "03-T-1-2.wav")  # filed under the wrong emotion
    (base / "Surprise" / "Fort").mkdir(parents=True)
    (base / "Surprise" / "Fort" / "04-S-2-5.wav").write_bytes(b"RIFF....garbage")  # corrupt
    (base / "Tristesse" / "Faible").mkdir(parents=True)
    (base / "Tristesse" / "Faible" / "readme.wav").write_bytes(b"x")
    _tone(root / "CaFE_192k_1" / "Colère" / "Faible" / "01-C-1-1.aiff", sr=192000, fmt="AIFF")  # 2nd version


def _opts(tmp_path: Path) -> PrepareOptions:
    return PrepareOptions(out_dir=tmp_path / "out", workers=2)


def test_contract():
    assert get_importer("cafe") is cafe
    assert cafe.DATASET == "cafe" and cafe.DESCRIPTION and "Neutre" in cafe.LAYOUT and cafe.OPTIONS == {}


def test_parse_name():
    assert cafe.parse_name("07-P-2-4") == {
        "id": "cafe-07-P-2-4", "dataset": "cafe", "speaker": "cafe-07", "gender": "M", "language": "fr",
        "emotion": "fear", "emotion_raw": "P", "sentence": "4", "text": "Quatre vieilles truies éléphantesques",
        "intensity": "high",
    }
    neutral = cafe.parse_name("10-N-1")
    assert neutral["gender"] == "F" and neutral["emotion"] == "neutral" and "intensity" not in neutral
    assert cafe.parse_name("10-N-1-1") is None  # neutral has no intensity
    assert cafe.parse_name("10-C-1") is None  # other emotions need one
    assert cafe.parse_name("10-C-1-7") is None  # six sentences
    assert cafe.parse_name("10-X-1-1") is None


def test_prepare_fake_tree(tmp_path):
    root = tmp_path / "cafe"
    _tree(root)
    opts = _opts(tmp_path)
    result = cafe.prepare(root, opts)
    summary = write_result(result, opts)
    recs = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    ids = [r["id"] for r in recs]
    assert ids == ["cafe-01-C-1-1", "cafe-01-C-2-1", "cafe-02-N-3", "cafe-03-T-1-2", "cafe-05-D-1-4",
                   "cafe-12-J-2-6"]
    by_id = {r["id"]: r for r in recs}
    low = by_id["cafe-01-C-1-1"]
    assert low["path"].endswith("CaFE_48k/Colère/Faible/01-C-1-1.wav") and low["sr"] == 48000  # WAV over AIFF
    assert low["intensity"] == "low" and low["emotion"] == "angry" and low["gender"] == "M"
    assert low["text"] == "Un cheval fou dans mon jardin" and low["language"] == "fr"
    assert by_id["cafe-02-N-3"]["gender"] == "F" and "intensity" not in by_id["cafe-02-N-3"]
    assert by_id["cafe-05-D-1-4"]["emotion"] == "disgust"
    assert by_id["cafe-03-T-1-2"]["emotion"] == "sad"  # label from the name, folder mismatch warned
    assert by_id["cafe-12-J-2-6"]["text"] == "Six ours aimants domestiqués"

    warnings = "\n".join(result.warnings)
    assert "cafe-04-S-2-5" in warnings  # corrupt file skipped
    assert "disagrees" in warnings and "03-T-1-2" in warnings
    assert "second copies" in warnings and "01-C-1-1.aiff" in warnings
    assert "not CaFE names" in warnings
    assert "found 7 files, the official release has 936" in warnings
    assert summary["expected"] == {"files": 936, "speakers": 12}
    lm = LabelMap.load(tmp_path / "out" / "label_map.json")
    assert lm.num_classes == 7 and lm.convert("J") == "happy" and lm.convert("P") == "fear"


def test_192k_only_layout_reads_aiff(tmp_path):
    root = tmp_path / "cafe192"
    _tone(root / "CaFE_192k_2" / "Tristesse" / "Fort" / "08-T-2-2.aiff", sr=192000, fmt="AIFF")
    _tone(root / "CaFE_192k_2" / "Neutre" / "08-N-2.aiff", sr=192000, fmt="AIFF")
    result = cafe.prepare(root, _opts(tmp_path))
    assert [(r["id"], r["sr"]) for r in result.records] == [("cafe-08-N-2", 192000), ("cafe-08-T-2-2", 192000)]


def test_wrong_root(tmp_path):
    (tmp_path / "x" / "Anger").mkdir(parents=True)
    with pytest.raises(DataError, match="Colère"):
        cafe.prepare(tmp_path / "x", _opts(tmp_path))


def test_committed_label_map_matches():
    [lm] = cafe.label_maps()
    assert LabelMap.load(REPO / "data_manifests" / "cafe" / "label_map.json").to_dict() == lm.to_dict()


def test_cli_prepare(tmp_path, capsys):
    from emotk.cli.main import main
    root = tmp_path / "cafe"
    _tree(root)
    with pytest.raises(SystemExit) as exc:
        main(["--json", "data", "prepare", "cafe", str(root), "-o", str(tmp_path / "cli"), "--root-name", "CAFE"])
    assert exc.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["utterances"] == 6
    first = json.loads((tmp_path / "cli" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["path"] == "${CAFE}/CaFE_48k/Colère/Faible/01-C-1-1.wav"

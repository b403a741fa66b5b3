"""EmoDB importer on a fake copy of the release (wav/ folder + the other release folders)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotk.data.labels import LabelMap
from emotk.data.prepare import emodb, get_importer
from emotk.data.prepare.base import PrepareOptions, write_result
from emotk.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def _tone(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    sf.write(str(path), (0.1 * rng.standard_normal(3200)).astype(np.float32), 16000)


def _tree(root: Path) -> None:
    for name in ("03a01Fa", "08b02Tc", "16a05Nb", "09b10Lb", "13a07Ea", "12b03Ad", "10a04Wa"):
        _tone(root / "wav" / f"{name}.wav")
    (root / "wav" / "15b09Wa.wav").write_bytes(b"\x00" * 10)  # corrupt
    (root / "wav" / "erklaerung.wav").write_bytes(b"x")  # not an EmoDB name
    (root / "lablaut").mkdir()
    (root / "lablaut" / "03a01Fa.lab").write_text("...")
    (root / "erkennung.txt").write_text("...")


def _opts(tmp_path: Path) -> PrepareOptions:
    return PrepareOptions(out_dir=tmp_path / "out", workers=2)


def test_contract():
    assert get_importer("emodb") is emodb
    assert emodb.DATASET == "emodb" and emodb.DESCRIPTION and "wav/" in emodb.LAYOUT and emodb.OPTIONS == {}
    assert len(emodb.TEXTS) == 10 and len(emodb.GENDERS) == 10


def test_parse_name():
    assert emodb.parse_name("03a01Fa") == {
        "id": "emodb-03a01Fa", "dataset": "emodb", "speaker": "emodb-03", "language": "de", "emotion": "happy",
        "emotion_raw": "F", "sentence": "a01", "version": "a", "gender": "M",
        "text": "Der Lappen liegt auf dem Eisschrank.",
    }
    rec = emodb.parse_name("99c01Wa")
    assert rec is None
    unknown = emodb.parse_name("99a03Wa")  # speaker and text code not documented: no gender / text
    assert unknown["emotion"] == "angry" and "gender" not in unknown and "text" not in unknown
    assert emodb.parse_name("03a01Xa") is None


def test_prepare_fake_tree(tmp_path):
    root = tmp_path / "emodb"
    _tree(root)
    opts = _opts(tmp_path)
    result = emodb.prepare(root, opts)
    summary = write_result(result, opts)
    recs = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in recs] == ["emodb-03a01Fa", "emodb-08b02Tc", "emodb-09b10Lb", "emodb-10a04Wa",
                                       "emodb-12b03Ad", "emodb-13a07Ea", "emodb-16a05Nb"]
    by_id = {r["id"]: r for r in recs}
    assert [by_id[i]["emotion"] for i in sorted(by_id)] == ["happy", "sad", "boredom", "angry", "fear",
                                                             "disgust", "neutral"]
    assert by_id["emodb-08b02Tc"]["gender"] == "F" and by_id["emodb-08b02Tc"]["version"] == "c"
    assert by_id["emodb-08b02Tc"]["text"].startswith("Sie haben es gerade hochgetragen")
    assert by_id["emodb-10a04Wa"]["text"] == "Heute abend könnte ich es ihm sagen."
    assert by_id["emodb-16a05Nb"]["path"] == "../emodb/wav/16a05Nb.wav" and by_id["emodb-16a05Nb"]["sr"] == 16000
    warnings = "\n".join(result.warnings)
    assert "emodb-15b09Wa" in warnings and "not EmoDB names" in warnings
    assert "found 8 files, the official release has 535" in warnings
    assert summary["expected"] == {"files": 535, "speakers": 10}
    lm = LabelMap.load(tmp_path / "out" / "label_map.json")
    assert lm.classes == ["angry", "boredom", "disgust", "fear", "happy", "neutral", "sad"]


def test_flat_layout(tmp_path):
    _tone(tmp_path / "flat" / "11a02Na.wav")
    result = emodb.prepare(tmp_path / "flat", _opts(tmp_path))
    assert [(r["id"], r["gender"], r["path"]) for r in result.records] == [
        ("emodb-11a02Na", "M", "../flat/11a02Na.wav")]


def test_wrong_root(tmp_path):
    _tone(tmp_path / "other" / "wav" / "speech.wav")
    with pytest.raises(DataError, match="03a01Fa"):
        emodb.prepare(tmp_path / "other", _opts(tmp_path))


def test_committed_label_map_matches():
    [lm] = emodb.label_maps()
    assert LabelMap.load(REPO / "data_manifests" / "emodb" / "label_map.json").to_dict() == lm.to_dict()


def test_cli_prepare(tmp_path, capsys):
    from emotk.cli.main import main
    root = tmp_path / "emodb"
    _tree(root)
    with pytest.raises(SystemExit) as exc:
        main(["--json", "data", "prepare", "emodb", str(root), "-o", str(tmp_path / "cli")])
    assert exc.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["utterances"] == 7 and summary["counts"]["emotion"]["angry"] == 1
    with pytest.raises(SystemExit) as exc:
        main(["data", "prepare", "emodb", str(root), "-o", str(tmp_path / "cli2"), "--strict"])
    assert exc.value.code == 1  # the corrupt file is fatal with --strict

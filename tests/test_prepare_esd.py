"""ESD importer on a fake copy of the release: split sub-folders, flat folders, mixed transcript encodings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotk.data.labels import LabelMap
from emotk.data.prepare import esd, get_importer
from emotk.data.prepare.base import PrepareOptions, write_result
from emotk.errors import DataError, UsageError

REPO = Path(__file__).resolve().parents[1]


def _tone(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    sf.write(str(path), (0.1 * rng.standard_normal(3200)).astype(np.float32), 16000)


def _tree(root: Path) -> Path:
    base = root / "Emotion Speech Dataset"
    s11 = base / "0011"
    for rel in ("Neutral/evaluation/0011_000001.wav", "Neutral/test/0011_000021.wav", "Neutral/train/0011_000051.wav",
                "Angry/train/0011_000400.wav",  # index 50 belongs to test: folder disagrees with the rule
                "Happy/0011_000360.wav",  # number of the angry block filed under Happy
                "Surprise/0011_001750.wav",
                "Neutral/0012_000001.wav"):  # another speaker's file
        _tone(s11 / rel)
    (s11 / "0011.txt").write_text(
        "0011_000001\tAuthor of the danger trail, Philip Steels, etc.\tNeutral\n"
        "0011_000021 What a lovely day.  Neutral\n"  # spaces instead of tabs
        "0011_000051\tThe sky is blue.\tNeutral\n"
        "0011_000360\tI am so happy.\tHappy\n"
        "0011_000400\tGo away!\tAngry\n"
        "garbage line\n", encoding="utf-8")
    s15 = base / "0015"
    _tone(s15 / "Sad" / "evaluation" / "0015_001061.wav")
    (s15 / "Sad" / "test").mkdir(parents=True)
    (s15 / "Sad" / "test" / "0015_001080.wav").write_bytes(b"RIFF\x00\x00broken")  # corrupt
    (s15 / "0015.txt").write_text("0015_001061\tA sad sentence.\tSad\n0015_001080\tAnother.\tSad\n",
                                  encoding="utf-16")
    s16 = base / "0016"
    _tone(s16 / "Neutral" / "0016_000002.wav")
    (s16 / "0016.txt").write_bytes("0016_000002\tIt’s fine, café.\tNeutral\n".encode("cp1252"))
    s01 = base / "0001"
    _tone(s01 / "Neutral" / "train" / "0001_000100.wav")
    (s01 / "0001.txt").write_bytes("0001_000100\t打远一看，它们的确很是美丽。\t中立\n".encode("gb2312"))
    (base / "ReadMe.txt").write_text("ESD")
    return base


def _opts(tmp_path: Path, **extra) -> PrepareOptions:
    return PrepareOptions(out_dir=tmp_path / "out", workers=2, extra=extra)


def test_contract_and_rules():
    assert get_importer("esd") is esd
    assert esd.DATASET == "esd" and esd.DESCRIPTION and "0011.txt" in esd.LAYOUT and set(esd.OPTIONS) == {"language"}
    assert [esd.split_of(i) for i in (1, 20, 21, 50, 51, 350)] == ["valid", "valid", "test", "test", "train", "train"]
    with pytest.raises(ValueError):
        esd.split_of(351)
    assert esd.language_of("0010") == "zh" and esd.language_of("0011") == "en"
    assert [esd.GENDERS[f"{i:04d}"] for i in range(11, 21)] == list("MMMMFFFFFM")


def test_prepare_english(tmp_path):
    root = tmp_path / "ESD"
    _tree(root)
    opts = _opts(tmp_path)
    result = esd.prepare(root, opts)
    summary = write_result(result, opts)
    recs = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    by_id = {r["id"]: r for r in recs}
    assert list(by_id) == ["esd-0011_000001", "esd-0011_000021", "esd-0011_000051", "esd-0011_000360",
                           "esd-0011_000400", "esd-0011_001750", "esd-0015_001061", "esd-0016_000002"]
    first = by_id["esd-0011_000001"]
    assert first == {**first, "dataset": "esd", "speaker": "esd-0011", "gender": "M", "language": "en",
                     "emotion": "neutral", "emotion_raw": "Neutral", "esd_index": 1, "split": "valid",
                     "text": "Author of the danger trail, Philip Steels, etc.", "sr": 16000}
    assert first["path"] == "../ESD/Emotion Speech Dataset/0011/Neutral/evaluation/0011_000001.wav"
    assert by_id["esd-0011_000021"]["text"] == "What a lovely day." and by_id["esd-0011_000021"]["split"] == "test"
    assert (by_id["esd-0011_000051"]["esd_index"], by_id["esd-0011_000051"]["split"]) == (51, "train")
    assert by_id["esd-0011_000360"]["emotion"] == "happy" and by_id["esd-0011_000360"]["esd_index"] == 10
    assert (by_id["esd-0011_000400"]["emotion"], by_id["esd-0011_000400"]["split"]) == ("angry", "test")
    assert (by_id["esd-0011_001750"]["esd_index"], by_id["esd-0011_001750"]["emotion"]) == (350, "surprise")
    assert "text" not in by_id["esd-0011_001750"]
    sad = by_id["esd-0015_001061"]
    assert (sad["gender"], sad["text"], sad["esd_index"], sad["split"]) == ("F", "A sad sentence.", 11, "valid")
    assert by_id["esd-0016_000002"]["text"] == "It’s fine, café."

    warnings = "\n".join(result.warnings)
    assert "esd-0015_001080" in warnings  # corrupt, skipped
    assert "0011.txt: 1 lines could not be parsed (first: line 6)" in warnings
    assert "another speaker's folder" in warnings
    assert "outside their emotion's 350-utterance block" in warnings and "0011_000360" in warnings
    assert "split folder that disagrees" in warnings and "0011_000400" in warnings
    assert "no transcript line" in warnings
    assert "found 9 utterances, the official release has 17500" in warnings
    assert summary["counts"]["split"] == {"test": 2, "train": 2, "valid": 4}
    assert LabelMap.load(tmp_path / "out" / "label_map.json").classes == ["angry", "happy", "neutral", "sad",
                                                                          "surprise"]


def test_language_options(tmp_path):
    root = tmp_path / "ESD"
    _tree(root)
    zh = esd.prepare(root, _opts(tmp_path, language="zh"))
    assert [(r["id"], r["language"], r["gender"], r["text"], r["split"]) for r in zh.records] == [
        ("esd-0001_000100", "zh", "F", "打远一看，它们的确很是美丽。", "train")]
    everything = esd.prepare(root, _opts(tmp_path, language="all"))
    assert len(everything.records) == 9 and everything.expected == {"utterances": 35000, "speakers": 20}
    with pytest.raises(UsageError, match="language"):
        esd.prepare(root, _opts(tmp_path, language="fr"))


def test_wrong_root(tmp_path):
    (tmp_path / "nothing" / "wav").mkdir(parents=True)
    with pytest.raises(DataError, match="speaker folders"):
        esd.prepare(tmp_path / "nothing", _opts(tmp_path))


def test_committed_label_map_matches():
    [lm] = esd.label_maps()
    assert LabelMap.load(REPO / "data_manifests" / "esd" / "label_map.json").to_dict() == lm.to_dict()


def test_cli_prepare(tmp_path, capsys):
    from emotk.cli.main import main
    root = tmp_path / "ESD"
    _tree(root)
    with pytest.raises(SystemExit) as exc:
        main(["--json", "data", "prepare", "esd", str(root), "-o", str(tmp_path / "cli"), "--option", "language=zh"])
    assert exc.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["utterances"] == 1 and summary["counts"]["split"] == {"train": 1}

"""IEMOCAP importer on a fake IEMOCAP_full_release tree with the real file formats."""

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

EVAL_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def _wav(path: Path, seconds: float = 0.2, sr: int = 16000, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sr))
    sf.write(str(path), noise.astype(np.float32), sr, subtype="PCM_16")


def _block(start: float, end: float, utt: str, emo: str, vad: tuple[float, float, float]) -> str:
    v, a, d = vad
    return (
        f"[{start:.4f} - {end:.4f}]\t{utt}\t{emo}\t[{v:.4f}, {a:.4f}, {d:.4f}]\n"
        "C-E2:\tNeutral;\t()\nC-E3:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n"
    )


DIALOGS = {
    # session, dialog -> [(start, end, utt, emo, vad, text)]  (deliberately not in time order)
    (1, "Ses01F_impro01"): [
        (10.01, 11.39, "Ses01F_impro01_F001", "xxx", (2.5, 2.5, 2.5), "Yeah."),
        (6.29, 8.23, "Ses01F_impro01_F000", "neu", (2.5, 2.5, 2.5), "Excuse me."),
        (8.50, 9.90, "Ses01F_impro01_M000", "exc", (4.0, 3.5, 3.0), "Do you have your forms\u2014 ok?"),
    ],
    (2, "Ses02M_script01_1"): [
        (1.00, 2.00, "Ses02M_script01_1_M000", "fru", (2.0, 3.5, 3.5), "What is it?"),
        (2.50, 4.00, "Ses02M_script01_1_F000", "ang", (1.5, 4.5, 4.0), "Nothing."),
        (4.20, 5.00, "Ses02M_script01_1_F001", "sur", (3.0, 4.0, 2.5), "Oh!"),
    ],
}


def make_tree(base: Path, corrupt: str | None = None, missing: str | None = None) -> Path:
    root = base / "IEMOCAP_full_release"
    for (session, dialog), rows in DIALOGS.items():
        sdir = root / f"Session{session}"
        ev = sdir / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        ev.parent.mkdir(parents=True, exist_ok=True)
        ev.write_text(EVAL_HEADER + "".join(_block(s, e, u, emo, vad) for s, e, u, emo, vad, _ in rows))
        (sdir / "dialog" / "EmoEvaluation" / "Categorical").mkdir(exist_ok=True)  # real sub-folders are ignored
        tr = sdir / "dialog" / "transcriptions" / f"{dialog}.txt"
        tr.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{u} [{s:08.4f}-{e:08.4f}]: {text}" for s, e, u, _, _, text in rows]
        tr.write_text("\n".join(lines + ["M: [BREATHING]"]) + "\n", encoding="utf-8")
        for i, (_, _, u, *_rest) in enumerate(rows):
            wav = sdir / "sentences" / "wav" / dialog / f"{u}.wav"
            if u == missing:
                continue
            if u == corrupt:
                wav.parent.mkdir(parents=True, exist_ok=True)
                wav.write_bytes(b"RIFF\x00\x00garbage-not-audio")
            else:
                _wav(wav, seed=i)
    # macOS resource-fork clutter of some copies must be ignored
    (root / "Session1" / "dialog" / "EmoEvaluation" / "._Ses01F_impro01.txt").write_bytes(b"\x00\x05\x16\x07")
    return root


def run(root: Path, out: Path, **kw):
    mod = get_importer("iemocap")
    opts = PrepareOptions(out_dir=out, workers=2, **kw)
    result = mod.prepare(root, opts)
    summary = write_result(result, opts)
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return result, summary, records


def test_records_fields_and_order(tmp_path):
    root = make_tree(tmp_path / "data")
    result, summary, records = run(root, tmp_path / "out")
    ids = [r["id"] for r in records]
    assert ids == sorted(ids) and len(ids) == 6
    by = {r["id"]: r for r in records}
    m = by["iemocap-Ses01F_impro01_M000"]
    assert m["speaker"] == "iemocap-Ses01M" and m["gender"] == "M" and m["session"] == "Ses01"
    assert m["emotion"] == "excited" and m["emotion_raw"] == "exc"
    assert (m["valence"], m["arousal"], m["dominance"]) == (4.0, 3.5, 3.0)
    assert m["dialogue"] == "iemocap-Ses01F_impro01" and m["recording"] == "improvised"
    assert m["text"] == "Do you have your forms\u2014 ok?"
    assert m["sr"] == 16000 and m["duration"] == pytest.approx(0.2, abs=1e-3)
    assert (tmp_path / "out" / m["path"]).resolve() == \
        (root / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M000.wav").resolve()
    # turn = rank of the start time inside the dialogue, not file order
    assert [by[f"iemocap-Ses01F_impro01_{u}"]["turn"] for u in ("F000", "M000", "F001")] == [0, 1, 2]
    xxx = by["iemocap-Ses01F_impro01_F001"]
    assert "emotion" not in xxx and xxx["emotion_raw"] == "xxx" and xxx["speaker"] == "iemocap-Ses01F"
    s2 = by["iemocap-Ses02M_script01_1_F000"]
    assert s2["speaker"] == "iemocap-Ses02F" and s2["emotion"] == "angry" and s2["recording"] == "scripted"
    assert by["iemocap-Ses02M_script01_1_M000"]["emotion"] == "frustrated"
    assert summary["counts"]["emotion"] == {"angry": 1, "excited": 1, "frustrated": 1, "neutral": 1, "surprise": 1}
    # partial copy: counts differ from the official release -> warnings, not failures
    assert any("found 6 utterances, the official release has 10039" in w for w in result.warnings)
    assert any("found 2 sessions" in w for w in result.warnings)
    assert summary["expected"]["utterances"] == 10039


def test_label_maps_written_and_committed(tmp_path):
    root = make_tree(tmp_path / "data")
    result, summary, records = run(root, tmp_path / "out")
    assert summary["label_maps"] == {"iemocap-4": "label_map.iemocap-4.json", "iemocap-6": "label_map.iemocap-6.json"}
    for name in ("iemocap-4", "iemocap-6"):
        written = json.loads((tmp_path / "out" / f"label_map.{name}.json").read_text())
        committed = json.loads((REPO / "data_manifests" / "iemocap" / f"label_map.{name}.json").read_text())
        assert written == committed
    four = LabelMap.load(tmp_path / "out" / "label_map.iemocap-4.json")
    six = LabelMap.load(tmp_path / "out" / "label_map.iemocap-6.json")
    # the maps apply to the manifest's canonical `emotion` field as well as to raw codes
    got4 = {r["id"]: four.convert(r.get("emotion")) for r in records}
    assert got4["iemocap-Ses01F_impro01_M000"] == "happy"  # exc merged into happy
    assert got4["iemocap-Ses02M_script01_1_M000"] is None  # fru dropped in 4-class
    assert six.convert("excited") == "excited" and six.convert("frustrated") == "frustrated"
    assert six.convert("surprise") is None and four.convert("exc") == "happy"
    assert all(four.knows(r["emotion"]) and six.knows(r["emotion"]) for r in records if "emotion" in r)
    assert any("iemocap-4 utterances" in w for w in result.warnings)


def test_corrupt_and_missing_audio_skipped_with_warning(tmp_path):
    root = make_tree(tmp_path / "data", corrupt="Ses01F_impro01_F000", missing="Ses02M_script01_1_F001")
    result, summary, records = run(root, tmp_path / "out")
    ids = {r["id"] for r in records}
    assert "iemocap-Ses01F_impro01_F000" not in ids and "iemocap-Ses02M_script01_1_F001" not in ids
    assert len(ids) == 4
    assert any("skipped iemocap-Ses01F_impro01_F000" in w and "cannot decode" in w for w in result.warnings)
    assert any("skipped iemocap-Ses02M_script01_1_F001" in w and "not found" in w for w in result.warnings)
    # turns keep the original order numbers even though an utterance is gone
    assert {r["id"]: r["turn"] for r in records}["iemocap-Ses01F_impro01_M000"] == 1


def test_parent_folder_and_root_name(tmp_path):
    make_tree(tmp_path / "data")
    _, _, records = run(tmp_path / "data", tmp_path / "out", root_name="IEMOCAP")
    assert records[0]["path"].startswith("${IEMOCAP}/Session1/sentences/wav/Ses01F_impro01/")


def test_wrong_root_and_bad_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not an IEMOCAP folder"):
        get_importer("iemocap").prepare(tmp_path / "empty", PrepareOptions(out_dir=tmp_path / "o"))
    root = make_tree(tmp_path / "data")
    ev = root / "Session2" / "dialog" / "EmoEvaluation" / "Ses02M_script01_1.txt"
    ev.write_text(EVAL_HEADER + "[1.0 - 2.0]\tSes02M_script01_1_M000\tneu\t[2.5, oops, 2.5]\n")
    with pytest.raises(DataError, match=r"Ses02M_script01_1\.txt:3: bad \[V, A, D\]"):
        get_importer("iemocap").prepare(root, PrepareOptions(out_dir=tmp_path / "o"))


def test_cli_entry_point(tmp_path):
    from emotk.cli import main as cli
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "prepare", "--help"])
    assert e.value.code == 0
    root = make_tree(tmp_path / "data")
    with pytest.raises(SystemExit) as e:
        cli.main(["-q", "data", "prepare", "iemocap", str(root), "-o", str(tmp_path / "out")])
    assert e.value.code == 0
    assert len((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()) == 6
    with pytest.raises(SystemExit) as e:
        cli.main(["-q", "data", "prepare", "iemocap", str(tmp_path), "-o", str(tmp_path / "out2")])
    assert e.value.code == 1

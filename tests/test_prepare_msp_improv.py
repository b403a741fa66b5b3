"""MSP-IMPROV importer on a fake release (Evalution.txt consensus blocks + Audio/session<N>/... wavs)."""

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
# clip name, category, A, V, D, N
LABELS = [
    ("S01A-F01-S-FM01", "A", 4.0, 1.8, 3.6, 2.8),
    ("S01A-M01-R-MF01", "N", 3.0, 3.5, 3.0, 3.2),
    ("S02H-F03-P-FM05", "H", 3.4, 4.6, 3.2, 4.0),
    ("S15S-M06-T-MF12", "S", 2.0, 1.6, 2.2, 3.6),
    ("S04N-F02-T-FM03", "O", 2.6, 3.0, 3.0, 3.0),
]


def make_release(base: Path, corrupt: str | None = None, audio_folder: bool = True) -> Path:
    root = base / "MSP-IMPROV"
    audio = root / "Audio" if audio_folder else root
    blocks = []
    for i, (clip, cat, a, v, d, n) in enumerate(LABELS):
        blocks.append(
            f"UTD-IMPROV-{clip}.avi; {cat}; A:{a:.6f}; V:{v:.6f}; D:{d:.6f}; N:{n:.6f};\n"
            f"S0{i}-p01; Angry; Frustrated; A:4.0; V:2.0; D:3.0; N:3.0;\n"
            f"S0{i}-p02; Neutral; ; A:3.0; V:3.0; D:3.0; N:3.0;\n"
        )
        scen, spk, typ, _ = clip.split("-")
        wav = audio / f"session{int(spk[1:])}" / scen / typ / f"MSP-IMPROV-{clip}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        if clip == corrupt:
            wav.write_bytes(b"")
        else:
            sf.write(str(wav), (0.1 * np.random.default_rng(i).standard_normal(3200)).astype(np.float32), 16000)
    (root / "Evalution.txt").write_text("\n".join(blocks))
    return root


def run(root: Path, out: Path, **extra):
    opts = PrepareOptions(out_dir=out, workers=2, extra=extra)
    result = get_importer("msp-improv").prepare(root, opts)
    summary = write_result(result, opts)
    return result, summary, [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]


def test_records(tmp_path):
    make_release(tmp_path / "data")
    result, summary, records = run(tmp_path / "data", tmp_path / "out")
    by = {r["id"]: r for r in records}
    assert list(by) == sorted(by) and len(by) == 5
    r = by["msp-improv-MSP-IMPROV-S01A-F01-S-FM01"]
    assert (r["speaker"], r["gender"], r["session"], r["emotion"], r["emotion_raw"]) == \
        ("msp-improv-F01", "F", "session1", "angry", "A")
    assert (r["arousal"], r["valence"], r["dominance"], r["naturalness"]) == (4.0, 1.8, 3.6, 2.8)
    assert (r["scenario"], r["recording"]) == ("S01A", "S")
    assert r["path"] == "../data/MSP-IMPROV/Audio/session1/S01A/S/MSP-IMPROV-S01A-F01-S-FM01.wav"
    m6 = by["msp-improv-MSP-IMPROV-S15S-M06-T-MF12"]
    assert (m6["session"], m6["speaker"], m6["gender"], m6["emotion"]) == ("session6", "msp-improv-M06", "M", "sad")
    assert by["msp-improv-MSP-IMPROV-S04N-F02-T-FM03"]["emotion"] == "other"
    lm = LabelMap.load(tmp_path / "out" / "label_map.json")
    assert lm.classes == ["angry", "happy", "neutral", "sad"]
    assert sorted(str(lm.convert(r["emotion"])) for r in records) == ["None", "angry", "happy", "neutral", "sad"]
    assert json.loads((tmp_path / "out" / "label_map.json").read_text()) == \
        json.loads((REPO / "data_manifests" / "msp-improv" / "label_map.json").read_text())
    assert any("found 5 utterances, the official release has 8438" in w for w in result.warnings)
    assert any("found 5 speakers, the official release has 12" in w for w in result.warnings)


def test_sessions_at_root_and_corrupt_audio(tmp_path):
    root = make_release(tmp_path / "data", corrupt="S02H-F03-P-FM05", audio_folder=False)
    result, _, records = run(root, tmp_path / "out")
    assert len(records) == 4 and \
        records[0]["path"] == "../data/MSP-IMPROV/session1/S01A/S/MSP-IMPROV-S01A-F01-S-FM01.wav"
    assert any("skipped msp-improv-MSP-IMPROV-S02H-F03-P-FM05" in w and "empty file" in w for w in result.warnings)


def test_wrong_root_and_bad_label_line(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="not an MSP-IMPROV folder"):
        get_importer("msp-improv").prepare(tmp_path / "x", PrepareOptions(out_dir=tmp_path / "o"))
    root = make_release(tmp_path / "data")
    text = (root / "Evalution.txt").read_text().replace("V:1.800000", "V:high")
    (root / "Evalution.txt").write_text(text)
    with pytest.raises(DataError, match=r"Evalution\.txt:1: cannot parse value 'V:high'"):
        get_importer("msp-improv").prepare(root, PrepareOptions(out_dir=tmp_path / "o"))
    (root / "Evalution.txt").unlink()
    with pytest.raises(DataError, match="Evalution.txt .* not found"):
        get_importer("msp-improv").prepare(root, PrepareOptions(out_dir=tmp_path / "o"))


def test_cli_entry_point(tmp_path):
    from emotk.cli import main as cli
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "prepare", "--help"])
    assert e.value.code == 0
    root = make_release(tmp_path / "data")
    with pytest.raises(SystemExit) as e:
        cli.main(["-q", "data", "prepare", "msp-improv", str(root), "-o", str(tmp_path / "out")])
    assert e.value.code == 0
    assert len((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()) == 5
    with pytest.raises(SystemExit) as e:
        cli.main(["-q", "data", "prepare", "msp-improv", str(root), "-o", str(tmp_path / "out3"),
                  "--option", "lables=x"])
    assert e.value.code == 2

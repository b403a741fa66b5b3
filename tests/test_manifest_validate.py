import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import write_wav

from emotk.data.labels import LabelMap
from emotk.data.manifest import Manifest, merge, resolve_audio_path
from emotk.data.validate import validate_manifest
from emotk.errors import DataError


def make_corpus(tmp_path, n=3):
    recs = []
    for i in range(n):
        write_wav(tmp_path / "wavs" / f"u{i}.wav", seconds=0.5)
        recs.append({"id": f"toy-u{i}", "path": f"wavs/u{i}.wav", "dataset": "toy",
                     "emotion": ["angry", "sad", "happy"][i % 3],
                     "speaker": f"toy-s{i % 2}", "sr": 16000, "duration": 0.5, "custom": {"kept": True}})
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path, recs


def test_load_save_roundtrip_keeps_unknown_fields(tmp_path):
    path, recs = make_corpus(tmp_path)
    m = Manifest.load(path)
    assert m.ids == [r["id"] for r in recs]
    assert m[0]["custom"] == {"kept": True}
    assert m.resolve_path(m[0]) == tmp_path / "wavs" / "u0.wav"
    sha = m.save(tmp_path / "copy.jsonl")
    assert sha == Manifest.load(tmp_path / "copy.jsonl").sha256
    assert (tmp_path / "copy.jsonl").read_text() == path.read_text()


def test_a_manifest_opened_by_a_relative_path_resolves_to_absolute_paths(tmp_path, monkeypatch):
    make_corpus(tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)
    m = Manifest.load(Path("corpus") / "manifest.jsonl")
    assert m.resolve_path(m[0]) == tmp_path / "corpus" / "wavs" / "u0.wav"
    moved = m.with_absolute_paths()
    moved.save(tmp_path / "elsewhere" / "copy.jsonl")  # saved into another folder, the paths still point at the audio
    copy = Manifest.load(tmp_path / "elsewhere" / "copy.jsonl")
    assert all(Path(r["path"]).is_absolute() and copy.resolve_path(r).is_file() for r in copy)
    monkeypatch.setenv("EMOTK_ROOT_TOY", "corpus")  # a relative root counts from the current folder too
    assert resolve_audio_path("${TOY}/wavs/u1.wav", tmp_path) == tmp_path / "corpus" / "wavs" / "u1.wav"


def test_filter_merge_and_roots(tmp_path, monkeypatch):
    path, _ = make_corpus(tmp_path)
    m = Manifest.load(path)
    sad = m.filter(emotion="sad")
    assert sad.ids == ["toy-u1"]
    assert m.filter(emotion={"sad", "angry"}).ids == ["toy-u0", "toy-u1"]
    with pytest.raises(DataError, match="duplicate id 'toy-u0'"):
        merge([m, m])
    merged = merge([m.filter(emotion="sad"), m.filter(emotion="happy")])
    assert len(merged) == 2 and merged[0]["path"].startswith(str(tmp_path))
    with pytest.raises(DataError, match=r"--root CORPUS=DIR"):
        resolve_audio_path("${CORPUS}/a.wav", tmp_path)
    assert resolve_audio_path("${CORPUS}/a.wav", tmp_path, {"CORPUS": "/data"}).as_posix() == "/data/a.wav"
    monkeypatch.setenv("EMOTK_ROOT_CORPUS", "/env")
    assert resolve_audio_path("${CORPUS}/a.wav", tmp_path).as_posix() == "/env/a.wav"


def test_strict_load_names_file_and_line(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"id": "a", "path": "x.wav", "dataset": "d"}\n{"id": "b", "path": "y.wav"}\n')
    with pytest.raises(DataError, match=r"m\.jsonl:2: missing required field 'dataset'"):
        Manifest.load(p)
    p.write_text('{"id": "a", "path": "x.wav", "dataset": "d"}\n{not json}\n')
    with pytest.raises(DataError, match=r"m\.jsonl:2: invalid JSON"):
        Manifest.load(p)
    p.write_text('{"id": "a", "path": "x.wav", "dataset": "d"}\n{"id": "a", "path": "y.wav", "dataset": "d"}\n')
    with pytest.raises(DataError, match=r"m\.jsonl:2: duplicate id 'a' \(first on line 1\)"):
        Manifest.load(p)


def test_validate_clean_manifest(tmp_path):
    path, _ = make_corpus(tmp_path)
    rep = validate_manifest(path, label_map=LabelMap("toy", ["angry", "happy", "sad"]))
    assert rep.ok and rep.utterances == 3 and not rep.issues
    assert rep.seconds == pytest.approx(1.5)
    assert rep.labels == {"angry": 1, "sad": 1, "happy": 1}


BAD_CASES = {
    "bad_json": ('{"id": "toy-x", "path": ', "invalid JSON"),
    "missing_field": ({"id": "toy-x", "path": "wavs/u0.wav"}, "missing required field 'dataset'"),
    "wrong_type": ({"id": "toy-x", "path": "wavs/u0.wav", "dataset": "toy", "duration": "long"},
                   "must be int or float"),
    "duplicate": ({"id": "toy-u0", "path": "wavs/u0.wav", "dataset": "toy"}, "duplicate id 'toy-u0'"),
    "missing_file": ({"id": "toy-x", "path": "wavs/nope.wav", "dataset": "toy"}, "audio file not found"),
    "empty_file": ({"id": "toy-x", "path": "empty.wav", "dataset": "toy"}, "empty file"),
    "corrupt": ({"id": "toy-x", "path": "corrupt.wav", "dataset": "toy"}, "cannot decode"),
    "nan": ({"id": "toy-x", "path": "nan.wav", "dataset": "toy"}, "NaN"),
    "too_short": ({"id": "toy-x", "path": "short.wav", "dataset": "toy"}, "too short"),
    "unknown_label": ({"id": "toy-x", "path": "wavs/u0.wav", "dataset": "toy", "emotion": "bored"}, "not in label map"),
    "segment_past_end": ({"id": "toy-x", "path": "wavs/u0.wav", "dataset": "toy", "start": 0.1, "end": 9.0},
                         "past the end"),
    "bad_segment": ({"id": "toy-x", "path": "wavs/u0.wav", "dataset": "toy", "start": 0.4, "end": 0.2},
                    "not after start"),
    "unset_root": ({"id": "toy-x", "path": "${NOPE}/a.wav", "dataset": "toy"}, "root ${NOPE}"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_validate_catches_each_bad_input(tmp_path, cli, case):
    path, _ = make_corpus(tmp_path)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 4)
    x = np.zeros(8000, dtype=np.float32)
    x[10] = np.nan
    sf.write(str(tmp_path / "nan.wav"), x, 16000, subtype="FLOAT")
    write_wav(tmp_path / "short.wav", seconds=0.01)
    LabelMap("toy", ["angry", "happy", "sad"]).save(tmp_path / "label_map.json")
    line, message = BAD_CASES[case]
    with open(path, "a") as f:
        f.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    res = cli("data", "validate", path)
    assert res.code == 1, res
    lines = [line for line in res.out.splitlines() if ": error: " in line]
    assert len(lines) == 1, res.out
    assert message in lines[0] and lines[0].startswith(f"{path}:4: error:")
    assert "Traceback" not in res.err + res.out
    js = cli("--json", "data", "validate", path)
    report = json.loads(js.out)
    assert js.code == 1 and report["ok"] is False and report["errors"] == 1


def test_validate_warnings_exit_zero(tmp_path, cli):
    path, _ = make_corpus(tmp_path)
    write_wav(tmp_path / "stereo44.wav", seconds=0.5, sr=44100, channels=2)
    with open(path, "a") as f:
        f.write(json.dumps({"id": "toy-st", "path": "stereo44.wav", "dataset": "toy", "sr": 16000}) + "\n")
    res = cli("data", "validate", path, "--json")
    report = json.loads(res.out)
    assert res.code == 0 and report["ok"] and report["warnings"] == 3
    kinds = " ".join(i["message"] for i in report["issues"])
    assert "2 channels" in kinds and "44100 Hz" in kinds and "field sr=16000" in kinds

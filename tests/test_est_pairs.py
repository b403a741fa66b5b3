"""EST pair builders (emotk.eval.pairs): thesis counts on ESD/CREMA-D/TIMIT-shaped manifests, pair rules,
partial corpora, byte-identical files, pair-file errors, committed pair files and their generator script."""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotk.data.manifest import Manifest
from emotk.data.prepare import esd as esd_importer
from emotk.data.prepare.base import PrepareOptions
from emotk.errors import DataError, UsageError
from emotk.eval import pairs as P

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "data_manifests"
SHARED = Path(__file__).resolve().parents[2] / "shared"
RAVDESS = SHARED / "data" / "ravdess" / "manifest.jsonl"
ESD_EMOTIONS = ("neutral", "angry", "happy", "sad", "surprise")  # order of ESD's 350-utterance blocks


def _script():
    spec = importlib.util.spec_from_file_location("make_est_pairs", MANIFESTS / "make_est_pairs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- synthetic corpora (records only, no audio) ----------------------------------------------------------------
def _esd_records(drop=()):
    """ESD-shaped: 10 English speakers x 5 emotions x 350, parallel texts by block position; ``drop`` = ids."""
    recs = []
    for spk in range(11, 21):
        for block, emotion in enumerate(ESD_EMOTIONS):
            for index in range(1, 351):
                rid = f"esd-{spk:04d}_{block * 350 + index:06d}"
                if rid in drop:
                    continue
                text = f"Sentence number {index}."
                if spk == 12:  # transcripts that differ only in case/punctuation still match
                    text = f"sentence NUMBER {index}"
                recs.append({"id": rid, "path": f"{rid}.wav", "dataset": "esd", "speaker": f"esd-{spk:04d}",
                             "emotion": emotion, "text": text, "esd_index": index,
                             "split": "valid" if index <= 20 else "test" if index <= 50 else "train"})
    return recs


def _crema_records(fear=None):
    """CREMA-D-shaped: 91 actors x 12 sentences x 6 emotions (XX) + LO/MD/HI takes of one sentence."""
    codes = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
    recs = []
    for actor in range(1001, 1092):
        for s in range(12):
            for code, emotion in codes.items():
                levels = ["XX"] + (["LO", "MD", "HI"] if s == 0 and code != "NEU" else [])
                for level in levels:
                    rid = f"crema-d-{actor}_S{s:02d}_{code}_{level}"
                    recs.append({"id": rid, "path": f"{rid}.wav", "dataset": "crema-d",
                                 "speaker": f"crema-d-{actor}", "emotion": emotion, "text": f"crema sentence {s}"})
    if fear is not None:
        fears = [r for r in recs if r["emotion"] == "fear"][:fear]
        recs = [r for r in recs if r["emotion"] != "fear"] + fears
    return recs


def _timit_records():
    """TIMIT-shaped: 168 test + 30 train speakers x (SA1, SA2, 3 SI, 5 SX), all neutral."""
    recs = []
    for split, n in (("test", 168), ("train", 30)):
        for k in range(n):
            spk = f"{'MF'[k % 2]}{split[:2].upper()}{k:03d}"
            for utt in ["SA1", "SA2"] + [f"SI{k * 3 + i}" for i in range(3)] + [f"SX{k * 5 + i}" for i in range(5)]:
                rid = f"timit-{spk}_{utt}"
                recs.append({"id": rid, "path": f"{rid}.wav", "dataset": "timit", "speaker": f"timit-{spk}",
                             "emotion": "neutral", "sentence": utt, "sentence_type": utt[:2], "split": split,
                             "text": f"timit {utt}"})
    return recs


@pytest.fixture(scope="module")
def esd():
    return Manifest.from_records(_esd_records())


@pytest.fixture(scope="module")
def crema():
    return Manifest.from_records(_crema_records())


@pytest.fixture(scope="module")
def timit():
    return Manifest.from_records(_timit_records())


# ---- thesis counts ------------------------------------------------------------------------------------------------
def test_constants():
    assert P.SETTINGS == ("SSST", "SSDT", "DSST", "DSDT", "UTE", "USS", "USUE", "A2A")
    assert P.PARALLEL == P.SETTINGS[:4]
    assert [P.THESIS_COUNTS[s] for s in P.SETTINGS] == [1200, 1160, 10800, 10440, 1000, 800, 2000, None]


def test_any_to_any_pairs_every_ordered_emotion_pair(esd):
    ps = P.build_pairs("A2A", esd, options=P.PairOptions(a2a_emotions=("neutral", "angry", "happy", "sad"),
                                                           a2a_texts_per_speaker=3))
    assert len(ps.pairs) == 10 * 3 * 4 * 3  # speakers x texts x source emotions x other emotions
    assert ps.report["complete"] and ps.report["thesis_count"] is None and "no thesis count" in P.summary(ps)
    cells = {(p["source_emotion"], p["reference_emotion"]) for p in ps.pairs}
    assert cells == {(a, b) for a in ("neutral", "angry", "happy", "sad") for b in ("neutral", "angry", "happy", "sad")
                     if a != b}
    for p in ps.pairs:
        assert p["source_speaker"] == p["reference_speaker"] and p["source_text"] == p["reference_text"]
        assert p["source"] != p["reference"]
    everything = P.build_pairs("A2A", esd, options=P.PairOptions(a2a_texts_per_speaker=1))
    assert len(everything.pairs) == 10 * 1 * 5 * 4  # default: every emotion of the corpus (5 in ESD)
    missing = P.build_pairs("A2A", esd, options=P.PairOptions(a2a_emotions=("neutral", "calm"),
                                                              a2a_texts_per_speaker=1))
    assert not missing.pairs and not missing.report["complete"] and "calm" in missing.report["why"]
    with pytest.raises(UsageError, match="one parallel corpus"):
        P.build_pairs("A2A", esd, references=Manifest.from_records(list(esd)))


def test_parallel_settings_reproduce_thesis_counts(esd):
    for setting in P.PARALLEL:
        ps = P.build_pairs(setting, esd)
        assert len(ps.pairs) == P.THESIS_COUNTS[setting], setting
        r = ps.report
        assert r["complete"] is True and r["why"] is None and r["pairs"] == r["thesis_count"]
        assert r["reference_emotions"] == ["angry", "happy", "sad", "surprise"]
        assert r["split"] == {"sources": "test", "references": "test"} and r["texts_per_speaker"] == 30
        assert [p["id"] for p in ps.pairs] == [f"{setting}-{i:06d}" for i in range(1, len(ps.pairs) + 1)]


def test_unseen_settings_reproduce_thesis_counts(esd, crema, timit):
    ute = P.build_pairs("UTE", esd, crema)
    uss = P.build_pairs("USS", timit, esd)
    usue = P.build_pairs("usue", timit, crema)  # setting names are case-insensitive
    for ps in (ute, uss, usue):
        assert len(ps.pairs) == P.THESIS_COUNTS[ps.setting] and ps.report["complete"], ps.report

    by_id = {r["id"]: r for r in [*esd, *crema, *timit]}
    ute_src = sorted({p["source"] for p in ute.pairs})
    assert len(ute_src) == 10 and len({by_id[i]["speaker"] for i in ute_src}) == 10  # one per ESD speaker
    assert all(by_id[i]["emotion"] == "neutral" and by_id[i]["split"] == "test" for i in ute_src)
    ute_refs = {p["reference"] for p in ute.pairs}
    assert sorted(by_id[i]["emotion"] for i in ute_refs) == ["disgust"] * 50 + ["fear"] * 50
    assert ute.report["reference_emotions"] == ["fear", "disgust"]

    uss_refs = {p["reference"] for p in uss.pairs}
    assert sorted(by_id[i]["emotion"] for i in uss_refs) == sorted(["angry", "happy", "sad", "surprise"] * 2)
    assert all(by_id[i]["split"] == "test" for i in uss_refs)
    usue_refs = {p["reference"] for p in usue.pairs}
    assert sorted(by_id[i]["emotion"] for i in usue_refs) == ["disgust"] * 10 + ["fear"] * 10

    for ps in (uss, usue):
        src = {p["source"] for p in ps.pairs}
        assert len(src) == 100 and len({by_id[i]["speaker"] for i in src}) == 100
        assert all(by_id[i]["split"] == "test" and by_id[i]["sentence_type"] in ("SI", "SX") for i in src)
    # the same seeded draw gives USS and USUE the same TIMIT sources
    assert {p["source"] for p in uss.pairs} == {p["source"] for p in usue.pairs}
    # full cross product, no duplicate pair
    assert len({(p["source"], p["reference"]) for p in usue.pairs}) == 2000


def test_unseen_draw_is_seeded(esd, crema):
    a = P.build_pairs("UTE", esd, crema)
    b = P.build_pairs("UTE", Manifest.from_records(list(reversed(esd.records))), crema)
    c = P.build_pairs("UTE", esd, crema, P.PairOptions(seed=1))
    assert a.pairs == b.pairs  # input order does not matter
    assert {p["reference"] for p in c.pairs} != {p["reference"] for p in a.pairs}
    assert len(c.pairs) == 1000


# ---- pair rules ---------------------------------------------------------------------------------------------------
def test_pair_rules_hold(esd):
    by_id = esd.by_id()
    for setting in P.PARALLEL:
        pairs = P.build_pairs(setting, esd).pairs
        assert len({(p["source"], p["reference"]) for p in pairs}) == len(pairs)
        for p in pairs:
            src, ref = by_id[p["source"]], by_id[p["reference"]]
            assert src["emotion"] == "neutral" and ref["emotion"] != "neutral"
            assert src["split"] == ref["split"] == "test"
            assert set(p) == set(P.PAIR_KEYS)
            assert (p["source_speaker"], p["reference_speaker"]) == (src["speaker"], ref["speaker"])
            assert (p["source_text"], p["reference_text"]) == (src["text"], ref["text"])
            same_speaker = src["speaker"] == ref["speaker"]
            same_text = src["esd_index"] == ref["esd_index"]
            assert same_speaker == (setting in ("SSST", "SSDT")), (setting, p)
            assert same_text == (setting in ("SSST", "DSST")), (setting, p)
        if setting in ("SSDT", "DSDT"):  # one source per speaker: its first test text (block position 21)
            sources = {p["source"] for p in pairs}
            assert sorted(by_id[s]["esd_index"] for s in sources) == [21] * 10


def _brute_force(records, setting, per_speaker_dt=1):
    """The METHODS.md pair rules written out directly (texts by esd_index, first takes), as a set of id pairs."""
    neutral = {}
    refs = {}
    for r in sorted(records, key=lambda r: r["id"]):
        if r.get("split") != "test":
            continue
        key = (r["speaker"], r["esd_index"])
        if r["emotion"] == "neutral":
            neutral.setdefault(r["speaker"], {}).setdefault(r["esd_index"], r["id"])
        else:
            refs.setdefault((*key, r["emotion"]), r["id"])
    emotions = sorted({e for (_, _, e) in refs})
    speakers = sorted({s for (s, _, _) in refs})
    out = set()
    for s, texts in neutral.items():
        order = sorted(texts)
        sources = order if setting in ("SSST", "DSST") else order[:per_speaker_dt]
        for t in sources:
            targets = []
            if setting == "SSST":
                targets = [(s, t)]
            elif setting == "SSDT":
                targets = [(s, u) for u in order if u != t]
            elif setting == "DSST":
                targets = [(r, t) for r in speakers if r != s]
            else:
                targets = [(r, u) for r in speakers if r != s for u in sorted(neutral.get(r, {})) if u != t]
            for (r, u) in targets:
                for e in emotions:
                    if (r, u, e) in refs:
                        out.add((texts[t], refs[(r, u, e)]))
    return out


def test_partial_corpus_is_reported_not_padded():
    # speaker 0013 keeps 12 of its 30 neutral test texts (block positions 21-32); one angry reference is gone
    drop = {f"esd-0013_{i:06d}" for i in range(33, 51)} | {"esd-0015_000375"}  # 0015 angry, position 25
    recs = _esd_records(drop=drop)
    manifest = Manifest.from_records(recs)
    opts = P.PairOptions(text_field="esd_index")
    ssst = P.build_pairs("SSST", manifest, options=opts)
    assert len(ssst.pairs) == 1200 - 18 * 4 - 1
    r = ssst.report
    assert r["complete"] is False and r["missing_references"] == 1
    assert "esd-0013 has 12 of 30 neutral test texts" in r["why"]
    assert "1 references missing (first: speaker esd-0015, emotion angry, esd_index 25)" in r["why"]
    assert "10 speakers, 12-30 neutral test texts per speaker" in r["why"] and r["texts_per_speaker"] == 12
    assert P.summary(ssst).startswith("SSST: 1127 pairs (thesis 1200, speaker esd-0013 has 12 of 30")
    dsst = P.build_pairs("DSST", manifest, options=opts)
    # 282 sources x 9 speakers x 4 emotions, minus the 9 other speakers' text-25 sources that needed 0015 angry
    assert len(dsst.pairs) == 282 * 9 * 4 - 9 and dsst.report["missing_references"] == 9
    for setting in P.PARALLEL:
        ps = P.build_pairs(setting, manifest, options=opts)
        assert 0 < len(ps.pairs) < P.THESIS_COUNTS[setting] and not ps.report["complete"]
        assert {(p["source"], p["reference"]) for p in ps.pairs} == _brute_force(recs, setting), setting

    fewer = P.build_pairs("UTE", Manifest.from_records(_esd_records()), _crema_records(fear=20))
    assert len(fewer.pairs) == 10 * (20 + 50) and not fewer.report["complete"]
    assert "20 of 50 'fear'" in fewer.report["why"]
    assert fewer.report["missing_references"] == 30


def test_several_takes_pick_normal_intensity_then_lowest_id():
    recs = []
    for spk in ("a", "b"):
        for rep in (1, 2):
            recs.append({"id": f"x-{spk}-neu-r{rep}", "speaker": spk, "emotion": "neutral", "text": "Hello there",
                         "intensity": "normal"})
            # the strong take has the lower id, the preference must still pick the normal one
            recs.append({"id": f"x-{spk}-ang-0-r{rep}", "speaker": spk, "emotion": "angry", "text": "hello, there!",
                         "intensity": "strong"})
            recs.append({"id": f"x-{spk}-ang-1-r{rep}", "speaker": spk, "emotion": "angry", "text": "Hello there",
                         "intensity": "normal"})
    recs = [{"path": "x.wav", "dataset": "x", **r} for r in recs]
    ps = P.build_pairs("SSST", recs)
    assert [(p["source"], p["reference"]) for p in ps.pairs] == [("x-a-neu-r1", "x-a-ang-1-r1"),
                                                                   ("x-b-neu-r1", "x-b-ang-1-r1")]
    assert ps.report["duplicate_takes"] == 2 * (1 + 3)  # per speaker: 2 neutral takes, 4 angry takes
    plain = P.build_pairs("SSST", recs, options=P.PairOptions(take_preference=None))
    assert [p["reference"] for p in plain.pairs] == ["x-a-ang-0-r1", "x-b-ang-0-r1"]
    strict = P.build_pairs("SSST", recs, options=P.PairOptions(normalize_text=False))
    assert [p["reference"] for p in strict.pairs] == ["x-a-ang-1-r1", "x-b-ang-1-r1"]


def test_speaker_allow_list_and_other_text_fields(esd):
    opts = P.PairOptions(speakers=("esd-0011", "esd-0012", "esd-9999"), sources_per_speaker=5)
    ps = P.build_pairs("DSDT", esd, options=opts)
    # 1 source x 1 other speaker x 4 other texts x 4 emotions per speaker
    assert len(ps.pairs) == 2 * 1 * 4 * 4
    assert {p["reference_speaker"] for p in ps.pairs} == {"esd-0011", "esd-0012"}
    assert "esd-9999 not in the manifest" in ps.report["why"]
    by_index = P.build_pairs("SSST", esd, options=P.PairOptions(text_field="esd_index"))
    assert [(p["source"], p["reference"]) for p in by_index.pairs] == \
        [(p["source"], p["reference"]) for p in P.build_pairs("SSST", esd).pairs]
    assert by_index.pairs[0]["source_text"] == 21


def test_bad_options_and_arguments(esd):
    with pytest.raises(UsageError, match="unknown EST setting 'XYZ'"):
        P.build_pairs("XYZ", esd)
    with pytest.raises(UsageError, match="UTE needs a references manifest"):
        P.build_pairs("UTE", esd)
    with pytest.raises(UsageError, match="sources_per_speaker"):
        P.PairOptions(sources_per_speaker=0)
    with pytest.raises(UsageError, match="speakers"):
        P.PairOptions(speakers="esd-0011")
    with pytest.raises(DataError, match="key 'id'"):
        P.build_pairs("SSST", [{"speaker": "a", "emotion": "neutral"}])


# ---- pair files ---------------------------------------------------------------------------------------------------
def test_pair_files_are_byte_identical_and_round_trip(tmp_path, esd):
    a = P.write_pairs(P.build_pairs("DSDT", esd), tmp_path / "a.jsonl")
    b = P.write_pairs(P.build_pairs("DSDT", esd), tmp_path / "b.jsonl")
    data = (tmp_path / "a.jsonl").read_bytes()
    assert data == (tmp_path / "b.jsonl").read_bytes()
    assert a["sha256"] == b["sha256"] and a["count"] == 10440 and a["path"] == str(tmp_path / "a.jsonl")
    # another record order changes the manifest hash in the header, never a pair line
    shuffled = list(esd.records)
    random.Random(3).shuffle(shuffled)
    P.write_pairs(P.build_pairs("DSDT", Manifest.from_records(shuffled)), tmp_path / "c.jsonl")
    assert (tmp_path / "c.jsonl").read_bytes().split(b"\n")[1:] == data.split(b"\n")[1:]
    assert b"\r" not in data and data.endswith(b"}\n")
    header, pairs = P.read_pairs(tmp_path / "a.jsonl")
    assert header["format"] == "emotk.est_pairs" and header["version"] == 1 and header["count"] == 10440
    assert header["setting"] == "DSDT" and header["report"]["complete"] is True
    assert header["options"]["text_field"] == "text" and header["source_manifest_sha256"] == esd.sha256
    assert pairs == P.build_pairs("DSDT", esd).pairs
    assert P.PairOptions(**header["options"]) == P.PairOptions()  # the header rebuilds the options
    second = data.split(b"\n")[1]
    assert second == json.dumps(pairs[0], sort_keys=True, separators=(",", ":")).encode()


def _write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("case, line, needle", [
    ("bad_json", 3, "invalid JSON"),
    ("missing_key", 2, "key 'reference_text' is missing"),
    ("unknown_setting", 1, "key 'setting': unknown setting 'XXST'"),
    ("duplicate", 3, "key 'id': duplicate pair id 'SSST-000001' (first on line 2)"),
    ("count", 1, "key 'count': the header says 2 pairs, the file holds 1"),
    ("format", 1, "key 'format'"),
    ("other_setting", 2, "key 'setting': 'DSST' differs"),
])
def test_read_pairs_errors(tmp_path, esd, case, line, needle):
    good = tmp_path / "good.jsonl"
    P.write_pairs(P.PairSet("SSST", P.build_pairs("SSST", esd).pairs[:2], {"pairs": 2}), good)
    lines = good.read_text(encoding="utf-8").splitlines()
    header, p1, p2 = json.loads(lines[0]), json.loads(lines[1]), json.loads(lines[2])
    if case == "bad_json":
        lines[2] = lines[2][:-1]
    elif case == "missing_key":
        del p1["reference_text"]
        lines[1] = json.dumps(p1)
    elif case == "unknown_setting":
        header["setting"] = "XXST"
        lines[0] = json.dumps(header)
    elif case == "duplicate":
        p2["id"] = p1["id"]
        lines[2] = json.dumps(p2)
    elif case == "count":
        lines = lines[:2]
    elif case == "format":
        header["format"] = "something"
        lines[0] = json.dumps(header)
    elif case == "other_setting":
        p1["setting"] = "DSST"
        lines[1] = json.dumps(p1)
    bad = _write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(DataError) as err:
        P.read_pairs(bad)
    message = str(err.value)
    assert message.startswith(f"{bad}:{line}: ") and needle in message and "\n" not in message
    with pytest.raises(DataError, match="pairs file not found"):
        P.read_pairs(tmp_path / "none.jsonl")


def test_pairs_to_transfer_jsonl_feeds_emotk_transfer(tmp_path):
    from emotk.models.zest.infer import read_pairs as transfer_read_pairs

    recs = [{"id": f"d-{s}-{e}", "path": f"wavs/{s}-{e}.wav", "dataset": "d", "speaker": s, "emotion": e,
             "sentence": "s01"} for s in ("p", "q") for e in ("neutral", "sad")]
    manifest = Manifest.from_records(recs, path=tmp_path / "corpus" / "manifest.jsonl")
    ps = P.build_pairs("DSST", manifest, options=P.PairOptions(text_field="sentence"))
    assert [(p["source"], p["reference"]) for p in ps.pairs] == [("d-p-neutral", "d-q-sad"),
                                                                  ("d-q-neutral", "d-p-sad")]
    out = P.pairs_to_transfer_jsonl(ps.pairs, [manifest], tmp_path / "jobs" / "pairs.jsonl")
    assert out["count"] == 2
    rows = transfer_read_pairs(tmp_path / "jobs" / "pairs.jsonl")
    assert [r["id"] for r in rows] == ["DSST-000001", "DSST-000002"]
    assert rows[0]["src"] == str(tmp_path / "corpus" / "wavs" / "p-neutral.wav")
    assert rows[0]["ref"] == str(tmp_path / "corpus" / "wavs" / "q-sad.wav")
    with pytest.raises(DataError, match="pair DSST-000001: key 'source': id 'd-p-neutral' is in none"):
        P.pairs_to_transfer_jsonl(ps.pairs, Manifest.from_records(recs[1:]), tmp_path / "x.jsonl")


# ---- committed files and their generator ---------------------------------------------------------------------------
def _ravdess_like(path):
    """A small RAVDESS-shaped manifest: held-out actors 21-24, 2 statements, 2 repetitions, 2 intensities."""
    recs = []
    for actor in range(21, 25):
        for e, emotion in enumerate(["neutral", "calm", "angry"], 1):
            for intensity in (1, 2) if e > 1 else (1,):
                for statement in (1, 2):
                    for rep in (1, 2):
                        name = f"03-01-{e:02d}-{intensity:02d}-{statement:02d}-{rep:02d}-{actor:02d}"
                        recs.append({"id": f"ravdess-{name}", "path": f"Actor_{actor:02d}/{name}.flac",
                                     "dataset": "ravdess", "speaker": f"ravdess-{actor:02d}", "emotion": emotion,
                                     "intensity": ["normal", "strong"][intensity - 1], "statement": statement,
                                     "text": ["Kids are talking by the door", "Dogs are sitting by the door"][
                                         statement - 1]})
    Manifest.from_records(recs).save(path)
    return path


def test_script_check_mode(tmp_path, capsys):
    mod = _script()
    assert mod.main(["--check"]) == 0  # the committed tree (RAVDESS skipped when ../shared is absent)
    out = tmp_path / "tree"
    fake = _ravdess_like(tmp_path / "ravdess.jsonl")
    assert mod.main(["--out", str(out), "--ravdess", str(fake), "--corpus", "ravdess"]) == 0
    assert sorted(p.name for p in (out / "ravdess" / "est").iterdir()) == \
        ["A2A.jsonl", "DSDT.jsonl", "DSST.jsonl", "SSDT.jsonl", "SSST.jsonl", "index.json"]
    assert not (out / "esd").exists()
    index = json.loads((out / "ravdess" / "est" / "index.json").read_text(encoding="utf-8"))
    # 4 actors x 2 statements x 2 emotions; 1 source x 1 other statement; x 3 other actors; A2A: neutral <-> angry
    assert {k: v["count"] for k, v in index["files"].items()} == \
        {"SSST.jsonl": 16, "SSDT.jsonl": 8, "DSST.jsonl": 48, "DSDT.jsonl": 24, "A2A.jsonl": 16}
    assert mod.main(["--check", "--out", str(out), "--ravdess", str(fake), "--corpus", "ravdess"]) == 0
    target = out / "ravdess" / "est" / "SSDT.jsonl"
    target.write_bytes(target.read_bytes().replace(b'"SSDT-000001"', b'"SSDT-000000"'))
    assert mod.main(["--check", "--out", str(out), "--ravdess", str(fake), "--corpus", "ravdess"]) == 1
    assert f"differs: {target}" in capsys.readouterr().err
    # a corpus whose input is absent is skipped without error
    assert mod.main(["--check", "--out", str(out), "--ravdess", str(tmp_path / "none.jsonl"),
                     "--corpus", "ravdess"]) == 0
    assert "skipped ravdess: input not found" in capsys.readouterr().err
    esd_index = json.loads((MANIFESTS / "esd" / "est" / "index.json").read_text(encoding="utf-8"))
    assert {k: v["count"] for k, v in esd_index["files"].items()} == \
        {**{f"{s}.jsonl": P.THESIS_COUNTS[s] for s in P.PARALLEL}, "A2A.jsonl": 10 * 30 * 4 * 3}
    assert all(v["report"]["complete"] for v in esd_index["files"].values())


@pytest.mark.skipif(not RAVDESS.is_file(), reason="../shared/data/ravdess not available")
def test_committed_ravdess_files_match_a_rebuild():
    mod = _script()
    bad, skipped = mod.check(MANIFESTS, RAVDESS, ("ravdess",))
    assert bad == [] and skipped == []
    held_out = {f"ravdess-{i}" for i in range(21, 25)}
    counts = {}
    for setting in P.PARALLEL:
        header, pairs = P.read_pairs(MANIFESTS / "ravdess" / "est" / f"{setting}.jsonl")
        counts[setting] = len(pairs)
        assert {p["source_speaker"] for p in pairs} == held_out
        assert {p["reference_emotion"] for p in pairs} == {"calm", "happy", "sad", "angry", "fearful", "disgust",
                                                           "surprised"}
        assert header["source_manifest_sha256"] == Manifest.load(RAVDESS).sha256
    # 4 actors x 2 statements x 7 emotions; 1 source x 1 other statement; x 3 other actors
    assert counts == {"SSST": 56, "SSDT": 28, "DSST": 168, "DSDT": 84}


def test_esd_importer_ids_match_the_committed_esd_files(tmp_path):
    """The ESD importer on a fake copy (every test-split file, a few others) yields the committed pairs."""
    buf = tmp_path / "tone.wav"
    sf.write(str(buf), (0.01 * np.sin(np.arange(800) / 5.0)).astype(np.float32), 16000)
    data = buf.read_bytes()
    root = tmp_path / "ESD" / "Emotion Speech Dataset"
    folders = {e: f for f, e in esd_importer.EMOTION_FOLDERS.items()}
    for spk in range(11, 21):
        for block, emotion in enumerate(ESD_EMOTIONS):
            for index in [5, 60, *range(21, 51)]:  # valid, train, and the whole test block
                sub = {5: "evaluation", 60: "train"}.get(index, "test")
                path = root / f"{spk:04d}" / folders[emotion] / sub / f"{spk:04d}_{block * 350 + index:06d}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
    result = esd_importer.prepare(tmp_path / "ESD", PrepareOptions(out_dir=tmp_path / "out", workers=2))
    manifest = Manifest.from_records(result.records)
    assert len(manifest) == 10 * 5 * 32
    layout = _script().esd_layout_manifest()
    test_ids = sorted(r["id"] for r in manifest if r["split"] == "test")
    assert test_ids == sorted(r["id"] for r in layout if r["split"] == "test")
    for setting in P.PARALLEL:
        _, committed = P.read_pairs(MANIFESTS / "esd" / "est" / f"{setting}.jsonl")
        rebuilt = P.build_pairs(setting, manifest, options=P.PairOptions(text_field="esd_index"))
        assert rebuilt.pairs == committed, setting
    shutil.rmtree(tmp_path / "ESD")


def test_audio_index_accepts_repeats_of_the_same_audio_and_refuses_conflicts(tmp_path):
    from emotk.data.manifest import Manifest

    a = Manifest.from_records([{"id": "x-1", "path": str(tmp_path / "a.wav"), "dataset": "x"}])
    same = Manifest.from_records([{"id": "x-1", "path": str(tmp_path / "a.wav"), "dataset": "x"},
                                  {"id": "x-2", "path": str(tmp_path / "b.wav"), "dataset": "x"}])
    index = P.audio_index([a, same])
    assert sorted(index) == ["x-1", "x-2"] and index["x-1"][0] is a  # the first manifest listing an id wins
    other = Manifest.from_records([{"id": "x-1", "path": str(tmp_path / "elsewhere.wav"), "dataset": "x"}])
    with pytest.raises(DataError, match="id 'x-1' has two different audio paths"):
        P.audio_index([a, other])

"""Protocol files, the fold rule (BASELINES.md), applying protocols to manifests, committed protocol files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from emotk.data import protocols as P
from emotk.data.manifest import Manifest
from emotk.errors import DataError, UsageError

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "data_manifests"
SHARED = Path(__file__).resolve().parents[2] / "shared"

# BASELINES.md: the test actors of each RAVDESS fold.
BASELINE_TEST = [["05", "11", "12", "19", "22"], ["03", "04", "07", "23", "24"], ["01", "09", "13", "17", "21"],
                 ["06", "08", "14", "18", "20"], ["02", "10", "15", "16"]]
# "first 3 actors of the next fold's test group", in the shuffled (array_split) order of that group.
BASELINE_VALID = [["03", "07", "23"], ["01", "09", "21"], ["08", "14", "20"], ["02", "10", "15"], ["05", "19", "22"]]


def _rav(ids):
    return [f"ravdess-{a}" for a in ids]


def _generator():
    spec = importlib.util.spec_from_file_location("make_protocols", MANIFESTS / "make_protocols.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _manifest(records):
    return Manifest.from_records([{"path": f"{r['id']}.wav", "dataset": "toy", **r} for r in records])


def _toy(n_speakers=6, per_speaker=3):
    recs = []
    for s in range(n_speakers):
        for u in range(per_speaker):
            recs.append({"id": f"toy-s{s}-u{u}", "speaker": f"toy-s{s}", "emotion": ["angry", "sad", "happy"][u % 3],
                         "dialogue": f"d{s}-{u // 2}"})
    return _manifest(recs)


# ---- the fold rule ---------------------------------------------------------------------------------
def test_fold_rule_reproduces_baselines_exactly():
    folds = P.split_units(_rav(f"{i:02d}" for i in range(1, 25)), n_folds=5, seed=0, n_valid=3)
    assert [f.name for f in folds] == [f"fold{k}" for k in range(5)]
    for k, f in enumerate(folds):
        assert f.test == _rav(BASELINE_TEST[k])
        assert f.valid == _rav(BASELINE_VALID[k])
        assert set(f.valid) <= set(_rav(BASELINE_TEST[(k + 1) % 5]))
        assert len(f.train) == 24 - len(f.test) - 3
    # the same rule written out independently with numpy
    actors = sorted(_rav(f"{i:02d}" for i in range(1, 25)))
    groups = np.array_split(np.random.default_rng(0).permutation(actors), 5)
    for k, f in enumerate(folds):
        assert f.test == sorted(groups[k].tolist())
        assert f.valid == sorted(groups[(k + 1) % 5][:3].tolist())
    # default n_valid for 24 actors in 5 folds is the BASELINES 3; input order does not matter
    assert P.split_units(reversed(actors)) == folds


def test_fold_rule_explicit_sizes_and_errors():
    values = [f"v{i:02d}" for i in range(23)]
    folds = P.split_units(values, n_folds=5, seed=0, n_valid=3, n_test=4)
    for f in folds:
        assert (len(f.train), len(f.valid), len(f.test)) == (16, 3, 4)
        assert set(f.train) | set(f.valid) | set(f.test) == set(values)
    tests = [set(f.test) for f in folds]
    assert all(not (a & b) for i, a in enumerate(tests) for b in tests[i + 1:])  # 5*4 <= 23: disjoint
    for k in range(4):  # validation = the next window = the start of the next fold's test group
        assert set(folds[k].valid) < set(folds[k + 1].test)
    assert set(folds[4].valid) == set(values) - set().union(*tests)  # the 3 never-tested values
    assert P.split_units(values, 5, 1, 3, 4) != folds  # the seed matters
    with pytest.raises(UsageError):
        P.split_units(values, n_folds=1)
    with pytest.raises(DataError, match="cannot make 5 folds from 3"):
        P.split_units(["a", "b", "c"], n_folds=5)
    with pytest.raises(DataError, match="cannot hold"):
        P.split_units(values[:6], n_folds=2, n_test=3, n_valid=3)


# ---- committed files --------------------------------------------------------------------------------
def test_committed_files_equal_generator_output_and_verify(tmp_path):
    gen = _generator()
    assert gen.check_protocols(MANIFESTS) == []
    first = gen.write_protocols(tmp_path / "a")
    second = gen.write_protocols(tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    committed = sorted(MANIFESTS.glob("*/protocols/*.json"))
    assert [p.relative_to(MANIFESTS) for p in committed] == [p.relative_to(tmp_path / "a") for p in first]
    for path in committed:
        stored = json.loads(path.read_text(encoding="utf-8"))["sha256"]
        proto = P.Protocol.load(path)
        folder = proto.dataset or gen.FOLDERS[proto.name]  # any-dataset protocols: the folder make_protocols names
        assert proto.sha256 == stored and proto.name == path.stem and path.parent.parent.name == folder


def test_committed_protocols_are_complete_and_disjoint():
    protos = {p.name: p for p in P.list_protocols()}
    assert {"ravdess-5fold", "ravdess-song-5fold", "cafe-5fold", "emodb-5fold", "iemocap-session5", "iemocap-loso",
            "msp-improv-12fold", "meld-official", "msp-podcast-challenge", "msp-podcast-challenge-balanced",
            "cmu-mosi-standard", "esd-official", "daic-woz-official"} <= set(protos)
    sizes = {"ravdess-song-5fold": (23, 5, 16, 3, 4), "cafe-5fold": (12, 5, 8, 2, 2), "emodb-5fold": (10, 5, 6, 2, 2),
             "msp-improv-12fold": (12, 12, 10, 1, 1), "iemocap-loso": (5, 5, 4, 0, 1)}
    for name, (n_values, n_folds, n_train, n_valid, n_test) in sizes.items():
        p = protos[name]
        assert len(p.folds) == n_folds
        universe = set().union(*(set(f.train) | set(f.valid) | set(f.test) for f in p.folds))
        assert len(universe) == n_values
        for f in p.folds:
            assert (len(f.train), len(f.valid), len(f.test)) == (n_train, n_valid, n_test)
            assert set(f.train) | set(f.valid) | set(f.test) == universe  # every fold uses every value once
    assert "ravdess-18" not in {v for f in protos["ravdess-song-5fold"].folds for v in f.train + f.valid + f.test}
    emodb_tests = [v for f in protos["emodb-5fold"].folds for v in f.test]
    assert sorted(emodb_tests) == [f"emodb-{s}" for s in "03 08 09 10 11 12 13 14 15 16".split()]
    improv = protos["msp-improv-12fold"]
    assert sorted(v for f in improv.folds for v in f.test) == \
        sorted(f"msp-improv-{g}0{s}" for g in "FM" for s in range(1, 7))
    for f in improv.folds:  # validation is the test speaker's session partner
        assert f.valid[0][-2:] == f.test[0][-2:] and f.valid[0][-3] != f.test[0][-3]
    mosi = protos["cmu-mosi-standard"].folds[0]
    assert (len(mosi.train), len(mosi.valid), len(mosi.test)) == (52, 10, 31)
    s5 = protos["iemocap-session5"]
    assert s5.folds[0].test == ["Ses05"] and s5.folds[0].train == ["Ses01", "Ses02", "Ses03", "Ses04"]
    podcast = protos["msp-podcast-challenge"].folds[0]
    assert (podcast.train, podcast.valid, podcast.test) == (["train"], ["development"], ["test3"])
    assert protos["msp-podcast-challenge-balanced"].valid_rule["per_class"] == 326
    assert protos["meld-official"].folds[0].valid == ["dev"]
    assert [p.name for p in P.list_protocols("iemocap")] == ["iemocap-loso", "iemocap-session5"]


# ---- applying protocols ----------------------------------------------------------------------------
def test_assign_and_apply_on_synthetic_manifest():
    m = _toy(4, 2)
    m.records.append({"id": "toy-nospk", "path": "x.wav", "dataset": "toy"})
    m.records.append({"id": "other-1", "path": "y.wav", "dataset": "other", "speaker": "toy-s0"})
    m.line_numbers = list(range(1, len(m.records) + 1))
    proto = P.Protocol(name="toy-2fold", dataset="toy", unit="speaker", folds=[
        P.Fold("a", train=["toy-s0", "toy-s1"], valid=["toy-s2"], test=["toy-s3"]),
        P.Fold("b", train=["toy-s2"], valid=[], test=["toy-s0", "toy-s9"]),
    ])
    assert proto.fold_names == ["a", "b"]
    a = proto.assign(m, "a")
    assert a == {"train": ["toy-s0-u0", "toy-s0-u1", "toy-s1-u0", "toy-s1-u1"], "valid": ["toy-s2-u0", "toy-s2-u1"],
                 "test": ["toy-s3-u0", "toy-s3-u1"]}
    detail = proto.assign_detailed(m, 1)
    assert detail["splits"]["valid"] == [] and detail["excluded"] == len(m) - 4
    assert detail["missing_values"] == ["toy-s9"]
    applied = P.apply_protocol(m, proto, "b")
    assert [r["id"] for r in applied] == ["toy-s0-u0", "toy-s0-u1", "toy-s2-u0", "toy-s2-u1"]
    assert [r["split"] for r in applied] == ["test", "test", "train", "train"]
    assert "split" not in m.records[0]  # the input is not modified
    assert applied.line_numbers == [1, 2, 5, 6]
    with pytest.raises(UsageError, match="choose one"):
        proto.assign(m)
    with pytest.raises(UsageError, match="did you mean 'a'"):
        proto.fold("A")
    with pytest.raises(UsageError):
        proto.fold(5)
    wrong = P.Protocol(name="x", dataset="iemocap", unit="speaker", folds=[P.Fold("f", test=["toy-s0"])])
    with pytest.raises(DataError, match="for dataset 'iemocap'"):
        wrong.assign(m)


def test_make_folds_on_manifest_is_deterministic():
    m = _toy(7, 2)
    p1 = P.make_folds(m, n_folds=3, unit="speaker", seed=4)
    p2 = P.make_folds(Manifest.from_records(list(reversed(m.records))), n_folds=3, unit="speaker", seed=4)
    assert p1 == p2 and p1.sha256 == p2.sha256
    assert p1.name == "toy-speaker-3fold-seed4" and p1.dataset == "toy" and p1.unit == "speaker"
    assert P.make_folds(m, n_folds=3, seed=5).sha256 != p1.sha256
    for f in p1.folds:
        s = p1.assign(m, f.name)
        assert sorted(s["train"] + s["valid"] + s["test"]) == sorted(m.ids)
        spk = {k: {rid.rsplit("-", 1)[0] for rid in v} for k, v in s.items()}
        assert not (spk["train"] & spk["test"]) and not (spk["valid"] & spk["test"])
    assert sorted(v for f in p1.folds for v in f.test) == sorted({r["speaker"] for r in m})
    with pytest.raises(DataError, match="field 'gender'"):
        P.make_folds(m, unit="gender")


def test_holdout_valid_rule_moves_whole_groups():
    m = _toy(6, 4)  # dialogues d<s>-0, d<s>-1: 2 per speaker
    rule = {"kind": "holdout", "fraction": 0.25, "group_by": "dialogue", "seed": 0}
    proto = P.Protocol(name="h", dataset="toy", unit="speaker", valid_rule=rule,
                       folds=[P.Fold("f", train=[f"toy-s{i}" for i in range(5)], test=["toy-s5"])])
    s = proto.assign(m, "f")
    dia = {r["id"]: r["dialogue"] for r in m}
    valid_dialogues = {dia[i] for i in s["valid"]}
    assert len(valid_dialogues) == round(0.25 * 10) and len(s["valid"]) == 2 * len(valid_dialogues)
    assert not valid_dialogues & {dia[i] for i in s["train"]}
    assert len(s["test"]) == 4 and len(s["train"]) + len(s["valid"]) == 20
    shuffled = Manifest.from_records(list(reversed(m.records)))
    assert proto.assign(shuffled, "f") == s
    other = P.Protocol(name="h", dataset="toy", unit="speaker", valid_rule={**rule, "seed": 1}, folds=proto.folds)
    assert other.sha256 != proto.sha256
    v1 = other.assign(m, "f")["valid"]
    assert len(v1) == len(s["valid"]) and v1 == other.assign(shuffled, "f")["valid"]


def test_balanced_subset_counts_and_rule():
    recs = [{"id": f"u{i:02d}", "emotion": e} for i, e in enumerate(["angry"] * 10 + ["sad"] * 5 + ["happy"] * 2)]
    recs.append({"id": "u99"})  # no label
    m = _manifest(recs)
    sub = P.balanced_subset(m, 4, seed=0)
    counts = {c: sum(r["emotion"] == c for r in sub) for c in ("angry", "sad", "happy")}
    assert counts == {"angry": 4, "sad": 4, "happy": 2}
    assert sub.ids == [i for i in m.ids if i in set(sub.ids)]  # manifest order kept
    assert P.balanced_subset(Manifest.from_records(list(reversed(m.records))), 4, seed=0).ids == list(reversed(sub.ids))
    assert set(P.balanced_subset(m, 4, seed=1).ids) != set(sub.ids)
    only = P.balanced_subset(m, 3, classes=["sad"])
    assert len(only) == 3 and {r["emotion"] for r in only} == {"sad"}
    with pytest.raises(UsageError):
        P.balanced_subset(m, 0)
    proto = P.Protocol(name="b", dataset="toy", unit="split", valid_rule={"kind": "balanced", "per_class": 2,
                       "classes": ["angry", "sad"]}, folds=[P.Fold("f", train=["tr"], valid=["dev"])])
    for r in m.records:
        r["split"] = "dev" if r["id"] < "u12" else "tr"
    s = proto.assign(m, "f")
    assert len(s["valid"]) == 4 and len(s["train"]) == len([r for r in m if r["split"] == "tr"])


def test_write_split_manifests(tmp_path):
    m = _toy(5, 2)
    src = tmp_path / "corpus" / "manifest.jsonl"
    m.save(src)
    m = Manifest.load(src)
    proto = P.make_folds(m, n_folds=5, n_valid=1)
    summary = P.write_split_manifests(m, proto, tmp_path / "out")
    assert summary["protocol_sha256"] == proto.sha256 and summary["manifest_sha256"] == m.sha256
    assert sorted(summary["folds"]) == proto.fold_names
    for fold in proto.fold_names:
        assert {k: summary["folds"][fold][k] for k in P.SPLITS} == {"train": 6, "valid": 2, "test": 2}
        for split in P.SPLITS:
            out = Manifest.load(tmp_path / "out" / fold / f"{split}.jsonl")
            assert all(r["split"] == split and Path(r["path"]).is_absolute() for r in out)
            assert out.ids == sorted(proto.assign(m, fold)[split])
            assert Path(out[0]["path"]).parent == src.parent
    one = P.write_split_manifests(m, proto, tmp_path / "one", fold="fold2")
    assert list(one["folds"]) == ["fold2"] and sorted(p.name for p in (tmp_path / "one").iterdir()) == ["fold2"]


# ---- files: save / load / errors -----------------------------------------------------------------------
def test_save_load_roundtrip_and_sha_mismatch(tmp_path):
    proto = P.make_folds(_toy(6, 1), n_folds=3, name="toy-folds")
    path = proto.save(tmp_path / "p.json")
    loaded = P.Protocol.load(path)
    assert loaded == proto and loaded.sha256 == proto.sha256 == json.loads(path.read_text())["sha256"]
    data = json.loads(path.read_text())
    data["folds"][0]["test"], data["folds"][0]["train"][0] = data["folds"][0]["train"][:1], data["folds"][0]["test"][0]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="sha256 mismatch") as err:
        P.Protocol.load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    del data["sha256"]  # a file without a hash is refused (the tamper check cannot run) unless verify=False
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="no 'sha256' key"):
        P.Protocol.load(path)
    assert P.Protocol.load(path, verify=False).folds[0].test == data["folds"][0]["test"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"name": "x", "unit": "speaker"}', "missing required key 'folds'"),
    ('{"name": "x", "unit": "speaker", "fold": []}', "unknown key 'fold' (did you mean 'folds'?)"),
    ('{"name": "x", "unit": "speaker", "folds": []}', "'folds' must be a non-empty list"),
    ('{"name": "x y", "unit": "speaker", "folds": [{"name": "f", "test": ["a"]}]}', "protocol name"),
    ('{"name": "x", "unit": "speaker", "folds": [{"name": "f", "test": [1]}]}', "list of strings"),
    ('{"name": "x", "unit": "speaker", "folds": [{"name": "f", "train": ["a"], "test": ["a"]}]}',
     "'a' is in both train and test"),
    ('{"name": "x", "unit": "speaker", "folds": [{"name": "f", "test": ["a"]}, {"name": "f", "test": ["b"]}]}',
     "duplicate fold name 'f'"),
    ('{"name": "x", "unit": "speaker", "folds": [{"name": "f", "tests": ["a"]}]}', "did you mean 'test'"),
    ('{"name": "x", "unit": "speaker", "valid_rule": {"kind": "holdout", "fraction": 2}, '
     '"folds": [{"name": "f", "test": ["a"]}]}', "fraction must be in (0, 1)"),
    ('{"name": "x", "unit": "speaker", "valid_rule": {"kind": "random"}, "folds": [{"name": "f", "test": ["a"]}]}',
     "valid_rule kind"),
])
def test_bad_protocol_files_are_one_line_data_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError) as err:
        P.Protocol.load(path)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text


def test_find_protocol_by_name_path_and_env(tmp_path, monkeypatch):
    assert P.protocols_dir() == MANIFESTS
    assert P.find_protocol("ravdess-5fold").dataset == "ravdess"
    path = MANIFESTS / "meld" / "protocols" / "meld-official.json"
    assert P.find_protocol(str(path)).name == "meld-official"
    with pytest.raises(DataError, match="did you mean 'ravdess-5fold'.*known: .*meld-official"):
        P.find_protocol("ravdess-5folds")
    with pytest.raises(DataError, match="protocol file not found"):
        P.find_protocol(str(tmp_path / "nope.json"))
    P.make_folds(_toy(4, 1), n_folds=2, name="mine").save(tmp_path / "toy" / "protocols" / "mine.json")
    monkeypatch.setenv("EMOTK_DATA_MANIFESTS", str(tmp_path))
    assert P.protocols_dir() == tmp_path
    assert [p.name for p in P.list_protocols()] == ["mine"]
    assert P.find_protocol("mine").unit == "speaker"
    with pytest.raises(DataError, match="known: mine"):
        P.find_protocol("ravdess-5fold")


# ---- real data (optional) --------------------------------------------------------------------------------
@pytest.mark.shared_data
def test_ravdess_real_manifest_matches_committed_protocol():
    path = SHARED / "data" / "ravdess" / "manifest.jsonl"
    if not path.is_file():
        pytest.skip("../shared/data/ravdess not available")
    m = Manifest.load(path)
    committed = P.find_protocol("ravdess-5fold")
    built = P.make_folds(m, n_folds=5, unit="speaker", seed=0, n_valid=3)
    assert [f.to_dict() for f in built.folds] == [f.to_dict() for f in committed.folds]
    for k, fold in enumerate(committed.fold_names):
        s = committed.assign(m, fold)
        assert len(s["test"]) == 60 * len(BASELINE_TEST[k]) and len(s["valid"]) == 180
        assert len(s["train"]) + len(s["valid"]) + len(s["test"]) == 1440


# ---- no test split, named validation units, --valid 0, word-disjoint hold-out ---------------------------------------
def test_named_validation_speakers_and_no_test(tmp_path):
    m = _toy(6, 3)
    proto = P.make_folds(m, valid_values=["toy-s4", "toy-s1"])
    assert proto.fold_names == ["fold0"] and proto.name == "toy-speaker-split" and proto.valid_rule is None
    f = proto.folds[0]
    assert (f.train, f.valid, f.test) == (["toy-s0", "toy-s2", "toy-s3", "toy-s5"], ["toy-s1", "toy-s4"], [])
    path = proto.save(tmp_path / "p.json")
    back = P.Protocol.load(path)  # the stored sha256 is right: loads without edits
    assert back == proto and json.loads(path.read_text())["sha256"] == proto.sha256
    s = back.assign(m)
    assert (len(s["train"]), len(s["valid"]), s["test"]) == (12, 6, [])
    # named test + seeded validation from the rest; the same arguments give the same protocol
    two = P.make_folds(m, test_values=["toy-s0"], n_valid=2, seed=3)
    t = two.folds[0]
    assert t.test == ["toy-s0"] and len(t.valid) == 2 and "toy-s0" not in t.valid and len(t.train) == 3
    assert two.name == "toy-speaker-split-seed3" and P.make_folds(m, test_values=["toy-s0"], n_valid=2, seed=3) == two
    both = P.make_folds(m, valid_values=["toy-s1"], test_values=["toy-s2"]).folds[0]
    assert (both.valid, both.test, len(both.train)) == (["toy-s1"], ["toy-s2"], 4)


def test_named_speaker_errors_teach():
    m = _toy(4, 2)
    with pytest.raises(DataError, match=r"--valid-speakers: no speaker 'toy-s7' .*did you mean 'toy-s\d'"):
        P.make_folds(m, valid_values=["toy-s7"])
    with pytest.raises(DataError, match=r"no speaker 'toy-s02' .*did you mean 'toy-s2'\?"):
        P.make_folds(m, test_values=["toy-s02"])  # numbers match without their leading zeros
    with pytest.raises(DataError, match="no speaker is left for training"):
        P.make_folds(m, valid_values=["toy-s0", "toy-s1"], test_values=["toy-s2", "toy-s3"])
    with pytest.raises(DataError, match="do not fit; use --valid 2"):
        P.make_folds(m, test_values=["toy-s0"], n_valid=3)
    with pytest.raises(UsageError, match="both validation and test"):
        P.make_folds(m, valid_values=["toy-s0"], test_values=["toy-s0"])
    with pytest.raises(UsageError, match="drop --folds"):
        P.make_folds(m, n_folds=3, valid_values=["toy-s0"])
    with pytest.raises(UsageError, match="--valid-speakers names 1 speaker"):
        P.make_folds(m, valid_values=["toy-s0"], n_valid=2)


def test_two_speakers_valid_zero_and_the_hints():
    m = _toy(2, 3)
    with pytest.raises(DataError, match="cannot make 5 folds from 2 distinct speaker value.*use --folds 2 --valid 0"):
        P.make_folds(m)
    with pytest.raises(DataError, match=r"only 2 speaker values: use --valid 0"):
        P.make_folds(m, n_folds=2)
    proto = P.make_folds(m, n_folds=2, n_valid=0)
    assert [(f.train, f.valid, f.test) for f in proto.folds] == [(["toy-s1"], [], ["toy-s0"]),
                                                                 (["toy-s0"], [], ["toy-s1"])]
    with pytest.raises(UsageError, match="leaves nothing to evaluate on"):
        P.make_folds(_toy(6, 2), n_test=0, n_valid=0)


def test_folds_without_a_test_split_rotate_validation():
    m = _toy(6, 2)
    proto = P.make_folds(m, n_folds=3, n_test=0)
    valids = [set(f.valid) for f in proto.folds]
    assert all(len(v) == 2 for v in valids) and set().union(*valids) == {f"toy-s{i}" for i in range(6)}
    assert all(f.test == [] and len(f.train) == 4 and not set(f.train) & set(f.valid) for f in proto.folds)
    assert "without a test split" in proto.description
    fixed = P.make_folds(m, n_folds=2, n_test=0, n_valid=1)
    assert [len(f.valid) for f in fixed.folds] == [1, 1] and fixed.folds[0].valid != fixed.folds[1].valid
    with pytest.raises(DataError, match="use --valid 5"):
        P.split_units([f"v{i}" for i in range(6)], n_folds=2, n_test=0, n_valid=6)


def test_word_disjoint_holdout_protocol(tmp_path):
    recs = [{"id": f"toy-s{s}-u{u}", "speaker": f"toy-s{s}", "text": f"sentence {u % 5}"}
            for s in range(3) for u in range(10)]
    m = _manifest(recs)
    proto = P.make_folds(m, n_test=0, holdout=0.2)  # no test, no validation speakers: one fold, all train
    assert proto.valid_rule == {"kind": "holdout", "fraction": 0.2, "group_by": "text", "seed": 0}
    assert proto.folds[0].train == ["toy-s0", "toy-s1", "toy-s2"] and proto.folds[0].valid == []
    back = P.Protocol.load(proto.save(tmp_path / "h.json"))
    s = back.assign(m)
    text = {r["id"]: r["text"] for r in m}
    held = {text[i] for i in s["valid"]}
    assert len(held) == 1 and not held & {text[i] for i in s["train"]} and s["test"] == []
    assert len(s["valid"]) == 6 and len(s["train"]) == 24  # every speaker's utterances of the held-out sentence
    # with speaker folds the hold-out comes from each fold's training speakers; validation speakers default to 0
    folds = P.make_folds(m, n_folds=3, holdout=0.2, holdout_by="text")
    assert all(f.valid == [] and len(f.test) == 1 for f in folds.folds) and "never occur in training" in \
        folds.description
    with pytest.raises(DataError, match=r"--holdout-by txt: no record has the field 'txt' \(did you mean 'text'"):
        P.make_folds(m, holdout=0.2, holdout_by="txt")
    with pytest.raises(UsageError, match="--valid-holdout 1.5"):
        P.make_folds(m, holdout=1.5)

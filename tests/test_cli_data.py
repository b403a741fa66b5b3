import json

from conftest import write_wav

from emotk.data.prepare import IMPORTERS


def _manifest(tmp_path, speakers=6, per=2):
    lines = []
    for s in range(speakers):
        for u in range(per):
            write_wav(tmp_path / "w" / f"s{s}_{u}.wav", seconds=0.3)
            lines.append({"id": f"toy-s{s}_{u}", "path": f"w/s{s}_{u}.wav", "dataset": "toy", "speaker": f"toy-s{s}",
                          "emotion": ["angry", "sad"][u % 2], "duration": 0.3})
    p = tmp_path / "m.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return p


def test_datasets_lists_every_importer_with_layout(cli):
    res = cli("--json", "data", "datasets")
    assert [r["dataset"] for r in json.loads(res.out)] == list(IMPORTERS)
    for name in IMPORTERS:
        info = json.loads(cli("--json", "data", "datasets", name).out)
        assert info["layout"] and info["description"]


def test_split_builds_disjoint_speaker_folds(cli, tmp_path):
    m = _manifest(tmp_path)
    res = cli("--json", "data", "split", m, "--folds", "3", "--by", "speaker", "-o", tmp_path / "p.json")
    assert res.code == 0, res.err
    proto = json.loads((tmp_path / "p.json").read_text())
    for fold in proto["folds"]:
        sets = [set(fold[k]) for k in ("train", "valid", "test")]
        assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
        assert set().union(*sets) == {f"toy-s{i}" for i in range(6)}
    again = cli("--json", "data", "split", m, "--folds", "3", "-o", tmp_path / "p.json")
    assert again.code == 1 and "--overwrite" in again.err
    cli("--json", "data", "split", m, "--folds", "3", "-o", tmp_path / "p2.json")
    assert (tmp_path / "p.json").read_bytes() == (tmp_path / "p2.json").read_bytes()
    res = cli("--json", "data", "split", m, "--folds", "3", "--write-manifests", "-o", tmp_path / "folds")
    assert res.code == 0, res.err
    train = (tmp_path / "folds").rglob("train.jsonl")
    assert len(list(train)) == 3


def test_merge_and_filter(cli, tmp_path):
    m = _manifest(tmp_path)
    res = cli("--json", "data", "filter", m, "--where", "emotion=sad", "--where", "speaker=toy-s0,toy-s1",
              "-o", tmp_path / "f.jsonl")
    out = json.loads(res.out)
    assert res.code == 0 and out["utterances"] == 2 and out["dropped"] == 10
    res = cli("data", "merge", m, m, "-o", tmp_path / "mm.jsonl")
    assert res.code == 1 and "duplicate id" in res.err
    res = cli("--json", "data", "merge", m, tmp_path / "f.jsonl", "-o", tmp_path / "mm.jsonl")
    assert res.code == 1  # f.jsonl repeats ids of m
    res = cli("--json", "data", "validate", tmp_path / "f.jsonl")
    assert res.code == 0 and json.loads(res.out)["utterances"] == 2


def test_split_named_validation_speakers_no_test_loads_back(cli, tmp_path):
    from emotk.data.manifest import Manifest
    from emotk.data.protocols import find_protocol

    m = _manifest(tmp_path)
    res = cli("--json", "data", "split", m, "--valid-speakers", "toy-s2, toy-s4", "-o", tmp_path / "p.json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["folds"] == {"fold0": {"train": 8, "valid": 4, "test": 0}}
    assert out["units"] == {"train": ["toy-s0", "toy-s1", "toy-s3", "toy-s5"], "valid": ["toy-s2", "toy-s4"],
                            "test": []}
    proto = find_protocol(tmp_path / "p.json")  # sha256 checked on load
    assert proto.sha256 == out["sha256"] and proto.assign(Manifest.load(m))["test"] == []
    bad = cli("data", "split", m, "--valid-speakers", "toy-s22", "-o", tmp_path / "q.json")
    assert bad.code == 1 and len(bad.err.strip().splitlines()) == 1 and "did you mean 'toy-s2'" in bad.err
    assert not (tmp_path / "q.json").exists()
    clash = cli("data", "split", m, "--valid-speakers", "toy-s1", "--folds", "3", "-o", tmp_path / "q.json")
    assert clash.code == 2 and "drop --folds" in clash.err
    applied = cli("data", "split", m, "--protocol", tmp_path / "p.json", "--valid", "0", "-o", tmp_path / "q.json")
    assert applied.code == 2 and "--valid only applies when building" in applied.err


def test_split_two_speakers_and_valid_zero(cli, tmp_path):
    m = _manifest(tmp_path, speakers=2)
    res = cli("data", "split", m, "-o", tmp_path / "p.json")
    assert res.code == 1 and "use --folds 2 --valid 0" in res.err
    res = cli("data", "split", m, "--folds", "2", "-o", tmp_path / "p.json")
    assert res.code == 1 and "only 2 speaker values: use --valid 0" in res.err
    res = cli("--json", "data", "split", m, "--folds", "2", "--valid", "0", "-o", tmp_path / "p.json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["folds"] == {"fold0": {"train": 2, "valid": 0, "test": 2},
                                            "fold1": {"train": 2, "valid": 0, "test": 2}}
    res = cli("--json", "data", "split", m, "--test-speakers", "toy-s1", "-o", tmp_path / "t.json")
    assert res.code == 0 and json.loads(res.out)["units"] == {"train": ["toy-s0"], "valid": [], "test": ["toy-s1"]}


def test_split_word_disjoint_holdout_without_test(cli, tmp_path):
    m = _manifest(tmp_path)
    res = cli("--json", "data", "split", m, "--test", "0", "--valid-holdout", "0.5", "--holdout-by", "emotion",
              "--name", "toy-all-train", "-o", tmp_path / "h.json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["name"] == "toy-all-train" and out["valid_rule"]["group_by"] == "emotion"
    assert out["folds"] == {"fold0": {"train": 6, "valid": 6, "test": 0}}  # one emotion held out, all speakers
    stored = json.loads((tmp_path / "h.json").read_text())
    assert stored["valid_rule"] == {"kind": "holdout", "fraction": 0.5, "group_by": "emotion", "seed": 0}
    res = cli("data", "split", m, "--test", "0", "--valid-holdout", "0.5", "-o", tmp_path / "x.json")
    assert res.code == 1 and "--holdout-by text: no record has the field 'text'" in res.err
    res = cli("data", "split", m, "--test", "0", "--valid", "0", "-o", tmp_path / "x.json")
    assert res.code == 2 and "--valid-holdout" in res.err

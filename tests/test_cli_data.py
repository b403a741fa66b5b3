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

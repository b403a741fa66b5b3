"""The conversations-csv importer (one CSV per split -> text-only manifest) and MELD's text_only option."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from emotk.data.conversations import conversation_splits
from emotk.data.labels import LabelMap
from emotk.data.manifest import Manifest
from emotk.data.prepare import get_importer
from emotk.data.prepare.base import PrepareOptions, write_result
from emotk.errors import DataError, UsageError

REPO = Path(__file__).resolve().parents[1]
MELD_CSV = REPO.parent / "shared" / "data" / "meld"

TRAIN = '''Utterance,Who,Feeling,Conv
"Hello, you.",Ann,Joy,c1
Hi!,Bob,neutral,c1
,Ann,joy,c1
"She said ""no""",Ann,,c1
Again?,Bob,Anger,c2
'''
TEST = """Utterance,Who,Feeling,Conv
Bye,Cy,sadness,c1
"""


def _opts(tmp_path, **extra):
    base = {"train": "train.csv", "test": "test.csv", "text": "Utterance", "speaker": "Who", "emotion": "Feeling",
            "dialogue": "Conv", "dataset": "calls"}
    base.update(extra)
    return PrepareOptions(out_dir=tmp_path / "out", extra={k: v for k, v in base.items() if v is not None})


def _root(tmp_path, train=TRAIN, test=TEST):
    root = tmp_path / "csvs"
    root.mkdir(exist_ok=True)
    (root / "train.csv").write_text(train, encoding="utf-8")
    (root / "test.csv").write_text(test, encoding="utf-8")
    return root


def test_small_csv_to_text_only_manifest(tmp_path, cli):
    root = _root(tmp_path)
    result = get_importer("conversations-csv").prepare(root, _opts(tmp_path))
    by = {r["id"]: r for r in result.records}
    assert sorted(by) == ["calls-test-c1-0", "calls-train-c1-0", "calls-train-c1-1", "calls-train-c1-3",
                          "calls-train-c2-0"]  # the empty-text row (turn 2) is skipped, numbering kept
    r = by["calls-train-c1-0"]
    assert r == {"id": "calls-train-c1-0", "dataset": "calls", "split": "train", "dialogue": "calls-train-c1",
                 "turn": 0, "text": "Hello, you.", "speaker": "calls-Ann", "emotion": "joy", "emotion_raw": "Joy"}
    assert "path" not in r and "emotion" not in by["calls-train-c1-3"]  # empty cell: unlabelled turn
    assert by["calls-train-c1-3"]["text"] == 'She said "no"'
    assert by["calls-test-c1-0"]["dialogue"] == "calls-test-c1"  # ids may restart per file
    assert any("skipped 1 row(s) with an empty text" in w for w in result.warnings)
    assert result.label_maps[0].classes == ["anger", "joy", "neutral", "sadness"]
    summary = write_result(result, _opts(tmp_path))
    assert summary["counts"]["split"] == {"test": 1, "train": 4}
    res = cli("data", "validate", summary["manifest"])
    assert res.code == 0 and "5 utterances (all text-only: no audio)" in res.out
    label_map = LabelMap.load(tmp_path / "out" / "label_map.json")
    conv = conversation_splits(Manifest.load(summary["manifest"]), label_map=label_map)["train"]
    assert [c.name for c in conv] == ["calls-train-c1", "calls-train-c2"] and conv[0].labels[2] == -100


def test_turn_column_and_its_errors(tmp_path):
    text = "u,s,e,d,t\nb,A,joy,x,5\na,B,joy,x,2\n"
    root = _root(tmp_path, train=text, test=text)
    opts = _opts(tmp_path, text="u", speaker="s", emotion="e", dialogue="d", turn="t")
    recs = get_importer("conversations-csv").prepare(root, opts).records
    assert {(r["id"], r["turn"]) for r in recs if r["split"] == "train"} == {("calls-train-x-5", 5),
                                                                                ("calls-train-x-2", 2)}
    (root / "train.csv").write_text("u,s,e,d,t\nb,A,joy,x,5\na,B,joy,x,five\n")
    with pytest.raises(DataError, match=r"train\.csv:3: turn must be an integer, got 'five'"):
        get_importer("conversations-csv").prepare(root, opts)
    (root / "train.csv").write_text("u,s,e,d,t\nb,A,joy,x,5\na,B,joy,x,5\n")
    with pytest.raises(DataError, match=r"train\.csv:3: duplicate turn 5 of dialogue 'x' \(first on line 2\)"):
        get_importer("conversations-csv").prepare(root, opts)


def test_missing_column_and_options(tmp_path, cli):
    root = _root(tmp_path)
    with pytest.raises(DataError) as e:
        get_importer("conversations-csv").prepare(root, _opts(tmp_path, text="Utterence"))
    msg = str(e.value)
    assert "train.csv: no column 'Utterence' for option text (did you mean 'Utterance'?)" in msg
    assert "header: Utterance, Who, Feeling, Conv" in msg and "\n" not in msg
    # case-insensitive match
    assert get_importer("conversations-csv").prepare(root, _opts(tmp_path, text="utterance")).records
    # no speakers, no labels
    recs = get_importer("conversations-csv").prepare(root, _opts(tmp_path, speaker="", emotion="")).records
    assert all("speaker" not in r and "emotion" not in r for r in recs)
    with pytest.raises(UsageError, match="at least one CSV file"):
        get_importer("conversations-csv").prepare(root, _opts(tmp_path, train=None, test=None))
    with pytest.raises(DataError, match="nope.csv: CSV file of split 'valid' not found"):
        get_importer("conversations-csv").prepare(root, _opts(tmp_path, valid="nope.csv"))
    res = cli("data", "prepare", "conversations-csv", str(root), "-o", str(tmp_path / "cli"), "--option",
              "train=train.csv", "--option", "text=Utterance", "--option", "speaker=Who", "--option",
              "emotion=Feeling", "--option", "dialogue=Conversation")
    assert res.code == 1 and "no column 'Conversation' for option dialogue (did you mean 'Conv'?)" in res.err
    res = cli("--json", "data", "prepare", "conversations-csv", str(root), "-o", str(tmp_path / "cli"), "--option",
              "train=train.csv", "--option", "text=Utterance", "--option", "speaker=Who", "--option",
              "emotion=Feeling", "--option", "dialogue=Conv")
    assert res.code == 0, res.err
    assert json.loads(res.out)["utterances"] == 4


MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"


def test_meld_text_only_option(tmp_path):
    root = tmp_path / "MELD.Raw"
    root.mkdir()
    (root / "train_sent_emo.csv").write_text(
        MELD_HEADER + '\n1,"Hi, all",Ross,joy,positive,0,0,1,1,"a","b"\n2,Yo,Joey,neutral,neutral,0,1,1,1,"a","b"\n')
    opts = PrepareOptions(out_dir=tmp_path / "o", extra={"text_only": "true"})
    result = get_importer("meld").prepare(root, opts)
    assert [r["id"] for r in result.records] == ["meld-train-dia0_utt0", "meld-train-dia0_utt1"]
    assert all("path" not in r and "media" not in r for r in result.records)
    assert result.records[0]["text"] == "Hi, all" and result.records[0]["dialogue"] == "meld-train-dia0"
    with pytest.raises(UsageError, match="text_only=true and extract_audio=true contradict"):
        get_importer("meld").prepare(root, PrepareOptions(out_dir=tmp_path / "o",
                                                          extra={"text_only": "true", "extract_audio": "true"}))
    with pytest.raises(DataError, match="text_only=true"):  # default extract, no clips: the error names the option
        get_importer("meld").prepare(root, PrepareOptions(out_dir=tmp_path / "o"))


@pytest.mark.shared_data
@pytest.mark.skipif(not (MELD_CSV / "train_sent_emo.csv").is_file(), reason="../shared/data/meld not present")
def test_real_meld_csvs(tmp_path):
    opts = PrepareOptions(out_dir=tmp_path / "out", extra={
        "train": "train_sent_emo.csv", "valid": "dev_sent_emo.csv", "test": "test_sent_emo.csv",
        "text": "Utterance", "speaker": "Speaker", "emotion": "Emotion", "dialogue": "Dialogue_ID",
        "turn": "Utterance_ID", "sentiment": "Sentiment", "dataset": "meld-csv"})
    result = get_importer("conversations-csv").prepare(MELD_CSV, opts)
    recs = result.records
    assert Counter(r["split"] for r in recs) == {"train": 9989, "valid": 1109, "test": 2610}
    assert {s: len({r["dialogue"] for r in recs if r["split"] == s}) for s in ("train", "valid", "test")} == \
        {"train": 1038, "valid": 114, "test": 280}
    assert Counter(r["emotion"] for r in recs)["neutral"] == 6436 and not result.warnings
    # the same texts, dialogues and turns as the MELD importer's text-only manifest
    meld = get_importer("meld").prepare(MELD_CSV, PrepareOptions(out_dir=tmp_path / "m",
                                                                 extra={"text_only": "true"})).records
    ours = {(r["split"].replace("valid", "dev"), r["dialogue"].split("-")[-1], r["turn"]): r["text"] for r in recs}
    theirs = {(r["split"], r["dialogue"].split("dia")[-1], r["turn"]): r["text"] for r in meld}
    assert ours == theirs
    summary = write_result(result, opts)
    splits = conversation_splits(Manifest.load(summary["manifest"]), "manifest-split", need_text=True)
    assert {k: sum(v.lengths) for k, v in splits.items()} == {"train": 9989, "valid": 1109, "test": 2610}

"""Cross-corpus SER: label names across corpora (synonyms, --map), class dropping with counts, probabilities
renormalised over the shared classes, ``ser evaluate --data`` on a relabelled corpus, ``data.classes`` training,
and unknown labels reported once with counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_wav

from emotk.data.labels import LabelMap, canonical_label, match_labels, parse_label_mapping, renormalise
from emotk.errors import DataError, UsageError

CLASSES = ["angry", "happy", "neutral", "sad"]


# ---- label names ---------------------------------------------------------------------------------------------------
def test_synonyms_are_case_insensitive_and_canonical():
    assert canonical_label("Fearful") == canonical_label("fear") == "fear"
    assert canonical_label("happy") == canonical_label("JOY") == canonical_label("happiness") == "happiness"
    assert canonical_label("angry") == canonical_label("anger") and canonical_label("bored") == "boredom"
    assert canonical_label("xyz") == "xyz"


def test_match_by_name_synonym_and_user_mapping_with_counts():
    counts = {"anger": 10, "joy": 7, "neutral": 5, "fearful": 3, "bored": 2}
    match = match_labels(counts, CLASSES)
    assert match.mapping == {"anger": "angry", "joy": "happy", "neutral": "neutral", "fearful": None, "bored": None}
    assert match.how == {"anger": "synonym", "joy": "synonym", "neutral": "exact", "fearful": "none",
                         "bored": "none"}
    assert match.shared == ["angry", "happy", "neutral"] and match.absent == ["sad"]
    assert match.dropped == {"fearful": 3, "bored": 2} and match.dropped_utterances == 5
    assert not match.identity
    assert "dropped 5 utterance(s) with labels 'bored' (2), 'fearful' (3)" in match.summary()
    assert "absent from the data (never predicted): sad" in match.summary()
    # a user mapping wins over name and synonym; an empty target drops the label
    user = match_labels(counts, CLASSES, {"bored": "sad", "joy": None})
    assert user.mapping["bored"] == "sad" and user.how["bored"] == "user" and user.mapping["joy"] is None
    assert user.shared == ["angry", "neutral", "sad"] and user.dropped == {"fearful": 3, "joy": 7}
    # the run's own label map converts raw codes it knows
    base = LabelMap("x", CLASSES, {"exc": "happy"})
    assert match_labels({"exc": 1, "sad": 2}, CLASSES, base=base).identity
    with pytest.raises(UsageError, match=r"'hapy' is not a class of the model \(did you mean 'happy'\?\)"):
        match_labels(counts, CLASSES, {"joy": "hapy"})
    with pytest.raises(UsageError, match=r"the data has no label 'angr' \(did you mean 'anger'\?\)"):
        match_labels(counts, CLASSES, {"angr": "angry"})


def test_parse_map_items_and_files(tmp_path):
    assert parse_label_mapping(["fearful=fear", " bored = ", "a=b=c"]) == {"fearful": "fear", "bored": None,
                                                                           "a": "b=c"}
    with pytest.raises(UsageError, match="expected SOURCE=CLASS"):
        parse_label_mapping(["fearful"])
    (tmp_path / "m.json").write_text(json.dumps({"joy": "happy", "xx": None}))
    assert parse_label_mapping(["joy=sad"], tmp_path / "m.json") == {"joy": "sad", "xx": None}  # items win
    (tmp_path / "m.csv").write_text("src,dst\njoy,happy\n\nxx,\n")
    assert parse_label_mapping(file=tmp_path / "m.csv") == {"joy": "happy", "xx": None}
    (tmp_path / "bad.csv").write_text("joy,happy,sad\n")
    with pytest.raises(DataError, match=r"bad.csv:1: expected two columns"):
        parse_label_mapping(file=tmp_path / "bad.csv")
    with pytest.raises(UsageError, match="file not found"):
        parse_label_mapping(file=tmp_path / "nope.json")


def test_renormalise_over_shared_classes_by_hand():
    p = np.array([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.1, 0.6]])
    q = renormalise(p, [1, 2, 3])  # class 0 absent from the target corpus
    assert np.allclose(q, [[0.5, 1 / 3, 1 / 6], [2 / 9, 1 / 9, 6 / 9]])
    assert np.allclose(q.sum(axis=1), 1.0)
    assert q[0].argmax() == 0  # row 0's argmax was the dropped class; now the best shared class wins
    # the same as a softmax over the kept logits
    logits = np.log(p)
    kept = np.exp(logits[:, [1, 2, 3]])
    assert np.allclose(q, kept / kept.sum(axis=1, keepdims=True))


# ---- unknown labels: one line with counts --------------------------------------------------------------------------
def _manifest(tmp_path: Path, labels: list[str]) -> Path:
    wav = write_wav(tmp_path / "u.wav", seconds=0.5)
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"id": f"x-{i}", "path": str(wav), "dataset": "x", "emotion": lab,
                                        "split": "train"}) + "\n" for i, lab in enumerate(labels)))
    return path


def test_prepare_lists_every_unknown_label_once_with_counts(tmp_path):
    from emotk.core.config import resolve
    from emotk.models.ser.config import SerConfig
    from emotk.models.ser.data import prepare

    labels = ["angry", "fearful", "bored", "fearful", "sad", "xx", "fearful", "bored"]
    path = _manifest(tmp_path, labels)
    LabelMap("x4", CLASSES).save(tmp_path / "lm.json")
    cfg = resolve(SerConfig, "ser.superb", None, [f"data.label_map={tmp_path / 'lm.json'}"]).config
    with pytest.raises(DataError) as e:
        prepare(cfg, path)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: 3 unknown emotion labels not in label map 'x4'")
    assert "'fearful' (3, first on line 2), 'bored' (2, first on line 3), 'xx' (1, first on line 6)" in msg
    assert "--set data.label_map=" in msg and "--set data.classes=" in msg


def test_data_validate_lists_unknown_labels_once(tmp_path, cli):
    path = _manifest(tmp_path, ["angry", "fearful", "bored", "fearful", "sad"])
    LabelMap("x4", CLASSES).save(tmp_path / "label_map.json")
    res = cli("data", "validate", path, "--no-audio")
    assert res.code == 1
    errors = [line for line in res.out.splitlines() if ": error: " in line]
    assert len(errors) == 1, res.out
    assert errors[0].startswith(f"{path}:2: error: 2 unknown emotion labels not in label map 'x4'")
    assert "'fearful' (2, first on line 2), 'bored' (1, first on line 3)" in errors[0]
    assert "--label-map FILE" in errors[0]
    help_text = cli("data", "validate", "--help").out
    assert "--label-map" in help_text  # the hint names a real option of this command

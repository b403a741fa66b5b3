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
    assert match_labels({"exc": 1, "sad": 2, "angry": 1, "neutral": 1}, CLASSES, base=base).identity
    assert not match_labels({"exc": 1, "sad": 2}, CLASSES, base=base).identity  # absent classes: renormalise
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


# ---- through the CLI on the demo corpus ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny lld SER run on the demo corpus (4 speakers: 2 train / 1 valid / 1 test)."""
    from conftest import have_espeak, run_cli

    if not have_espeak():
        pytest.skip("espeak-ng is not installed")
    from emotk.data.protocols import Fold, Protocol
    from emotk.data.synth import SynthConfig, _sentences, _speakers, ensure_demo_corpus

    root = tmp_path_factory.mktemp("xc")
    manifest = ensure_demo_corpus(root / "cache", cfg=SynthConfig(speakers=_speakers()[:4], sentences=_sentences()[:4],
                                                                  dialogues=[]))
    records = [json.loads(x) for x in manifest.read_text().splitlines()]
    speakers = sorted({r["speaker"] for r in records})
    Protocol(name="demo-xc", unit="speaker", dataset="demo",
             folds=[Fold("f0", train=speakers[:2], valid=[speakers[2]], test=[speakers[3]])]).save(root / "p.json")
    args = ["ser", "train", "-c", "ser/tiny", "--data", manifest, "--protocol", root / "p.json", "--set",
            "upstream.name=lld", "--set", "model.feature_norm=true", "--set", "train.epochs=3",
            "--set", f"upstream.cache_dir={root / 'features'}"]
    code, _, stderr = run_cli(*args, "-o", root / "run")
    assert code == 0, stderr
    return {"root": root, "manifest": manifest, "records": records, "args": args, "out": root / "run"}


def _relabelled(run: dict, rename: dict[str, str], path: Path) -> Path:
    lines = []
    for rec in run["records"]:
        lines.append(json.dumps({**rec, "path": str(run["manifest"].parent / rec["path"]),
                                 "emotion": rename.get(rec["emotion"], rec["emotion"])}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cross_corpus_evaluate_scores_the_shared_classes(run, tmp_path):
    from conftest import json_out, run_cli

    from emotk.metrics import classification_report

    code, stdout, stderr = run_cli("--json", "ser", "evaluate", run["out"])
    assert code == 0, stderr
    same = json_out(stdout)
    preds = [json.loads(x) for x in (run["out"] / "runs/f0-seed0/eval/test/predictions.jsonl").read_text().splitlines()]
    # the same corpus through --data: metrics unchanged, nothing mapped
    code, stdout, stderr = run_cli("--json", "ser", "evaluate", run["out"], "--data", run["manifest"])
    assert code == 0, stderr
    again = json_out(stdout)
    assert again["aggregate"] == same["aggregate"] and "label_mapping" not in again
    # another label set: anger / joy by synonym, neutral by name, 'bored' unknown (dropped), 'sad' absent
    other = _relabelled(run, {"angry": "anger", "happy": "joy", "sad": "bored"}, tmp_path / "other.jsonl")
    code, stdout, stderr = run_cli("--json", "ser", "evaluate", run["out"], "--data", other)
    assert code == 0, stderr
    result = json_out(stdout)
    info = result["label_mapping"]
    assert info["shared_classes"] == ["angry", "happy", "neutral"] and info["absent_classes"] == ["sad"]
    assert info["mapping"] == {"anger": "angry", "bored": None, "joy": "happy", "neutral": "neutral"}
    assert info["dropped_labels"] == {"bored": 16} and info["dropped_utterances"] == 16
    assert "dropped 16 utterance(s) with labels 'bored' (16)" in stderr and "never predicted): sad" in stderr
    # expected: the same-corpus probabilities without 'sad' utterances, renormalised over the shared classes
    shared = info["shared_classes"]
    kept = [p for p in preds if p["label"] != "sad"]
    probs = renormalise([[p["probabilities"][c] for c in ["angry", "happy", "neutral", "sad"]] for p in kept],
                        [0, 1, 2])
    truth = [shared.index(p["label"]) for p in kept]
    want = classification_report(np.array(truth), probs.argmax(axis=1), labels=shared)
    for metric in ("weighted_f1", "balanced_accuracy", "macro_f1", "accuracy"):
        assert result["aggregate"][metric]["mean"] == pytest.approx(want[metric], abs=1e-9), metric
    report = json.loads((run["out"] / result["runs"][0]["report"]).read_text())
    assert report["num_samples"] == len(kept) and report["label_mapping"]["shared_classes"] == shared
    folder = (run["out"] / result["runs"][0]["report"]).parent
    cm = json.loads((folder / "confusion_matrix.json").read_text())
    assert cm["classes"] == shared and sum(map(sum, cm["matrix"])) == len(kept)
    lines = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
    assert all(set(x["probabilities"]) == set(shared) for x in lines)
    assert all(sum(x["probabilities"].values()) == pytest.approx(1.0, abs=1e-5) for x in lines)
    # --map puts 'bored' back on 'sad': the same numbers as the original labels, in a folder of its own
    code, stdout, stderr = run_cli("--json", "ser", "evaluate", run["out"], "--data", other, "--map", "bored=sad")
    assert code == 0, stderr
    mapped = json_out(stdout)
    assert mapped["aggregate"] == same["aggregate"] and mapped["label_mapping"]["dropped_utterances"] == 0
    assert mapped["runs"][0]["report"] != result["runs"][0]["report"]
    code, _, stderr = run_cli("ser", "evaluate", run["out"], "--data", other, "--map", "bored=sadd")
    assert code == 2 and "did you mean 'sad'" in stderr and "Traceback" not in stderr


def test_training_on_a_subset_of_classes(run):
    from conftest import json_out, run_cli

    out = run["root"] / "subset"
    code, stdout, stderr = run_cli("--json", *run["args"], "--set", "data.classes=[sad,angry,happy]",
                                   "--set", "train.epochs=1", "-o", out)
    assert code == 0, stderr
    summary = json_out(stdout)
    assert summary["classes"] == ["sad", "angry", "happy"]  # exactly these, in this order
    assert json.loads((out / "export" / "config.json").read_text())["dims"]["num_outputs"] == 3
    assert json.loads((out / "run.json").read_text())["classes"] == ["sad", "angry", "happy"]
    assert json.loads((out / "run.json").read_text())["dropped"] == {"'neutral' not in data.classes": 16}
    # the full corpus against this model: 'neutral' is dropped
    code, stdout, stderr = run_cli("--json", "ser", "evaluate", out, "--data", run["manifest"])
    assert code == 0, stderr
    assert json_out(stdout)["label_mapping"]["dropped_labels"] == {"neutral": 16}
    code, _, stderr = run_cli(*run["args"], "--set", "data.classes=[angry,fear]", "-o", run["root"] / "bad")
    assert code == 1 and "data.classes: 'fear' never occur in the training split" in stderr
    assert len(stderr.strip().splitlines()) == 1

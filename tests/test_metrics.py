"""Metrics: parity with scikit-learn, reports, aggregation over folds, confusion-matrix plot."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from emotk import metrics as M
from emotk.errors import DataError

CLASSES = ["angry", "calm", "disgust", "fearful", "happy", "neutral", "sad", "surprised"]


def _random_labels(seed: int, n: int = 60, c: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Labels with classes missing: y_true never uses the last class, y_pred never uses class 1 or 2."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, c - 1, size=n)
    p = np.where(rng.random(n) < 0.4, t, rng.choice([0, 3, 4, 5, 6, 7][: c - 2], size=n))
    p = np.where(np.isin(p, [1, 2]), 0, p)
    return t, p


@pytest.mark.parametrize("as_strings", [False, True])
def test_parity_with_sklearn_on_random_labels(as_strings):
    from sklearn import metrics as skm

    for seed in range(12):
        t, p = _random_labels(seed, n=20 + seed * 13)
        if as_strings:
            t, p = np.array(CLASSES)[t], np.array(CLASSES)[p]
        full = CLASSES if as_strings else list(range(8))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn warns about classes absent from y_true / y_pred
            assert M.accuracy(t, p) == pytest.approx(skm.accuracy_score(t, p), abs=1e-12)
            assert M.balanced_accuracy(t, p) == pytest.approx(skm.balanced_accuracy_score(t, p), abs=1e-12)
            for labels in (None, full):
                assert M.macro_f1(t, p, labels) == pytest.approx(
                    skm.f1_score(t, p, labels=labels, average="macro", zero_division=0), abs=1e-12)
                assert M.weighted_f1(t, p, labels) == pytest.approx(
                    skm.f1_score(t, p, labels=labels, average="weighted", zero_division=0), abs=1e-12)
                ours = M.precision_recall_f1_support(t, p, labels)
                prec, rec, f1, sup = skm.precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
                np.testing.assert_allclose(ours["precision"], prec, atol=1e-12)
                np.testing.assert_allclose(ours["recall"], rec, atol=1e-12)
                np.testing.assert_allclose(ours["f1"], f1, atol=1e-12)
                np.testing.assert_array_equal(ours["support"], sup)
                np.testing.assert_array_equal(M.confusion_matrix(t, p, labels),
                                              skm.confusion_matrix(t, p, labels=labels))
            # balanced accuracy with the full class list still ignores classes absent from y_true
            assert M.balanced_accuracy(t, p, full) == pytest.approx(skm.balanced_accuracy_score(t, p), abs=1e-12)


def test_classification_report_indices_and_names_agree():
    from sklearn import metrics as skm

    t, p = _random_labels(3, n=80)
    by_index = M.classification_report(t, p, CLASSES)
    by_name = M.classification_report(np.array(CLASSES)[t], list(np.array(CLASSES)[p]), CLASSES)
    assert by_index == by_name
    r = by_index
    assert r["classes"] == CLASSES and r["num_samples"] == 80
    assert r["support"] == np.bincount(t, minlength=8).tolist() and r["support"][7] == 0
    assert r["per_class"]["surprised"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r["weighted_f1"] == pytest.approx(skm.f1_score(t, p, labels=range(8), average="weighted", zero_division=0))
    assert r["macro_f1"] == pytest.approx(skm.f1_score(t, p, labels=range(8), average="macro", zero_division=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert r["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(t, p))
    assert r["macro_recall"] == pytest.approx(skm.recall_score(t, p, labels=range(8), average="macro", zero_division=0))
    assert r["confusion_matrix"] == skm.confusion_matrix(t, p, labels=range(8)).tolist()
    assert r["aliases"] == {"WA": "accuracy", "UA": "balanced_accuracy"}
    assert "WA" not in r and "UA" not in r


def test_hand_example():
    t = ["a", "a", "b", "b", "b", "c"]
    p = ["a", "b", "b", "b", "a", "a"]
    assert M.accuracy(t, p) == pytest.approx(3 / 6)
    assert M.balanced_accuracy(t, p) == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    # F1: a = 2·1/(2·1+2+1) = 0.4, b = 2·2/(2·2+1+1) = 2/3, c = 0
    assert M.macro_f1(t, p) == pytest.approx((0.4 + 2 / 3) / 3)
    assert M.weighted_f1(t, p) == pytest.approx((2 * 0.4 + 3 * 2 / 3) / 6)


def test_bad_label_input():
    with pytest.raises(DataError, match="not in labels"):
        M.classification_report(["a", "x"], ["a", "a"], ["a", "b"])
    with pytest.raises(DataError, match="outside"):
        M.classification_report([0, 2], [0, 1], ["a", "b"])
    with pytest.raises(DataError, match="has 2 labels but y_pred has 1"):
        M.accuracy([0, 1], [0])
    with pytest.raises(DataError, match="empty"):
        M.macro_f1([], [])


def test_regression_metrics_match_numpy():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(200, 3))
    pred = 0.6 * target + rng.normal(scale=0.5, size=(200, 3)) + np.array([0.1, -0.2, 0.0])
    r = M.regression_report(pred, target)
    for d, name in enumerate(("valence", "arousal", "dominance")):
        x, y = pred[:, d], target[:, d]
        ref_ccc = 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
        assert r["ccc"][name] == pytest.approx(ref_ccc, abs=1e-12)
        assert r["pearson"][name] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
        assert r["mse"][name] == pytest.approx(np.mean((x - y) ** 2))
        assert r["mae"][name] == pytest.approx(np.mean(np.abs(x - y)))
    assert r["ccc_mean"] == pytest.approx(np.mean(list(r["ccc"].values())))
    s = np.linspace(-1, 1, 11)
    assert M.ccc(s, s) == pytest.approx(1.0) and M.ccc(s, -s) == pytest.approx(-1.0)
    assert M.ccc(s, 2 * s) == pytest.approx(2 * 2 * s.var() / (s.var() + 4 * s.var()))
    assert np.isnan(M.pearson(np.ones(5), s[:5]))
    with pytest.raises(DataError, match="names"):
        M.regression_report(pred, target, names=("valence", "arousal"))


def test_aggregate_mean_std_population():
    rng = np.random.default_rng(1)
    reports = [M.classification_report(*_random_labels(s, n=50), CLASSES) for s in range(5)]
    agg = M.aggregate(reports, keys=["accuracy", "UA", "macro_f1", "per_class.sad.f1"])
    for key, path in (("accuracy", ["accuracy"]), ("UA", ["balanced_accuracy"]), ("macro_f1", ["macro_f1"]),
                      ("per_class.sad.f1", ["per_class", "sad", "f1"])):
        values = []
        for r in reports:
            node = r
            for part in path:
                node = node[part]
            values.append(node)
        assert agg[key]["values"] == values
        assert agg[key]["mean"] == pytest.approx(np.mean(values))
        assert agg[key]["std"] == pytest.approx(np.std(values))  # ddof=0
        assert agg[key]["std"] != pytest.approx(np.std(values, ddof=1))
    assert M.aggregate(reports, ["accuracy"], ddof=1)["accuracy"]["std"] == pytest.approx(
        np.std([r["accuracy"] for r in reports], ddof=1))
    everything = M.aggregate(reports)
    assert "weighted_f1" in everything and "per_class.angry.recall" in everything
    assert "classes" not in everything and "confusion_matrix" not in everything
    reg = [M.regression_report(rng.normal(size=(30, 3)), rng.normal(size=(30, 3))) for _ in range(3)]
    assert M.aggregate(reg, ["ccc.arousal"])["ccc.arousal"]["mean"] == pytest.approx(
        np.mean([r["ccc"]["arousal"] for r in reg]))
    with pytest.raises(DataError, match="no metric 'nope'"):
        M.aggregate(reports, ["nope"])
    with pytest.raises(DataError):
        M.aggregate([], ["accuracy"])


def test_confusion_matrix_png(tmp_path):
    t, p = _random_labels(4, n=40)
    cm = M.confusion_matrix(t, p, list(range(8)))
    out = M.confusion_matrix_png(cm, CLASSES, tmp_path / "plots" / "cm.png", title="fold 0")
    data = out.read_bytes()
    assert out == tmp_path / "plots" / "cm.png" and len(data) > 1000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(x.name for x in (tmp_path / "plots").iterdir()) == ["cm.png"]  # no temp file left
    raw = M.confusion_matrix_png(cm, CLASSES, tmp_path / "raw.png", normalize=False)
    assert raw.stat().st_size > 1000
    with pytest.raises(DataError, match="labels"):
        M.confusion_matrix_png(cm, CLASSES[:3], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()

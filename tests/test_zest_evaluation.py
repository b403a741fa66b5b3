"""emotk.eval.zest_analysis: DTW, the duration warp and its composition with DTW, F0 / duration measures,
pair planning, and (with espeak-ng; no ../shared needed) a tiny bundle evaluated end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import have_espeak, json_out, run_cli, tiny_zest_bundle


# ---- DTW ------------------------------------------------------------------------------------------------------------
def _naive_accumulated(c: np.ndarray) -> np.ndarray:
    n, m = c.shape
    acc = np.zeros_like(c)
    for i in range(n):
        for j in range(m):
            prev = [acc[a, b] for a, b in ((i - 1, j - 1), (i - 1, j), (i, j - 1)) if a >= 0 and b >= 0]
            acc[i, j] = c[i, j] + (min(prev) if prev else 0.0)
    return acc


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (5, 1), (7, 9), (12, 4)])
def test_accumulated_cost_matches_the_textbook_recursion(shape):
    from emotk.eval.zest_analysis import accumulated_cost

    c = np.random.default_rng(sum(shape)).random(shape)
    assert np.allclose(accumulated_cost(c), _naive_accumulated(c), atol=1e-12)


def test_local_distances_are_euclidean():
    from emotk.eval.zest_analysis import local_distances

    x = np.array([[0.0, 0.0], [3.0, 4.0]])
    y = np.array([[0.0, 0.0], [6.0, 8.0], [3.0, 0.0]])
    assert np.allclose(local_distances(x, y), [[0, 10, 3], [5, 5, 4]])


def _check_path(path: np.ndarray, n: int, m: int) -> None:
    assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (n - 1, m - 1)
    steps = np.diff(path, axis=0)
    assert {tuple(s) for s in steps} <= {(1, 1), (1, 0), (0, 1)}


def test_dtw_recovers_a_time_stretch():
    from emotk.eval.zest_analysis import dtw_path, target_positions

    x = np.random.default_rng(0).standard_normal((40, 6))
    true = np.floor(np.arange(70) * 40 / 70).astype(int)  # y is x stretched by 1.75 (frames repeated)
    y = x[true] + 0.01 * np.random.default_rng(1).standard_normal((70, 6))
    path = dtw_path(x, y)
    _check_path(path, 40, 70)
    assert np.array_equal(target_positions(path, 70), true)  # every target frame aligned to its origin only
    # compression: y keeps every other frame; each target frame's aligned source position is within 1 frame
    keep = np.arange(0, 40, 2)
    path = dtw_path(x, x[keep])
    _check_path(path, 40, 20)
    assert np.max(np.abs(target_positions(path, 20) - keep)) <= 1.0


def test_dtw_of_identical_sequences_is_the_diagonal_and_of_a_shift_is_offset():
    from emotk.eval.zest_analysis import dtw_path

    x = np.random.default_rng(2).standard_normal((25, 4))
    assert np.array_equal(dtw_path(x, x), np.stack([np.arange(25)] * 2, axis=1))
    y = np.concatenate([x[:1].repeat(3, axis=0), x])  # 3 leading copies of the first frame
    path = dtw_path(x, y)
    assert all(i == max(j - 3, 0) for i, j in path)


def test_dtw_features_are_standardised_per_utterance_and_level_invariant():
    from emotk.eval.zest_analysis import dtw_features

    t = np.arange(16000) / 16000
    wav = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    wav += 0.01 * np.random.default_rng(0).standard_normal(wav.size).astype(np.float32)
    f = dtw_features(wav)
    assert f.shape == (50, 20) and f.dtype == np.float32
    assert np.allclose(f.mean(0), 0, atol=1e-4) and np.allclose(f.std(0), 1, atol=1e-3)
    # a level change does not move the frames (but 1e-6 in the log)
    assert np.allclose(dtw_features(0.1 * wav), f, atol=1e-2)


# ---- duration warp and composition ------------------------------------------------------------------------------
def test_warp_keeps_every_source_frame_in_its_unit_and_is_identity_without_change():
    from emotk.eval.zest_analysis import (
        source_to_converted,
        unit_of_frames,
        warp_positions,
    )
    from emotk.features.tokens import dup

    units = np.array([5, 9, 2, 7, 3])
    d = np.array([3, 1, 4, 2, 5])
    dh = np.array([2, 3, 6, 1, 4])
    k = source_to_converted(d, dh)
    assert np.array_equal(dup(units, dh)[k], dup(units, d))  # the converted frame carries the same token
    assert np.all(np.diff(k) >= 0) and k.max() < dh.sum()
    assert np.array_equal(unit_of_frames(d), [0, 0, 0, 1, 2, 2, 2, 2, 3, 3, 4, 4, 4, 4, 4])
    assert np.array_equal(source_to_converted(d, d), np.arange(d.sum()))
    # a unit doubled: its source frames land on every other converted frame, in the middle of their span
    assert np.array_equal(warp_positions(np.arange(3.0), [3], [6]), [1, 3, 5])
    assert np.array_equal(warp_positions(np.arange(4.0), [4], [2]), [0, 0, 1, 1])


def test_compose_alignment_and_aligned_durations():
    from emotk.eval.zest_analysis import aligned_durations, compose_alignment

    d = np.array([2, 2])  # source frames 0-1 unit 0, 2-3 unit 1
    dh = np.array([4, 1])
    # target: 3 frames on source 0, 1 frame on source 1, then source 2 and 3 collapsed on one target frame
    path = np.array([[0, 0], [0, 1], [0, 2], [1, 3], [2, 4], [3, 4]])
    src, conv = compose_alignment(path, d, dh, 5)
    assert np.array_equal(src, [0, 0, 0, 1, 3])  # target frame 4: mean source position 2.5 -> 3
    assert np.array_equal(conv, [1, 1, 1, 3, 4])  # source 0 -> converted 1 (middle of 0..1 of unit 0 doubled)
    assert np.array_equal(aligned_durations(src, d), [4, 1])
    assert aligned_durations(src, d).sum() == 5


# ---- measures -------------------------------------------------------------------------------------------------------
def test_f0_metrics_against_hand_computed_values():
    from emotk.eval.zest_analysis import f0_metrics

    pred = np.array([100.0, 200.0, 0.0, 150.0, 5.0])
    tgt = np.array([110.0, 100.0, 120.0, 0.0, 0.0])
    m = f0_metrics(pred, tgt)
    assert m["frames"] == 5 and m["voiced_both"] == 2 and m["voiced_target"] == 3 and m["voiced_predicted"] == 4
    assert m["voicing_accuracy"] == pytest.approx(2 / 5)  # frames 0, 1 agree; 2 (miss), 3 and 4 (false alarm) do not
    assert m["f0_rmse_hz"] == pytest.approx(math.sqrt((10 ** 2 + 100 ** 2) / 2))
    cents = [1200 * math.log2(100 / 110), 1200.0]
    assert m["f0_rmse_cents"] == pytest.approx(math.sqrt((cents[0] ** 2 + cents[1] ** 2) / 2))
    assert m["gross_pitch_error"] == pytest.approx(0.5)  # 100 vs 110 within 20 %, 200 vs 100 not
    m = f0_metrics(pred, tgt, voiced_threshold=60.0)  # the 5 Hz frame no longer counts as voiced
    assert m["voicing_accuracy"] == pytest.approx(3 / 5) and m["voiced_predicted"] == 3
    none = f0_metrics(np.zeros(3), np.array([100.0, 0.0, 0.0]))
    assert none["f0_rmse_hz"] is None and none["voicing_accuracy"] == pytest.approx(2 / 3)


def test_log_f0_level_and_duration_metrics():
    from emotk.eval.zest_analysis import (
        duration_metrics,
        log_f0_level_error,
        mean_log_f0,
    )

    assert mean_log_f0(np.array([100.0, 0.0, 400.0])) == pytest.approx(math.log(200.0))
    assert log_f0_level_error(np.array([200.0, 0.0, 200.0]), np.array([100.0, 100.0])) == pytest.approx(math.log(2))
    assert log_f0_level_error(np.zeros(4), np.array([100.0])) is None
    m = duration_metrics(np.array([3, 1, 4]), np.array([1, 1, 7]))
    assert m["units"] == 3 and m["duration_mse"] == pytest.approx((4 + 0 + 9) / 3)
    assert m["duration_mae"] == pytest.approx(5 / 3) and m["length_error"] == pytest.approx(-1.0)


def test_copy_baseline_on_identical_source_and_target_is_exact():
    from emotk.eval.zest_analysis import align_pair, method_metrics, pair_tracks

    rng = np.random.default_rng(3)
    feats = rng.standard_normal((30, 8))
    d = np.array([4, 6, 3, 5, 2, 7, 3])
    f0 = np.where(rng.random(30) < 0.7, rng.uniform(90, 250, 30), 0.0)
    dh = np.array([5, 4, 3, 6, 2, 9, 2])
    conv_f0 = np.full(dh.sum(), 180.0)
    al = align_pair(feats, feats, d, dh)
    assert np.array_equal(al["target_durations"], d)
    tracks = pair_tracks(f0, d, conv_f0, dh, f0, al)
    copy = method_metrics([tracks["copy_source"]])
    assert copy["f0_rmse_hz"] == 0.0 and copy["f0_rmse_cents"] == 0.0 and copy["voicing_accuracy"] == 1.0
    assert copy["duration_mse"] == 0.0 and copy["length_error_mean_abs"] == 0.0
    assert copy["log_f0_level_error_mean"] == 0.0
    pred = method_metrics([tracks["predictor"]])  # a flat 180 Hz contour with other durations is not exact
    assert pred["voicing_accuracy"] == pytest.approx(np.mean(f0 > 0), abs=1e-4)  # rounded to 4 digits
    assert pred["f0_rmse_hz"] == pytest.approx(np.sqrt(np.mean((f0[f0 > 0] - 180.0) ** 2)), rel=1e-3)
    assert pred["duration_mse"] == pytest.approx(np.mean((dh - d) ** 2), abs=1e-4)
    assert pred["length_error_mean"] == pytest.approx(dh.sum() - d.sum())


def test_reconstruction_tracks_and_pooling_over_utterances():
    from emotk.eval.zest_analysis import (
        PairResult,
        reconstruction_tracks,
        summarise,
    )

    d = np.array([2, 3])
    src_f0 = np.array([100.0, 100.0, 0.0, 200.0, 200.0])
    dh = np.array([4, 3])
    conv = np.array([110.0, 110.0, 110.0, 110.0, 0.0, 200.0, 200.0])
    t = reconstruction_tracks(src_f0, d, conv, dh, predicted_raw=np.array([4.4, 3.0]))
    assert np.array_equal(t["predictor"].f0, [110.0, 110.0, 0.0, 200.0, 200.0])
    a = PairResult({"emotion": "angry"}, t)
    b = PairResult({"emotion": "sad"}, reconstruction_tracks(src_f0, d, src_f0, d))
    s = summarise([a, b], group_by="emotion")
    p = s["predictor"]
    assert p["utterances"] == 2 and p["frames"] == 10 and p["voiced_both"] == 8
    assert p["f0_rmse_hz"] == pytest.approx(math.sqrt(2 * 100 / 8), abs=1e-4)  # two 10 Hz errors in 8 frames
    assert p["duration_mse"] == pytest.approx(4 / 4) and p["length_error_mean"] == pytest.approx(1.0)
    assert "duration_mse_unclamped" not in p  # b has no raw predictions
    assert s["copy_source"]["f0_rmse_hz"] == 0.0 and s["copy_source"]["duration_mse"] == 0.0
    assert sorted(s["by_emotion"]) == ["angry", "sad"]
    assert s["by_emotion"]["sad"]["predictor"]["f0_rmse_hz"] == 0.0
    assert s["by_emotion"]["angry"]["predictor"]["duration_mse_unclamped"] == pytest.approx((2.4 ** 2 + 0) / 2)


# ---- planning -------------------------------------------------------------------------------------------------------
def test_plan_parallel_pairs_takes_normal_intensity_then_repetition_one():
    from emotk.eval.pairs import spread
    from emotk.eval.zest_analysis import plan_parallel_pairs

    recs = []
    for spk in ("a", "b"):
        for text in ("t1", "t2"):
            for emo in ("neutral", "angry", "sad"):
                for inten in (("normal",) if emo == "neutral" else ("strong", "normal")):
                    for rep in (2, 1):
                        # ids in generation order: the smallest id is the strong / repetition 2 take
                        recs.append({"id": f"{spk}-{text}-{emo}-{len(recs):03d}", "speaker": spk, "text": text,
                                     "emotion": emo, "intensity": inten, "repetition": rep})
    recs.append({"id": "c-t1-angry", "speaker": "c", "text": "t1", "emotion": "angry"})  # no neutral take: no pair
    pairs = plan_parallel_pairs(recs, ["a", "b", "c"])
    assert len(pairs) == 2 * 2 * 2
    for src, tgt in pairs:
        assert src["emotion"] == "neutral" != tgt["emotion"]
        assert (src["speaker"], src["text"]) == (tgt["speaker"], tgt["text"])
        assert src["repetition"] == tgt["repetition"] == 1 and tgt["intensity"] == "normal"
    first = [(p[1]["speaker"], p[1]["text"], p[1]["emotion"]) for p in pairs][:3]
    assert first == [("a", "t1", "angry"), ("a", "t1", "sad"), ("a", "t2", "angry")]
    assert {p[0]["speaker"] for p in plan_parallel_pairs(recs, ["b"])} == {"b"}
    # without a normal / repetition 1 take, intensity normal wins over repetition 1
    few = [r for r in recs if r["speaker"] == "a" and r["text"] == "t1" and (r["emotion"] == "neutral" or
           (r["emotion"] == "angry" and (r["intensity"], r["repetition"]) in {("strong", 1), ("normal", 2)}))]
    (src, tgt), = plan_parallel_pairs(few)
    assert (tgt["intensity"], tgt["repetition"]) == ("normal", 2) and src["repetition"] == 1
    assert spread(list(range(10)), 3) == [0, 4, 9] and spread([1, 2], None) == [1, 2] and spread([1, 2], 5) == [1, 2]


# ---- a tiny bundle on the espeak-ng corpus -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    if not have_espeak():
        pytest.skip("espeak-ng is not installed")
    from emotk.models.zest.export import load_bundle

    made = tiny_zest_bundle(tmp_path_factory.mktemp("zest-eval"), speakers=2)
    return {"bundle": load_bundle(made["bundle"]), "manifest": made["records"], "bundle_dir": made["bundle"],
            "manifest_file": made["manifest"]}


def test_evaluate_pairs_with_a_tiny_bundle(tiny):
    from emotk.data.audio import load_audio
    from emotk.eval.zest_analysis import evaluate_pairs, plan_parallel_pairs

    m = tiny["manifest"]
    pairs = plan_parallel_pairs(m, text_field="sentence")[:3]
    assert pairs
    out = evaluate_pairs(tiny["bundle"], pairs, lambda r: load_audio(m.resolve_path(r)))
    assert out["pairs"] == 3 and out["sources"] == len({p[0]["id"] for p in pairs}) == len(out["reconstruction_rows"])
    for row in out["rows"]:
        assert row["frames_target"] <= row["dtw_path_length"] <= row["frames_source"] + row["frames_target"] - 1
        assert 0.6 * row["frames_source"] - 1 <= row["frames_converted"] <= 1.4 * row["frames_source"] + 1
        for method in ("predictor", "copy_source"):
            assert 0.0 <= row[method]["voicing_accuracy"] <= 1.0
    conv = out["conversion"]
    assert conv["copy_source"]["frames"] == sum(r["frames_target"] for r in out["rows"])
    assert conv["copy_source"]["units"] == sum(r["units"] for r in out["rows"]) == conv["predictor"]["units"]
    assert conv["copy_source"]["f0_rmse_hz"] is not None  # real speech: source and target overlap in voicing
    assert sorted(conv["by_emotion"]) == sorted({p[1]["emotion"] for p in pairs})
    rec = out["reconstruction"]["copy_source"]
    assert rec["f0_rmse_hz"] == 0.0 and rec["voicing_accuracy"] == 1.0 and rec["duration_mse"] == 0.0
    assert out["reconstruction"]["predictor"]["duration_mse_unclamped"] is not None
    assert 0.0 <= out["emotion_accuracy"] <= 1.0


def test_zest_analysis_cli_on_a_tiny_bundle(tiny):
    """`emotk evaluate zest-analysis` through the real entry point: options -> evaluate_manifest -> JSON."""
    args = ("evaluate", "zest-analysis", "--model", tiny["bundle_dir"], "--data", tiny["manifest_file"])
    code, out, err = run_cli("--json", *args, "--text-field", "sentence", "--limit", "2")
    assert code == 0, err
    r = json_out(out)
    assert r["pairs"] == 2 and r["pairs_planned"] >= 2 and set(r["headline"]) == {"predictor", "copy_source"}
    assert r["headline"]["copy_source"] == {k: r["conversion"]["copy_source"][k] for k in r["headline"]["copy_source"]}
    assert r["reconstruction"]["copy_source"]["f0_rmse_hz"] == 0.0 and len(r["rows"]) == 2
    code, out, _ = run_cli(*args, "--text-field", "sentence", "--limit", "1")  # the human form
    assert code == 0 and out.startswith("1 pairs (1 sources)") and "predictor: f0_rmse_hz" in out
    code, _, err = run_cli(*args, "--text-field", "no-such-field")
    assert code == 1 and "no parallel pairs" in err

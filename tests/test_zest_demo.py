"""The S2S-ZEST demo stage (emotk.demo.zest) and emotion-transfer augmentation (emotk transfer augment).

The integration tests build a tiny espeak-ng corpus (4 speakers x 4 styles x 2 sentences; skipped without
espeak-ng), run the demo stage with one training epoch (1 sentence trains, 1 is held out and converted) and reuse
its bundle for the augmentation tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import have_espeak

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: 1 thread (see conftest.one_thread)


# ---- pure helpers (no corpus) ---------------------------------------------------------------------------------------
def test_plan_conversions_pairs_every_ordered_style_pair_in_both_settings():
    from emotk.demo.zest import plan_conversions

    recs = [{"id": f"{s}-{e}-{n}", "speaker": s, "emotion": e, "sentence": n}
            for s in ("a", "b") for e in ("neutral", "happy", "sad") for n in ("s1", "s2")]
    plan = plan_conversions(recs, ["neutral", "happy", "sad"])
    assert len(plan) == 2 * 6 * 2 * 2  # 2 settings x 6 ordered pairs x 2 sentences x 2 source speakers
    for src, ref, target, setting in plan:
        assert src["sentence"] == ref["sentence"] and ref["emotion"] == target != src["emotion"]
        assert (src["speaker"] == ref["speaker"]) == (setting == "SSST")
    assert len(plan_conversions(recs, ["neutral", "happy", "sad"], max_per_pair=1)) == 12
    assert {x[3] for x in plan_conversions(recs, ["neutral", "sad"], settings=("DSST",))} == {"DSST"}


def test_plan_candidates_is_seeded_distinct_and_prefers_other_speakers():
    from emotk.models.zest.augment import cosine, plan_candidates

    srcs = [{"id": f"s{i}", "speaker": "a" if i % 2 else "b"} for i in range(4)]
    refs = [{"id": "r0", "speaker": "a"}, {"id": "r1", "speaker": "c"}, {"id": "r2", "speaker": "b"}]
    one = plan_candidates(srcs, refs, 6, np.random.default_rng(3))
    two = plan_candidates(srcs, refs, 6, np.random.default_rng(3))
    keys = [(s["id"], r["id"]) for s, r in one]
    assert keys == [(s["id"], r["id"]) for s, r in two] and len(set(keys)) == 6
    assert all(s["speaker"] != r["speaker"] for s, r in one)
    assert len(plan_candidates(srcs[:1], refs[:1], 10, np.random.default_rng(0))) == 1  # capped by the pairs
    assert cosine(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(0.0)
    assert cosine(np.zeros(2), np.ones(2)) == 0.0


# ---- the demo stage on a tiny corpus -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    if not have_espeak():
        pytest.skip("espeak-ng is not installed")
    from emotk.data.synth import SynthConfig, _sentences, _speakers, ensure_demo_corpus
    from emotk.demo.zest import zest_demo_stage

    root = tmp_path_factory.mktemp("zest-demo")
    manifest = ensure_demo_corpus(root / "cache", cfg=SynthConfig(speakers=_speakers()[:4],
                                                                   sentences=_sentences()[:2], dialogues=[]))
    result = zest_demo_stage(manifest, root / "stage", seed=0, test_sentences=1, max_per_pair=1,
                             # a few fast epochs; 1000 Hz per output unit lets the F0 head reach speech F0 in
                             # them, so the outputs are voiced and the F0 measurements below are exercised
                             overrides=["train.epochs=4", "speaker_train.epochs=1", "tokens.n_clusters=8",
                                        "train.optim.lr=1.0e-2", "f0_predictor.scale=1000"])
    return {"root": root, "manifest": manifest, "result": result}


def test_demo_stage_structure_files_and_durations(stage):
    r = stage["result"]
    assert len(r["held_out_sentences"]) == 1 and len(r["train_sentences"]) == 1
    assert not set(r["held_out_sentences"]) & set(r["train_sentences"])
    train = [json.loads(x) for x in (Path(r["bundle"]).parent / "train.jsonl").read_text().splitlines()]
    assert train and all(x["sentence"] in r["train_sentences"] for x in train)  # held-out texts never trained on
    assert r["styles"][0] == "neutral" and sorted(r["styles"]) == ["angry", "happy", "neutral", "sad"]
    assert r["conversions"] == 24 and len(r["per_pair"]) == 12 and "neutral->sad" in r["per_pair"]
    assert sorted(r["settings"]) == ["DSST", "SSST"] and all(v["conversions"] == 12 for v in r["settings"].values())
    rows = [json.loads(x) for x in Path(r["conversions_log"]).read_text().splitlines()]
    assert len(rows) == 24
    for row in rows:  # source and reference are real speech; a 1-epoch model may predict no voiced frame at all
        assert 3.5 < row["log_f0_source"] < 6.5 and 3.5 < row["log_f0_reference"] < 6.5  # ln(33 Hz) .. ln(665 Hz)
    judged = [row for row in rows if row["log_f0_converted"] is not None]
    assert ("moved_toward_reference" in r) and (r["moved_toward_reference"] is None) == (not judged)
    for row in judged:
        moved = (abs(row["log_f0_converted"] - row["log_f0_reference"])
                 < abs(row["log_f0_source"] - row["log_f0_reference"]))
        assert row["moved_toward_reference"] == moved
        assert row["moved_in_style_direction"] == (np.sign(row["style_shift_converted"])
                                                   == np.sign(row["style_shift_reference"]))
    assert all("style_shift_reference" in row for row in rows)  # every held-out sentence exists in every style
    assert r["voiced_outputs"] == pytest.approx(len(judged) / 24, abs=1e-4)
    both = [row for row in rows if row["log_f0_reconstructed"] is not None and row["log_f0_converted"] is not None]
    assert len(judged) >= 12 and len(both) >= 12, (len(judged), len(both))  # the checks below see real rows
    for row in both:  # the shift against the model's own reconstruction of the source
        assert row["shift_vs_reconstruction"] == pytest.approx(row["log_f0_converted"] - row["log_f0_reconstructed"])
    assert all("shift_vs_reconstruction" not in row for row in rows if row not in both)
    if judged:  # (always, see above)
        want = np.mean([x["moved_toward_reference"] for x in judged])
        assert r["moved_toward_reference"] == pytest.approx(want, abs=1e-4)
    # files: one neutral -> style wav per target, the F0 plot, the per-conversion log, the bundle
    assert len(r["wavs"]) == 3 and all(Path(w).is_file() for w in r["wavs"])
    assert sorted(Path(w).name.split("--to-")[1] for w in r["wavs"]) == ["angry.wav", "happy.wav", "sad.wav"]
    assert Path(r["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (Path(r["bundle"]) / "bundle.json").is_file()
    # the output follows the predicted (clamped) durations: 320 samples per predicted frame, within +-40 %
    assert r["durations"]["all_follow_predictions"] and r["durations"]["max_abs_samples_off"] <= 320
    for row in rows:
        assert row["samples_out"] == 320 * row["frames_after"]
        assert 0.6 * row["frames_source"] - 1 <= row["frames_after"] <= 1.4 * row["frames_source"] + 1
    import soundfile as sf

    for w in r["wavs"]:
        wav, sr = sf.read(w)
        name = Path(w).name.split("--to-")
        row = next(x for x in rows if x["source"] == name[0] and x["target"] == name[1][:-4])
        assert sr == 16000 and len(wav) == row["samples_out"]


# ---- augmentation ---------------------------------------------------------------------------------------------------
def test_augment_keeps_the_best_scored_conversions(stage, tmp_path):
    from emotk.data.manifest import Manifest, record_problems
    from emotk.errors import DataError, OutputExistsError
    from emotk.models.zest.augment import augment
    from emotk.models.zest.export import load_bundle

    bundle = load_bundle(stage["result"]["bundle"])
    src = Manifest.load(stage["manifest"])
    emotion = {x["id"]: x["emotion"] for x in src}
    out = tmp_path / "aug"
    result = augment(bundle, stage["manifest"], ["sad", "happy"], out, per_class=2, oversample=2.0, seed=1)
    assert result["utterances"] == 4 and set(result["classes"]) == {"sad", "happy"}
    for c, info in result["classes"].items():
        assert info["candidates"] == 4 and info["kept"] == 2
        assert info["mean_score_kept"] >= info["mean_score_all"] - 1e-9  # top-k by score
    m = Manifest.load(result["manifest"])
    assert len(m) == 4 and all(not record_problems(x) for x in m)
    for rec in m:
        assert rec["augmented"] is True and rec["split"] == "train" and -1.0 <= rec["score"] <= 1.0
        assert emotion[rec["reference"]] == rec["emotion"] != emotion[rec["source"]]
        assert m.resolve_path(rec).is_file()
    for c in ("sad", "happy"):
        scores = [x["score"] for x in m if x["emotion"] == c]
        assert scores == sorted(scores, reverse=True)
    again = augment(bundle, stage["manifest"], ["sad", "happy"], tmp_path / "aug2", per_class=2, seed=1)
    assert [x["score"] for x in Manifest.load(again["manifest"])] == [x["score"] for x in m]  # deterministic
    with pytest.raises(OutputExistsError):
        augment(bundle, stage["manifest"], ["sad"], out, per_class=1)
    with pytest.raises(DataError, match="surprised"):
        augment(bundle, stage["manifest"], ["surprised"], tmp_path / "aug3", per_class=1)


def test_augment_cli(stage, tmp_path):
    from typer.testing import CliRunner

    from emotk.cli.transfer import app

    r = CliRunner().invoke(app, ["augment", "--model", stage["result"]["bundle"], "--data", str(stage["manifest"]),
                                 "--classes", "angry", "--sources", "neutral", "--per-class", "1", "--oversample", "2",
                                 "-o", str(tmp_path / "aug")])
    assert r.exit_code == 0, (r.output, r.exception)
    recs = [json.loads(x) for x in (tmp_path / "aug" / "manifest.jsonl").read_text().splitlines()]
    assert len(recs) == 1 and recs[0]["emotion"] == "angry" and recs[0]["source"].split("-")[2] == "neutral"
    assert "1 augmented utterances" in r.output

"""SER ``data.speaker_norm: per-speaker``: transductive per-speaker normalisation of the cached features.

Statistics equal a hand computation; each speaker's normalised features are standardised; the labels of test
speakers are never read (changing them changes no normalised feature and no prediction); a record without
``speaker`` is a one-line error; the default ``none`` is today's behaviour; a tiny ``ser train`` records it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import json_out, run_cli, write_wav

from emotk.errors import DataError

SPEAKERS = {"s0": "train", "s1": "train", "s2": "valid", "s3": "test"}


# ---- the statistics ------------------------------------------------------------------------------------------------
def test_speaker_stats_equal_a_hand_computation_and_floor_std():
    from emotk.models.ser.normalize import STD_FLOOR, speaker_stats

    rng = np.random.default_rng(0)
    groups = {"a": [rng.normal(2, 3, (2, t, 4)) for t in (3, 11, 7)],
              "b": [rng.normal(-1, 0.5, (2, 20, 4))],
              "c": [np.full((2, 5, 4), 7.0), np.full((2, 2, 4), 7.0)]}  # constant: std floored
    stats = speaker_stats(groups)
    for spk, arrays in groups.items():
        frames = np.concatenate(arrays, axis=1)  # every frame of every utterance, once (no padding)
        mean, std = stats[spk]
        assert mean.shape == std.shape == (2, 4)
        assert np.allclose(mean, frames.mean(axis=1), atol=1e-5)
        assert np.allclose(std, np.maximum(frames.std(axis=1), STD_FLOOR), atol=1e-5)
    assert np.all(stats["c"][1] == np.float32(STD_FLOOR))
    # frame-weighted, not a mean of utterance means
    a = np.concatenate(groups["a"], axis=1)
    assert not np.allclose(stats["a"][0], np.mean([x.mean(axis=1) for x in groups["a"]], axis=0))
    assert np.allclose(stats["a"][0], a.mean(axis=1), atol=1e-5)


def _store(tmp_path: Path, ids: list[str], scale: dict[str, float]):
    from emotk.features.cache import FeatureCache
    from emotk.models.ser.task import FeatureStore

    rng = np.random.default_rng(1)
    cache = FeatureCache.create(tmp_path, "ser-input", {"test": 1}, ids, shard_size=4)
    for j, block in enumerate(cache.blocks()):
        cache.write_shard(j, {u: {"hidden": (scale[u] * (3 + rng.standard_normal((3, int(rng.integers(5, 40)), 8))))
                                  .astype(np.float32)} for u in block})
    return FeatureStore(FeatureCache(cache.path))


def _task(store, ids, speakers, labels, *overrides):
    from emotk.core.config import resolve
    from emotk.models.ser.config import SerConfig
    from emotk.models.ser.data import SerItem
    from emotk.models.ser.task import SerTask

    cfg = resolve(SerConfig, "ser.superb", None, ["data.speaker_norm=per-speaker", "model.head_hidden=16",
                                                  *overrides]).config
    splits = {s: [SerItem(u, labels[u]) for u in ids if SPEAKERS[speakers[u]] == s] for s in ("train", "valid", "test")}
    return SerTask(cfg, splits, store, classes=["a", "b"], speakers=speakers)


def test_each_speaker_is_standardised_and_labels_are_never_read(tmp_path):
    import torch

    ids = [f"u{i}" for i in range(16)]
    speakers = {u: f"s{i % 4}" for i, u in enumerate(ids)}
    store = _store(tmp_path, ids, {u: 1.0 + int(speakers[u][1]) for u in ids})  # speakers differ in scale
    labels = {u: (i // 4) % 2 for i, u in enumerate(ids)}  # both classes within each speaker
    task = _task(store, ids, speakers, labels, "model.pooling=attentive_stats")  # frame-level items
    assert not task.pooled
    for split in ("train", "valid", "test"):
        ds = task.dataset(split)
        by_speaker: dict[str, list] = {}
        for i in range(len(ds)):
            item = ds[i]
            by_speaker.setdefault(speakers[item["id"]], []).append(item["hidden"].numpy())
        for spk, arrays in by_speaker.items():
            frames = np.concatenate(arrays, axis=1).astype(np.float64)
            assert np.allclose(frames.mean(axis=1), 0, atol=1e-4), (split, spk)
            assert np.allclose(frames.std(axis=1), 1, atol=1e-3), (split, spk)
    # the pooled shortcut gives the time mean of the normalised frames
    pooled = _task(store, ids, speakers, labels)
    assert pooled.pooled
    frame_item, pooled_item = task.dataset("test")[0], pooled.dataset("test")[0]
    assert torch.allclose(pooled_item["hidden"][:, 0], frame_item["hidden"].mean(dim=1), atol=1e-5)
    # model.feature_norm on top: its training statistics are those of the speaker-normalised features
    both = _task(store, ids, speakers, labels, "model.feature_norm=true")
    model = both.build_model()
    assert np.allclose(model.feature_mean.numpy(), 0, atol=1e-4)
    assert np.allclose(model.feature_std.numpy(), 1, atol=1e-3)
    # other labels for the test (and valid) speakers: identical normalised features
    flipped = {u: (0 if SPEAKERS[speakers[u]] != "train" else y) for u, y in labels.items()}  # not a relabelling
    other = _task(store, ids, speakers, flipped, "model.pooling=attentive_stats")
    for split in ("valid", "test"):
        a, b = task.dataset(split), other.dataset(split)
        assert [a[i]["target"] for i in range(len(a))] != [b[i]["target"] for i in range(len(b))]
        for i in range(len(a)):
            assert torch.equal(a[i]["hidden"], b[i]["hidden"])


# ---- through ser train / evaluate ----------------------------------------------------------------------------------
def _manifest(root: Path, flip_test: bool = False, drop_speaker: str | None = None) -> Path:
    """16 tone utterances: 4 speakers (own pitch and loudness) x 4; the label sets the harmonic content."""
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for s, (spk, split) in enumerate(SPEAKERS.items()):
        for k in range(4):
            label = "high" if k % 2 else "low"
            wav = root / f"{spk}-{k}.wav"
            if not wav.exists():
                write_wav(wav, seconds=1.0 + 0.1 * k, freq=(200 + 40 * s) * (2.5 if k % 2 else 1.0))
                data, sr = sf.read(str(wav))
                sf.write(str(wav), data * (0.3 + 0.5 * s), sr)
            if flip_test and split == "test":  # all one class: not a mere renaming of the true labels
                label = "low"
            rec = {"id": f"{spk}-{k}", "path": str(wav), "dataset": "tones", "emotion": label, "split": split}
            if rec["id"] != drop_speaker:
                rec["speaker"] = spk
            lines.append(json.dumps(rec) + "\n")
    path = root / ("flipped.jsonl" if flip_test else "m.jsonl")
    path.write_text("".join(lines))
    return path


def _train(manifest: Path, out: Path, cache: Path, *extra: str) -> dict:
    code, stdout, stderr = run_cli("--json", "ser", "train", "-c", "ser/tiny", "--data", manifest, "--set",
                                   "upstream.name=lld", "--set", "train.epochs=3", "--set",
                                   f"upstream.cache_dir={cache}", "-o", out, *extra)
    assert code == 0, stderr
    return json_out(stdout)


def _predictions(run: Path, name: str = "test") -> list[dict]:
    return [json.loads(x) for x in (run / "runs" / "split-seed0" / "eval" / name / "predictions.jsonl")
            .read_text().splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("spknorm")
    return {"root": root, "manifest": _manifest(root / "data"), "cache": root / "features"}


def test_train_per_speaker_records_it_and_never_reads_test_labels(corpus):
    root = corpus["root"]
    summary = _train(corpus["manifest"], root / "spk", corpus["cache"], "--set", "data.speaker_norm=per-speaker")
    assert summary["speaker_norm"] == "per-speaker"
    assert summary["normalisation"].startswith("transductive per-speaker normalisation")
    assert json.loads((root / "spk" / "summary.json").read_text())["speaker_norm"] == "per-speaker"
    report = json.loads((root / "spk" / "runs" / "split-seed0" / "eval" / "test" / "report.json").read_text())
    assert report["speaker_norm"] == "per-speaker" and "transductive" in report["normalisation"]
    # the test speaker's labels flipped: the same predictions and probabilities (only the scores change)
    flipped = _manifest(root / "data", flip_test=True)
    _train(flipped, root / "spk-flipped", corpus["cache"], "--set", "data.speaker_norm=per-speaker")
    a, b = _predictions(root / "spk"), _predictions(root / "spk-flipped")
    assert [x["id"] for x in a] == [x["id"] for x in b]
    assert [x["label"] for x in a] != [x["label"] for x in b]
    assert [x["prediction"] for x in a] == [x["prediction"] for x in b]
    for x, y in zip(a, b):
        assert x["probabilities"] == pytest.approx(y["probabilities"], abs=1e-6)
    # ser evaluate applies the same rule: the training-time test report again
    code, stdout, stderr = run_cli("--json", "ser", "evaluate", root / "spk")
    assert code == 0, stderr
    again = json_out(stdout)
    for k, v in report["metrics"].items():
        assert again["aggregate"][k]["mean"] == pytest.approx(v, abs=1e-6)
    # ser predict has no speakers to take statistics from: it says so (one line) instead of predicting silently
    code, _, stderr = run_cli("ser", "predict", str(root / "data" / "s3-0.wav"), "-m", root / "spk")
    assert code != 0 and "per-speaker" in stderr and "ser evaluate" in stderr


def test_default_none_is_todays_behaviour(corpus):
    root = corpus["root"]
    plain = _train(corpus["manifest"], root / "plain", corpus["cache"])
    explicit = _train(corpus["manifest"], root / "none", corpus["cache"], "--set", "data.speaker_norm=none")
    assert plain["speaker_norm"] == explicit["speaker_norm"] == "none" and "normalisation" not in plain
    assert plain["test"] == explicit["test"] and plain["valid"] == explicit["valid"]
    assert _predictions(root / "plain") == _predictions(root / "none")


def test_record_without_speaker_is_a_one_line_error(corpus, tmp_path):
    from emotk.core.config import resolve
    from emotk.models.ser.config import SerConfig
    from emotk.models.ser.data import prepare
    from emotk.models.ser.task import speakers_of

    manifest = _manifest(tmp_path / "data", drop_speaker="s2-1")
    cfg = resolve(SerConfig, "ser.superb", None, ["data.speaker_norm=per-speaker"]).config
    with pytest.raises(DataError) as e:
        speakers_of(cfg, prepare(cfg, manifest))
    msg = str(e.value)
    assert "\n" not in msg and "'s2-1'" in msg and "speaker" in msg and "data.speaker_norm" in msg
    none = resolve(SerConfig, "ser.superb", None, []).config
    assert speakers_of(none, prepare(none, manifest)) is None  # not needed when off
    code, _, stderr = run_cli("ser", "train", "-c", "ser/tiny", "--data", manifest, "--set", "upstream.name=lld",
                              "--set", "data.speaker_norm=per-speaker", "-o", tmp_path / "out")
    assert code != 0 and "'s2-1' has no 'speaker' field" in stderr
    code, _, stderr = run_cli("ser", "train", "-c", "ser/tiny", "--data", manifest, "--set",
                              "data.speaker_norm=global", "-o", tmp_path / "out2")
    assert code != 0 and "speaker_norm" in stderr

"""Content tokens: dedup/dup, deterministic k-means, tokenizer files, feature-space checks, DSP frames."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emotk.errors import DataError, OutputExistsError, UsageError
from emotk.features.tokens import (
    ContentFrames,
    FeatureSpace,
    KMeansTokenizer,
    dedup,
    dup,
    logmel_frames,
    mfcc_frames,
    select_training_ids,
    train_tokenizer,
)


def _blobs(n_utts=60, k=5, dim=8, seed=0):
    """Utterances whose frames come from k well-separated Gaussian blobs; returns frames, ids, blob labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=20.0, size=(k, dim))
    frames, labels = [], []
    for _ in range(n_utts):
        lab = rng.integers(0, k, size=int(rng.integers(20, 60)))
        frames.append((centres[lab] + rng.normal(scale=0.5, size=(lab.size, dim))).astype(np.float32))
        labels.append(lab)
    return frames, [f"u{i:03d}" for i in range(n_utts)], labels


# ---- dedup / dup -------------------------------------------------------------------------------
def test_dedup_known_example():
    t, d = dedup([7, 7, 3, 3, 3, 7, 1])
    assert t.tolist() == [7, 3, 7, 1]
    assert d.tolist() == [2, 3, 1, 1]
    assert t.dtype == np.int64 and d.dtype == np.int64


@pytest.mark.parametrize("seed", range(5))
def test_dup_is_exact_inverse_of_dedup(seed):
    rng = np.random.default_rng(seed)
    tokens = np.repeat(rng.integers(0, 6, size=40), rng.integers(1, 5, size=40))
    t, d = dedup(tokens)
    assert np.all(t[1:] != t[:-1])  # no two equal neighbours remain
    assert d.sum() == tokens.size and d.min() >= 1
    np.testing.assert_array_equal(dup(t, d), tokens)


def test_dedup_dup_edge_cases():
    t, d = dedup(np.array([], dtype=np.int64))
    assert t.size == 0 and d.size == 0 and dup(t, d).size == 0
    np.testing.assert_array_equal(dup(*dedup([4])), [4])
    np.testing.assert_array_equal(dup([1, 2], np.array([2.0, 1.0])), [1, 1, 2])  # whole floats are fine
    with pytest.raises(DataError):
        dup([1, 2], [1.5, 1])
    with pytest.raises(DataError):
        dup([1, 2], [1, -1])
    with pytest.raises(DataError):
        dup([1, 2], [1])
    with pytest.raises(DataError):
        dedup(np.zeros((2, 2)))


# ---- training ----------------------------------------------------------------------------------
def test_select_training_ids_is_seeded_sorted_and_order_independent():
    ids = [f"x{i:02d}" for i in range(50)]
    a = select_training_ids(ids, 0.1, seed=3)
    assert len(a) == 5 and a == sorted(a) and set(a) <= set(ids)
    assert select_training_ids(list(reversed(ids)), 0.1, seed=3) == a
    assert select_training_ids(ids, 0.1, seed=4) != a
    assert len(select_training_ids(ids[:3], 0.1, seed=0)) == 1  # at least one
    with pytest.raises(UsageError):
        select_training_ids(ids, 0.0, seed=0)


def test_fit_is_deterministic_and_independent_of_input_order():
    frames, ids, _ = _blobs()
    a = KMeansTokenizer("logmel", n_clusters=5, fraction=0.5, seed=1).fit(frames, ids)
    b = KMeansTokenizer("logmel", n_clusters=5, fraction=0.5, seed=1).fit(frames[::-1], ids[::-1])
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.meta == b.meta
    c = KMeansTokenizer("logmel", n_clusters=5, fraction=0.5, seed=2).fit(frames, ids)
    assert c.meta["train_ids_sha256"] != a.meta["train_ids_sha256"]
    assert a.meta["num_train_utterances"] == 30 and a.meta["num_utterances"] == 60


def test_kmeans_recovers_separated_clusters():
    frames, ids, labels = _blobs(k=5)
    tok = KMeansTokenizer("logmel", n_clusters=5, fraction=0.2, seed=0).fit(frames, ids)
    tokens = np.concatenate(tok.tokenize_batch(frames))
    truth = np.concatenate(labels)
    # every blob maps to exactly one token and every token to one blob (a perfect clustering)
    pairs = set(zip(truth.tolist(), tokens.tolist()))
    assert len(pairs) == 5 and len({p[0] for p in pairs}) == 5 and len({p[1] for p in pairs}) == 5


@pytest.mark.slow  # scikit-learn's import and thread-pool start-up take seconds on 2 cores
def test_minibatch_algorithm_is_repeatable():
    frames, ids, _ = _blobs(n_utts=20, k=3, dim=4)
    a = KMeansTokenizer("mfcc", n_clusters=3, fraction=1.0, seed=0, algorithm="minibatch", max_iter=20).fit(frames, ids)
    b = KMeansTokenizer("mfcc", n_clusters=3, fraction=1.0, seed=0, algorithm="minibatch", max_iter=20).fit(frames, ids)
    np.testing.assert_allclose(a.centroids, b.centroids)
    assert a.meta["algorithm"] == "minibatch"


def test_fit_rejects_bad_input():
    frames, ids, _ = _blobs(n_utts=10)
    with pytest.raises(DataError, match="fewer than K"):
        KMeansTokenizer("logmel", n_clusters=100, fraction=0.1).fit(frames, ids)
    with pytest.raises(DataError, match="duplicate"):
        KMeansTokenizer("logmel", n_clusters=2).fit(frames[:2], ["a", "a"])
    bad = [f.copy() for f in frames]
    for f in bad:
        f[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        KMeansTokenizer("logmel", n_clusters=2, fraction=1.0).fit(bad, ids)
    with pytest.raises(UsageError):
        KMeansTokenizer("nonsense")
    with pytest.raises(UsageError):
        KMeansTokenizer("ssl:wavlm-base")  # an SSL space needs a layer


# ---- use and persistence -----------------------------------------------------------------------
def test_save_load_gives_identical_tokens_and_metadata(tmp_path):
    frames, ids, _ = _blobs()
    tok = KMeansTokenizer("ssl:wavlm-base-plus:6", n_clusters=5, fraction=0.3, seed=0).fit(frames, ids)
    path = tok.save(tmp_path / "tok")
    assert path.name == "tok.safetensors" and path.is_file()
    sidecar = json.loads((tmp_path / "tok.json").read_text())
    assert sidecar["feature_space"] == "ssl" and sidecar["layer"] == 6 and sidecar["model"] == "wavlm-base-plus"
    for key in ("n_clusters", "dim", "seed", "fraction", "train_ids_sha256"):
        assert key in sidecar
    loaded = KMeansTokenizer.load(path)
    assert loaded.space == tok.space and loaded.meta == tok.meta
    for f in frames[:5]:
        np.testing.assert_array_equal(loaded.tokenize(f), tok.tokenize(f))
    np.testing.assert_array_equal(KMeansTokenizer.load(tmp_path / "tok.json").centroids, tok.centroids)


def test_tokenize_refuses_other_feature_space_and_width(tmp_path):
    frames, ids, _ = _blobs()
    tok = KMeansTokenizer.load(KMeansTokenizer("whisper-encoder", n_clusters=5).fit(frames, ids)
                               .save(tmp_path / "t.safetensors"))
    tok.tokenize(frames[0], space="whisper-encoder")  # same space: fine
    with pytest.raises(DataError, match="trained on feature space 'whisper-encoder'"):
        tok.tokenize(frames[0], space="ssl:wavlm-base-plus:6")
    with pytest.raises(DataError, match="expected frames of shape"):
        tok.tokenize(np.zeros((4, 3), np.float32))
    with pytest.raises(UsageError):
        KMeansTokenizer("logmel").tokenize(frames[0])  # untrained


def test_load_rejects_non_tokenizer_files(tmp_path):
    from safetensors.numpy import save_file

    save_file({"centroids": np.zeros((2, 2), np.float32)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(DataError, match="not an emotk tokenizer"):
        KMeansTokenizer.load(tmp_path / "x.safetensors")
    (tmp_path / "y.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError):
        KMeansTokenizer.load(tmp_path / "y.safetensors")
    with pytest.raises(DataError, match="not found"):
        KMeansTokenizer.load(tmp_path / "missing.safetensors")


def test_tokenize_batch_equals_one_by_one():
    frames, ids, _ = _blobs()
    tok = KMeansTokenizer("logmel", n_clusters=5).fit(frames, ids)
    batch = tok.tokenize_batch(frames[:7])
    for f, t in zip(frames[:7], batch):
        np.testing.assert_array_equal(tok.tokenize(f), t)
    assert tok.tokenize(np.zeros((0, 8), np.float32)).shape == (0,)


def test_feature_space_parse_and_key():
    s = FeatureSpace.parse("ssl:hubert-base-ls960:9")
    assert (s.name, s.model, s.layer, s.key) == ("ssl", "hubert-base-ls960", 9, "ssl:hubert-base-ls960:9")
    assert FeatureSpace.parse(s.as_dict()) == s
    assert FeatureSpace.parse("logmel").key == "logmel"


# ---- DSP frames --------------------------------------------------------------------------------
def test_logmel_and_mfcc_follow_the_frame_rule():
    sr = 16000
    t = np.arange(int(1.01 * sr)) / sr
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    lm = logmel_frames(tone)
    assert lm.shape == (len(tone) // 320, 80) and lm.dtype == np.float32
    from emotk.features.acoustic import mel_filterbank

    fb = mel_filterbank(80, 512)
    peak_bin = int(np.argmax(fb[:, round(1000 / (sr / 512))]))  # the filter that covers 1 kHz most
    assert abs(int(np.argmax(lm[10])) - peak_bin) <= 1
    assert mfcc_frames(tone, n_mfcc=13).shape == (len(tone) // 320, 13)
    assert logmel_frames(np.zeros(100, np.float32)).shape == (0, 80)
    out = ContentFrames("mfcc")([tone, tone[:5000]])
    assert [o.shape for o in out] == [(50, 20), (15, 20)]


def test_train_tokenizer_from_a_manifest_decodes_only_the_chosen_utterances(tmp_path):
    from conftest import write_wav

    lines = []
    for i in range(10):
        write_wav(tmp_path / f"a{i}.wav", seconds=0.4, freq=150 + 40 * i)
        lines.append(json.dumps({"id": f"d-{i}", "path": f"a{i}.wav", "dataset": "d"}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    calls = []

    def frames_fn(wavs):
        calls.append(len(wavs))
        return [logmel_frames(w, n_mels=16) for w in wavs]

    res = train_tokenizer(tmp_path / "m.jsonl", "logmel", tmp_path / "tok", n_clusters=4, fraction=0.3,
                          frames_fn=frames_fn)
    assert sum(calls) == 3 and res["num_train_utterances"] == 3 and res["dim"] == 16
    assert (tmp_path / "tok.safetensors").is_file()
    with pytest.raises(OutputExistsError):
        train_tokenizer(tmp_path / "m.jsonl", "logmel", tmp_path / "tok", n_clusters=4, frames_fn=frames_fn)


def test_utterance_cmvn_removes_level_and_rejects_unknown_modes():
    from emotk.features.tokens import utterance_cmvn

    rng = np.random.default_rng(3)
    t = np.arange(16000 * 2) / 16000
    wav = (0.3 * np.sign(np.sin(2 * np.pi * 140 * t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
           + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    loud, quiet = logmel_frames(wav), logmel_frames(0.05 * wav)
    assert np.abs(loud - quiet).mean() > 2.0  # a 26 dB level difference shifts every log-mel band
    for mode in ("mean", "meanvar"):
        a, b = utterance_cmvn(loud, mode), utterance_cmvn(quiet, mode)
        assert a.shape == loud.shape and a.dtype == np.float32
        assert np.abs(a - b).mean() < 0.05, mode  # the level is gone (up to the 1e-6 floor of the log)
    mv = utterance_cmvn(loud, "meanvar")
    assert np.allclose(mv.mean(axis=0), 0.0, atol=0.2)  # active frames are nearly all frames here
    assert np.array_equal(utterance_cmvn(loud, "none"), loud)
    with pytest.raises(UsageError, match="cmvn"):
        utterance_cmvn(loud, "global")
    frames = ContentFrames(FeatureSpace("mfcc", None, None, {"cmvn": "meanvar"}))([wav, 0.05 * wav])
    assert np.abs(frames[0] - frames[1]).mean() < 0.05
    with pytest.raises(UsageError, match="no option 'cmvm'; did you mean 'cmvn'"):  # a typo changes nothing: refused
        FeatureSpace("logmel", None, None, {"cmvm": "meanvar"})
    with pytest.raises(UsageError, match="no option 'n_mels'"):
        FeatureSpace.parse({"name": "ssl", "model": "tiny-wavlm", "layer": 2, "options": {"n_mels": 40}})

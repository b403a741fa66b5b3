"""Acoustic targets (emotk.features.acoustic): lld layout/shape/determinism, normalisation, precomputed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from emotk.errors import DataError, EmotkError
from emotk.features.acoustic import AcousticConfig, acoustic_targets, decimate, deltas, lld, normalize
from emotk.features.frames import num_frames

SR = 16000
RAW = AcousticConfig(normalize="none")


def voice(seconds: float, f0: float = 150.0, sr: int = SR) -> np.ndarray:
    """Pulse train at ``f0`` through a 700 Hz resonance, plus a little noise (deterministic)."""
    from scipy.signal import lfilter

    n = int(round(seconds * sr))
    x = np.zeros(n)
    x[np.arange(0, n, sr / f0).astype(int)] = 1.0
    r, theta = np.exp(-np.pi * 130 / sr), 2 * np.pi * 700 / sr
    x = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)
    x += 1e-3 * np.random.default_rng(0).standard_normal(n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def test_lld_shape_dtype_and_frame_count():
    for n in (1600, 16000 + 123, 52800):
        y = acoustic_targets(voice(n / SR), SR)
        assert y.shape == (num_frames(n), 256) and y.dtype == np.float32
        assert np.isfinite(y).all()
    assert acoustic_targets(np.zeros(200, np.float32), SR).shape == (0, 256)
    assert acoustic_targets(voice(1.0, sr=44100), 44100).shape == (50, 256)  # resampled to 16 kHz


def test_lld_is_deterministic():
    x = voice(0.7)
    np.testing.assert_array_equal(acoustic_targets(x, SR), acoustic_targets(x, SR))
    small = AcousticConfig(n_mels=40, deltas=False)  # 136 raw columns -> fixed random projection to 256
    a, b = acoustic_targets(x, SR, small), acoustic_targets(x, SR, small)
    np.testing.assert_array_equal(a, b)
    other_seed = acoustic_targets(x, SR, AcousticConfig(n_mels=40, deltas=False, seed=1))
    assert not np.allclose(a, other_seed)


def test_lld_layout():
    from scipy.fft import dct

    cfg = RAW
    assert cfg.lld_dim() == 80 + 40 + 40 + 80 + 4 + 12 == 256
    y = acoustic_targets(voice(1.0, f0=150.0), SR, cfg)
    logmel, mfcc, dmfcc, longmel = y[:, :80], y[:, 80:120], y[:, 120:160], y[:, 160:240]
    logf0, voiced, zcr, _energy = y[:, 240], y[:, 241], y[:, 242], y[:, 243]
    np.testing.assert_allclose(mfcc, dct(logmel.astype(np.float64), type=2, norm="ortho", axis=1)[:, :40], atol=1e-3)
    np.testing.assert_allclose(dmfcc, deltas(mfcc.astype(np.float64)), atol=1e-3)
    np.testing.assert_allclose(longmel[25], logmel[20:31].mean(axis=0), atol=1e-3)  # ±5 frames
    assert voiced.mean() > 0.9 and set(np.unique(voiced)) <= {0.0, 1.0}
    assert abs(np.median(np.exp(logf0[voiced > 0])) - 150.0) < 7.5
    assert ((zcr >= 0) & (zcr <= 1)).all()
    top = np.argmax(logmel[25])  # the strongest band holds the 700 Hz resonance (band centres equally spaced in mel)
    mel_top = 2595 * np.log10(1 + 8000 / 700)
    assert 500 < 700 * (10 ** ((top + 1) * mel_top / 81 / 2595) - 1) < 1000
    # energy follows the signal: silence then voice, with frame k = first frame of voice
    k = 20
    onset = np.concatenate([np.zeros(320 * k, np.float32), voice(0.5)])
    e = acoustic_targets(onset, SR, cfg)[:, 243]
    assert e[: k - 1].max() < -15 and e[k:].min() > e[: k - 1].max() + 10


def test_fit_modes():
    x = voice(0.5)
    cfg = AcousticConfig(n_mels=40, normalize="none", fit="truncate_pad")
    assert cfg.lld_dim() == 40 + 80 + 40 + 16
    y = acoustic_targets(x, SR, cfg)
    assert y.shape == (25, 256) and not y[:, cfg.lld_dim():].any() and y[:, : cfg.lld_dim()].any()
    y64 = acoustic_targets(x, SR, AcousticConfig(dim=64, normalize="none", fit="truncate_pad"))
    np.testing.assert_allclose(y64, acoustic_targets(x, SR, RAW)[:, :64])
    proj = acoustic_targets(x, SR, AcousticConfig(dim=64, normalize="none"))
    assert proj.shape == (25, 64) and np.isfinite(proj).all()


def test_normalization_modes():
    x = voice(1.0)
    raw = acoustic_targets(x, SR, RAW).astype(np.float64)
    ref = acoustic_targets(x, SR, AcousticConfig(normalize="reference"))
    np.testing.assert_allclose(ref, (raw - raw.mean(0)) / (raw.std(0) + 1.0), atol=1e-4)
    std = acoustic_targets(x, SR, AcousticConfig(normalize="standard"))
    varying = raw.std(0) > 1e-3
    np.testing.assert_allclose(std.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(std.std(0)[varying], 1.0, atol=1e-3)
    np.testing.assert_allclose(normalize(np.ones((4, 2)), "standard"), 0.0)  # constant columns stay finite


def test_decimate():
    x = np.arange(20, dtype=np.float64).reshape(10, 2)
    np.testing.assert_allclose(decimate(x, 100.0), (x[0::2] + x[1::2]) / 2)  # pairs averaged
    np.testing.assert_allclose(decimate(x[:9], 100.0)[-1], x[8])  # a last odd frame stands alone
    np.testing.assert_allclose(decimate(x[:9], 150.0), [x[0:3].mean(0), x[3:6].mean(0), x[6:9].mean(0)])
    np.testing.assert_allclose(decimate(x, 50.0), x)
    ramp = np.arange(0, 30, dtype=np.float64)[:, None]  # 75 Hz ramp: linear -> interpolation is exact
    out = decimate(ramp, 75.0)
    centres = (np.arange(out.shape[0]) + 0.5) / 50.0 * 75.0 - 0.5
    np.testing.assert_allclose(out[:, 0][1:-1], centres[1:-1])


def test_precomputed_npy_pt_and_safetensors(tmp_path):
    import torch
    from safetensors.numpy import save_file

    n_samples = 16000 + 200  # 50 frames at 50 Hz
    wav = np.zeros(n_samples, np.float32)
    rng = np.random.default_rng(0)
    feats100 = rng.standard_normal((101, 8)).astype(np.float32)  # a 100 Hz extractor, one extra frame
    expected = (feats100[0:100:2] + feats100[1:100:2]) / 2
    folder = tmp_path / "pase"
    folder.mkdir()
    np.save(folder / "utt-a.npy", feats100)
    torch.save({"feats": torch.from_numpy(feats100[None])}, folder / "utt-b.pt")
    save_file({"x": feats100}, str(folder / "utt-c.safetensors"))
    many = tmp_path / "all.safetensors"
    save_file({"utt-a": feats100, "utt-b": feats100[:96]}, str(many))

    cfg = AcousticConfig(kind="precomputed", source=str(folder), source_rate=100.0, normalize="none")
    for utt in ("utt-a", "utt-b", "utt-c"):
        got = acoustic_targets(wav, SR, cfg, utt_id=utt)
        assert got.shape == (50, 8) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    cfg_many = AcousticConfig(kind="precomputed", source=str(many), normalize="none")
    np.testing.assert_allclose(acoustic_targets(wav, SR, cfg_many, utt_id="utt-a"), expected, rtol=1e-6)
    short = acoustic_targets(wav, SR, cfg_many, utt_id="utt-b")  # 96 -> 48 frames, padded with the last one
    np.testing.assert_allclose(short[:48], expected[:48], rtol=1e-6)
    np.testing.assert_allclose(short[48:], np.repeat(expected[47:48], 2, axis=0), rtol=1e-6)
    ref = acoustic_targets(wav, SR, AcousticConfig(kind="precomputed", source=str(many)), utt_id="utt-a")
    np.testing.assert_allclose(ref, (expected - expected.mean(0)) / (expected.std(0) + 1.0), atol=1e-5)


def test_precomputed_errors(tmp_path):
    np.save(tmp_path / "long.npy", np.zeros((300, 4), np.float32))
    np.save(tmp_path / "flat.npy", np.zeros(30, np.float32))
    cfg = AcousticConfig(kind="precomputed", source=str(tmp_path))
    wav = np.zeros(16000, np.float32)
    with pytest.raises(DataError, match="150 at 50 Hz"):  # 3 s of features for 1 s of audio
        acoustic_targets(wav, SR, cfg, utt_id="long")
    with pytest.raises(DataError, match="expected \\(frames, dims\\)"):
        acoustic_targets(wav, SR, cfg, utt_id="flat")
    with pytest.raises(DataError, match="no missing.npy"):
        acoustic_targets(wav, SR, cfg, utt_id="missing")
    with pytest.raises(DataError, match="utterance id"):
        acoustic_targets(wav, SR, cfg)
    with pytest.raises(DataError, match="safe file name"):
        acoustic_targets(wav, SR, cfg, utt_id="../long")
    with pytest.raises(DataError, match="expect_dim"):
        acoustic_targets(np.zeros(300 * 160, np.float32), SR, AcousticConfig(
            kind="precomputed", source=str(tmp_path), expect_dim=256), utt_id="long")


def test_egemaps_uses_opensmile_or_names_the_install_command():
    # opensmile is an optional extra: with it, 25 eGeMAPS LLDs at 50 Hz; without it, an error that says what to do
    if importlib.util.find_spec("opensmile") is None:
        with pytest.raises(EmotkError, match="pip install opensmile"):
            acoustic_targets(voice(0.5), SR, AcousticConfig(kind="egemaps"))
    else:
        y = acoustic_targets(voice(1.0), SR, AcousticConfig(kind="egemaps"))
        assert y.shape == (50, 25) and np.isfinite(y).all()


def test_lld_function_accepts_plain_16k_arrays():
    x = voice(0.4).astype(np.float64)
    assert lld(x).shape == (20, 256)

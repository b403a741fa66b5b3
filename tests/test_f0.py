"""F0 extraction (emotk.features.f0): frame counts and alignment, pitch accuracy, voicing, measures."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from emotk.errors import AudioError, ConfigError, DataError
from emotk.features.f0 import (
    F0Config,
    extract_f0,
    frame_matrix,
    gross_pitch_error,
    normalize_logf0,
    speaker_logf0_stats,
    voicing_agreement,
)
from emotk.features.frames import num_frames

SR = 16000
SHARED = Path(__file__).resolve().parents[2] / "shared"
RAVDESS = SHARED / "data" / "ravdess"
BACKENDS = ["yaapt", "world"]
RAW_WORLD = dict(  # dio + stonemask with every post-processing step off
    voicing_threshold=0.0, max_gap=0, edge_extend=0, octave_fix=False, outlier=0.0, min_voiced=1, median=1
)


def pulse_train(f0_per_sample: np.ndarray, sr: int = SR) -> np.ndarray:
    """Glottal-like source: one impulse per period (0 Hz = silence) through three formant resonators."""
    from scipy.signal import lfilter

    f0_per_sample = np.asarray(f0_per_sample, dtype=np.float64)
    phase = np.cumsum(f0_per_sample / sr)
    x = np.zeros(f0_per_sample.size)
    x[(np.diff(np.floor(phase), prepend=0.0) > 0) & (f0_per_sample > 0)] = 1.0
    for centre, bandwidth in ((700, 130), (1200, 150), (2600, 250)):
        r = np.exp(-np.pi * bandwidth / sr)
        theta = 2 * np.pi * centre / sr
        x = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)
    peak = np.abs(x).max() if x.size else 0.0
    return (0.5 * x / peak if peak > 0 else x).astype(np.float32)


def constant(f0: float, seconds: float, sr: int = SR) -> np.ndarray:
    return pulse_train(np.full(int(round(seconds * sr)), f0), sr)


@pytest.mark.parametrize("backend", BACKENDS)
def test_frame_count_is_num_frames_for_any_length(backend):
    cfg = F0Config(backend=backend)
    for n in (1600, 1601, 1919, 3360, 16007, 20 * SR):  # 0.1 s ... 20 s, on and off the 320-sample grid
        f0 = extract_f0(constant(150.0, n / SR), SR, cfg)
        assert f0.shape == (num_frames(n),) and f0.dtype == np.float32, n
        assert (f0 > 0).mean() > 0.8, n


@pytest.mark.parametrize("backend", ["yaapt", "world", "harvest"])
def test_short_or_silent_input_gives_zeros(backend):
    cfg = F0Config(backend=backend)
    for n in (0, 100, 319, 1599):
        f0 = extract_f0(constant(150.0, n / SR) if n > 2 else np.zeros(n, np.float32), SR, cfg)
        assert f0.shape == (num_frames(n),) and not f0.any()
    f0 = extract_f0(np.zeros(SR, np.float32), SR, cfg)
    assert f0.shape == (50,) and not f0.any()


@pytest.mark.parametrize("backend", ["yaapt", "world", "harvest"])
def test_pulse_train_pitch_within_5_percent(backend):
    f0 = extract_f0(constant(150.0, 1.0), SR, F0Config(backend=backend))
    assert (f0 > 0).mean() > 0.9
    assert abs(np.median(f0[f0 > 0]) - 150.0) < 0.05 * 150.0


@pytest.mark.parametrize("backend", ["world", "harvest"])
def test_white_noise_mostly_unvoiced(backend):
    noise = (0.1 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32)
    assert (extract_f0(noise, SR, F0Config(backend=backend)) > 0).mean() < 0.2


@pytest.mark.parametrize("backend", BACKENDS)
def test_fricative_noise_between_voiced_stretches_is_unvoiced(backend):
    from scipy.signal import butter, sosfilt

    hiss = sosfilt(butter(6, 3000, "highpass", fs=SR, output="sos"), np.random.default_rng(1).standard_normal(SR // 2))
    x = np.concatenate([constant(140.0, 0.5), 0.2 * hiss, constant(140.0, 0.5)]).astype(np.float32)
    f0 = extract_f0(x, SR, F0Config(backend=backend))
    assert (f0[27:48] > 0).mean() < 0.2  # frames well inside the hiss (samples 8000..16000 = frames 25..49)
    assert (f0[:23] > 0).mean() > 0.9 and (f0[52:] > 0).mean() > 0.9


def test_frame_i_describes_samples_i_times_320():
    x = np.arange(5 * 320 + 17, dtype=np.float64)
    rows = frame_matrix(x, num_frames(x.size), 320, 160)
    for i in range(num_frames(x.size)):
        np.testing.assert_array_equal(rows[i], x[320 * i : 320 * (i + 1)])


@pytest.mark.parametrize("backend", ["yaapt", "world", "harvest"])
def test_centre_alignment_voicing_onset_and_pitch_step(backend):
    k = 25  # the change happens at sample 320 * k, the start of frame k
    cfg = F0Config(backend=backend)
    onset = extract_f0(pulse_train(np.concatenate([np.zeros(320 * k), np.full(320 * k, 150.0)])), SR, cfg)
    assert not onset[: k - 1].any() and onset[k - 1] == 0  # frame k-1 holds only 40 samples of voice
    assert (onset[k:] > 0).all()
    step = extract_f0(pulse_train(np.concatenate([np.full(320 * k, 200.0), np.full(320 * k, 120.0)])), SR, cfg)
    assert abs(step[k - 2] - 200.0) < 10.0
    assert abs(step[k] - 120.0) < 6.0 and abs(step[k + 1] - 120.0) < 6.0


def test_thesis_alignment_is_native_yaapt_without_the_trailing_frame():
    from amfm_decompy import basic_tools, pYAAPT

    x = constant(180.0, 0.6)[: 25 * 320 + 100]  # not a multiple of 320: pYAAPT gives one frame more
    padded = np.concatenate([np.zeros(200), x.astype(np.float64), np.zeros(200)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        native = pYAAPT.yaapt(
            basic_tools.SignalObj(padded, float(SR)),
            frame_length=25.0, frame_space=20.0, nccf_thresh1=0.25, tda_frame_length=25.0, f0_min=60.0, f0_max=400.0,
        ).samp_values
    assert native.size == num_frames(x.size) + 1
    ours = extract_f0(x, SR, F0Config(backend="yaapt", alignment="thesis"))
    np.testing.assert_allclose(ours, native[:-1], rtol=1e-6)


def test_world_alignment_modes_pick_dio_frames_as_documented():
    import pyworld as pw

    x = constant(130.0, 0.6)[: 30 * 320 + 50].astype(np.float64)  # > 0.5 s: no mirror padding
    n = num_frames(x.size)
    f0, t = pw.dio(x, SR, f0_floor=60.0, f0_ceil=400.0, frame_period=10.0, speed=4, allowed_range=0.12)
    for alignment, first in (("centre", 1), ("thesis", 0)):  # DIO frame k sits on sample 160 * k
        sel = first + 2 * np.arange(n)
        expected = pw.stonemask(x, np.ascontiguousarray(f0[sel]), np.ascontiguousarray(t[sel]), SR)
        assert expected[5:-5].min() > 100  # voiced, so the comparison means something
        ours = extract_f0(x, SR, F0Config(backend="world", alignment=alignment, **RAW_WORLD))
        np.testing.assert_allclose(ours, expected, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_other_sample_rates_are_resampled(backend):
    x = constant(150.0, 1.0, sr=22050)
    f0 = extract_f0(x, 22050, F0Config(backend=backend))
    assert f0.shape == (num_frames(round(x.size * 16000 / 22050)),) == (50,)
    assert abs(np.median(f0[f0 > 0]) - 150.0) < 7.5


def test_bad_input_and_config():
    with pytest.raises(AudioError):
        extract_f0(np.zeros((2, 1600), np.float32))
    with pytest.raises(AudioError):
        extract_f0(np.full(3200, np.nan, np.float32))
    with pytest.raises(ConfigError, match="frame_space"):
        extract_f0(constant(150.0, 0.2), SR, F0Config(frame_space=10.0))
    with pytest.raises(ConfigError, match="f0_floor"):
        extract_f0(constant(150.0, 0.2), SR, F0Config(f0_floor=500.0))


def test_voicing_agreement_and_gross_pitch_error():
    ref = np.array([0, 100, 100, 100, 200, 0], dtype=np.float32)
    est = np.array([0, 0, 110, 130, 100, 150], dtype=np.float32)
    assert voicing_agreement(est, ref) == pytest.approx(4 / 6)  # frames 1 and 5 disagree
    assert gross_pitch_error(est, ref) == pytest.approx(2 / 3)  # 130 vs 100 and 100 vs 200 are > 20 % off
    assert gross_pitch_error(est, ref, tolerance=0.4) == pytest.approx(1 / 3)
    # lists pool frames, not utterance averages
    assert voicing_agreement([est, ref], [ref, ref]) == pytest.approx(10 / 12)
    assert gross_pitch_error([est, ref], [ref, ref]) == pytest.approx(2 / 7)
    assert np.isnan(gross_pitch_error(np.zeros(3), np.zeros(3)))
    with pytest.raises(DataError):
        voicing_agreement(est, ref[:-1])


def test_speaker_logf0_stats_and_normalize():
    tracks = [np.array([0, 100, 200], np.float32), np.array([400, 0], np.float32)]
    mean, std = speaker_logf0_stats(tracks)
    logs = np.log([100.0, 200.0, 400.0])
    assert mean == pytest.approx(logs.mean()) and std == pytest.approx(logs.std())
    z = normalize_logf0(tracks[0], mean, std)
    assert z.dtype == np.float32 and z[0] == 0.0
    np.testing.assert_allclose(z[1:], (logs[:2] - mean) / std, rtol=1e-6)
    with pytest.raises(DataError, match="no voiced frames"):
        speaker_logf0_stats([np.zeros(4)])


@pytest.mark.shared_data
@pytest.mark.skipif(not (RAVDESS / "manifest.jsonl").is_file(), reason="../shared/data/ravdess not available")
def test_world_agrees_with_yaapt_on_real_speech():
    import soundfile as sf

    files = [
        "Actor_01/03-01-01-01-01-01-01.flac",  # neutral, male
        "Actor_12/03-01-05-02-02-01-12.flac",  # angry, strong, female
        "Actor_20/03-01-08-01-01-02-20.flac",  # surprised, female: the hardest of the three
    ]
    yaapt, world = [], []
    for name in files:
        x, sr = sf.read(str(RAVDESS / name), dtype="float32")
        yaapt.append(extract_f0(x, sr))
        world.append(extract_f0(x, sr, F0Config(backend="world")))
        assert yaapt[-1].shape == world[-1].shape == (num_frames(x.size),)
    assert voicing_agreement(world, yaapt) >= 0.88
    assert gross_pitch_error(world, yaapt) <= 0.2
    both = [(w > 0) & (y > 0) for w, y in zip(world, yaapt)]
    log_ratio = np.concatenate([np.abs(np.log(w[b] / y[b])) for w, y, b in zip(world, yaapt, both)])
    assert np.median(log_ratio) < 0.05

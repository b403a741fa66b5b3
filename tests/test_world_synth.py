"""WORLD synthesiser backend: duration warping, imposed F0, faithful re-synthesis."""

from __future__ import annotations

import numpy as np
import pytest

from emotk.errors import AudioError, DataError

SR = 16000


def _vowels(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 3 s speech-like signal (glottal pulses through formant resonators, gliding F0, unvoiced gaps) and its
    50 Hz F0 track."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    f0 = np.concatenate([np.zeros(10), np.linspace(120, 200, 60), np.zeros(10), np.linspace(180, 110, 60),
                         np.zeros(10)])
    f0_s = np.repeat(f0, 320)
    phase = np.cumsum(f0_s / SR)
    pulses = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(float)
    x = pulses + 0.01 * rng.standard_normal(f0_s.size)
    for fc, bw in [(700, 100), (1200, 120), (2600, 200)]:
        r, th = np.exp(-np.pi * bw / SR), 2 * np.pi * fc / SR
        x = lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], x)
    return (0.5 * x / np.abs(x).max()).astype(np.float32), f0


def _logmel(x: np.ndarray) -> np.ndarray:
    import torch

    from emotk.models.zest.vocoder.config import LossConfig
    from emotk.models.zest.vocoder.losses import MelSpectrogram

    return MelSpectrogram(LossConfig())(torch.as_tensor(x).unsqueeze(0))[0].numpy()


def _world_f0(x: np.ndarray) -> np.ndarray:
    from emotk.features.f0 import F0Config, extract_f0

    return extract_f0(x, SR, F0Config(backend="world"))


def test_identity_resynthesis_resembles_the_source():
    from emotk.features.world_synth import world_synthesize

    x, f0 = _vowels()
    d = np.full(30, 5)
    y = world_synthesize(x, SR, d, d, f0)
    assert y.dtype == np.float32 and y.shape == x.shape
    dist = np.abs(_logmel(x) - _logmel(y)).mean()
    shifted = np.roll(x, 4000)  # same sound, wrong place: what a large distance looks like
    assert dist < 0.5 * np.abs(_logmel(x) - _logmel(shifted)).mean()
    assert dist < 1.0, dist


def test_output_f0_tracks_the_imposed_contour():
    from emotk.features.world_synth import world_synthesize

    x, f0 = _vowels()
    d = np.full(30, 5)
    target = 1.3 * f0  # 30 % higher, same voicing
    y = world_synthesize(x, SR, d, d, target)
    measured = _world_f0(y)
    both = (target > 0) & (measured > 0)
    assert np.mean((target > 0) == (measured > 0)) > 0.9
    cents = np.abs(1200 * np.log2(measured[both] / target[both]))
    assert np.median(cents) < 20, np.median(cents)
    unvoiced = world_synthesize(x, SR, d, d, np.zeros_like(f0))
    assert np.mean(_world_f0(unvoiced) > 0) < 0.1  # F0 = 0 everywhere: no periodic excitation


def test_length_follows_predicted_durations_and_segments_warp():
    from emotk.features.world_synth import warp_map, world_synthesize

    x, f0 = _vowels()
    d_src = np.full(30, 5)
    rng = np.random.default_rng(0)
    d_out = rng.integers(2, 9, 30)
    d_out[3] = 0  # a dropped token
    f0_out = np.repeat(np.where(f0[::5] > 0, 150.0, 0.0), d_out)
    y = world_synthesize(x, SR, d_src, d_out, f0_out)
    assert y.shape == (int(d_out.sum()) * 320,)
    assert np.isfinite(y).all() and np.abs(y).max() > 0.01
    # output frame k of segment i reads source frames of segment i only
    pos = warp_map(d_src, np.array([10, 2]), 4)[:40]  # first segment stretched 5 -> 10 frames
    assert pos.min() >= -0.5 and pos.max() <= 5 * 4 - 0.5
    assert np.all(np.diff(pos) > 0)
    # stretching by 2 doubles the length of a voiced stretch in the output's F0
    y2 = world_synthesize(x, SR, d_src, d_src * 2, np.repeat(f0, 2))
    assert y2.shape == (2 * x.size,)
    assert abs(np.sum(_world_f0(y2) > 0) - 2 * np.sum(_world_f0(x) > 0)) < 16


def test_bad_inputs_are_one_line_errors():
    from emotk.features.world_synth import world_synthesize

    x, f0 = _vowels()
    d = np.full(30, 5)
    with pytest.raises(DataError, match="30 source durations but 29"):
        world_synthesize(x, SR, d, d[:-1], f0)
    with pytest.raises(DataError, match="f0_conv has 149 frames"):
        world_synthesize(x, SR, d, d, f0[:-1])
    with pytest.raises(DataError, match="cover 300 frames"):
        world_synthesize(x, SR, d * 2, d, f0)
    with pytest.raises(AudioError, match="mono"):
        world_synthesize(np.stack([x, x]), SR, d, d, f0)
    with pytest.raises(DataError, match="divide"):
        world_synthesize(x, SR, d, d, f0, frame_period_ms=3.0)

"""The one frame-alignment rule every 50 Hz feature in emotk follows.

Content tokens come from a HuBERT-style CNN (receptive field 400 samples, stride 320) applied to the
waveform padded by 40 samples on each side (soft-HuBERT convention), which yields
``floor((N + 80 - 400) / 320) + 1 == N // 320`` frames for N >= 320 samples. Every other 50 Hz stream
(F0, acoustic targets, emotion frames) is cut or padded to exactly this count, so frame ``i`` of every
stream describes samples ``[i*320, (i+1)*320)``.
"""

from __future__ import annotations

import numpy as np

from emotk.core.audio import HOP


def num_frames(num_samples: int, hop: int = HOP) -> int:
    """Number of 50 Hz frames for ``num_samples`` of 16 kHz audio (0 for fewer than one hop)."""
    return max(0, int(num_samples) // hop)


def fit_frames(x: np.ndarray, n: int, pad_value: float = 0.0) -> np.ndarray:
    """Cut or pad (with ``pad_value``, or by repeating the last frame when ``pad_value`` is None)
    the first axis of ``x`` to exactly ``n`` frames."""
    if x.shape[0] >= n:
        return x[:n]
    pad = n - x.shape[0]
    if pad_value is None and x.shape[0] > 0:
        tail = np.repeat(x[-1:], pad, axis=0)
    else:
        tail = np.full((pad,) + x.shape[1:], 0.0 if pad_value is None else pad_value, dtype=x.dtype)
    return np.concatenate([x, tail], axis=0)

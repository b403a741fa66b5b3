"""Audio constants shared by every module: emotk works at one sample rate and one frame rate.

Every waveform inside emotk is mono float32 at :data:`SAMPLE_RATE` (``emotk.data.audio`` resamples on
load); frame-level features (F0, content tokens, acoustic targets) run at :data:`FRAME_RATE` frames per
second, :data:`HOP` samples apart.
"""

from __future__ import annotations

SAMPLE_RATE = 16000  # Hz
HOP = 320  # samples per frame at SAMPLE_RATE
FRAME_RATE = SAMPLE_RATE // HOP  # 50 frames per second

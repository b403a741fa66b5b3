"""The S2S-ZEST vocoder: a 16 kHz BigVGAN generator conditioned on content tokens, F0, speaker and emotion.

One concept per module, as in NVIDIA BigVGAN: ``activations`` (SnakeBeta), ``resample`` (anti-aliased x2 filters),
``amp`` (anti-aliased multi-periodicity blocks), ``generator``, ``discriminators`` (MPD + MRD), ``losses``,
``config`` (every hyper-parameter), ``data`` (training items and segments), ``model`` (the GAN module),
``task`` (the GAN TrainTask and :func:`~.task.train`, the train entry point), ``export`` (generator-only
artefact: :func:`export_generator`, :func:`load_generator`) and ``infer`` (chunked, constant-memory
synthesis). Importing this package is cheap; torch loads with the sub-modules.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "VocoderConfig": "emotk.models.zest.vocoder.config",
    "GeneratorConfig": "emotk.models.zest.vocoder.config",
    "VocoderGenerator": "emotk.models.zest.vocoder.generator",
    "train": "emotk.models.zest.vocoder.task",
    "export_generator": "emotk.models.zest.vocoder.export",
    "load_generator": "emotk.models.zest.vocoder.export",
    "synthesize": "emotk.models.zest.vocoder.infer",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'emotk.models.zest.vocoder' has no attribute {name!r}")

"""SSL / ASR speech encoders ("upstreams") behind one interface: all hidden layers + valid lengths.

One call, ``upstream(wavs)``, takes a list of 16 kHz mono float waveforms and returns an
:class:`UpstreamOutput`: every hidden layer stacked as ``hidden`` (B, L, T, D), the number of valid
frames per item, the frame rate, the layer count and the width. Nothing is hand-written: layer count,
width, frame rate and the shortest usable input are *probed* when the adapter is built (a tiny dummy
input goes through the model, the model's own length function gives the stride), and the probe asserts
that the frame count it sees is the one the length function predicts.

Adapters (one class per family of models; a new upstream such as CARE is one more class registered with
:func:`register_upstream`):

* :class:`HFSpeechUpstream` -- transformers WavLM / HuBERT / wav2vec2 / data2vec-audio (and their
  ``*ForCTC`` / ``*ForSequenceClassification`` wrappers). Padding never changes an item's output:
  see the class docstring for how group-norm models (``feat_extract_norm == "group"``) are handled.
* :class:`WhisperEncoderUpstream` -- the Whisper encoder, from transformers (``WhisperModel``,
  ``WhisperForConditionalGeneration``, ``WhisperEncoder``), openai-whisper (``whisper.model.Whisper``) or emotk's
  own masked encoder (:mod:`emotk.features.encoders.whisper`, weights read from CTranslate2 files by
  :mod:`emotk.hub.ct2_whisper`): all layers, ``ceil(samples / 320)`` frames; ``window="full"`` pads inputs to
  Whisper's 30 s window, ``window="native"`` (emotk's encoder, its default) encodes each at its own length in
  masked batches (longer inputs: consecutive windows, frames concatenated).
* :class:`CT2WhisperUpstream` -- a faster-whisper (CTranslate2) ``WhisperModel``: last layer only.
* :class:`SoftHubertUpstream` -- emotk's soft-HuBERT (:mod:`emotk.features.encoders.soft_hubert`).
* :class:`ModuleUpstream` -- any ``nn.Module`` that follows the :class:`LayeredSpeechEncoder` protocol
  (CARE and other emotk encoders).

:func:`extract` runs an upstream over many utterances with length-bucketed batches (padding is masked,
results come back in input order), optional layer selection and float16 storage.

Modules: ``base`` (output type, protocol, registry, the :class:`Upstream` base), ``hf``, ``whisper``,
``soft_hubert``, ``module`` (one adapter family each; imported here in registration order, which is the order
auto-detection tries them), ``batching`` (:func:`plan_batches`, :func:`extract`).

This package imports torch at import time (the classes are ``nn.Module`` s); callers on the CLI path import
it lazily. transformers / openai-whisper / faster-whisper are imported only inside the functions that need
them.
"""

from __future__ import annotations

from emotk.features.upstream.base import (
    UPSTREAM_PREFIXES,
    LayeredSpeechEncoder,
    Upstream,
    UpstreamOutput,
    WaveformLike,
    register_upstream,
    upstream_kinds,
)
from emotk.features.upstream.batching import DEFAULT_BATCH_SECONDS, extract, padding_overhead, plan_batches

# Adapters register on import; auto-detection tries them in this order.
from emotk.features.upstream.hf import HFSpeechUpstream

# isort: split
from emotk.features.upstream.whisper import CT2WhisperUpstream, WhisperEncoderUpstream

# isort: split
from emotk.features.upstream.module import ModuleUpstream

# isort: split
from emotk.features.upstream.soft_hubert import SoftHubertUpstream

__all__ = [
    "CT2WhisperUpstream", "DEFAULT_BATCH_SECONDS", "HFSpeechUpstream", "LayeredSpeechEncoder", "ModuleUpstream",
    "SoftHubertUpstream", "UPSTREAM_PREFIXES", "Upstream", "UpstreamOutput", "WaveformLike", "WhisperEncoderUpstream",
    "extract", "padding_overhead", "plan_batches", "register_upstream", "upstream_kinds",
]

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
  ``WhisperForConditionalGeneration``, ``WhisperEncoder``) or openai-whisper (``whisper.model.Whisper``):
  all layers; inputs are padded to Whisper's 30 s window and sliced back to ``ceil(samples / 320)`` frames
  (longer inputs: consecutive windows, frames concatenated).
* :class:`CT2WhisperUpstream` -- a faster-whisper (CTranslate2) ``WhisperModel``: last layer only.
* :class:`SoftHubertUpstream` -- emotk's soft-HuBERT (:mod:`emotk.features.encoders.soft_hubert`).
* :class:`ModuleUpstream` -- any ``nn.Module`` that follows the :class:`LayeredSpeechEncoder` protocol
  (CARE and other emotk encoders).

:func:`extract` runs an upstream over many utterances with length-bucketed batches (padding is masked,
results come back in input order), optional layer selection and float16 storage.

This module imports torch at import time (the classes are ``nn.Module`` s); callers on the CLI path import
it lazily. transformers / openai-whisper / faster-whisper are imported only inside the functions that need
them.
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import nn

from emotk.errors import AudioError, UsageError

SAMPLE_RATE = 16000
# Seconds of audio the probe pushes through a model (HF CNNs need >= 400 samples; Whisper pads anyway).
_PROBE_SECONDS = 0.5
# Lengths used to measure the stride from a length function: long enough to be exact for any CNN.
_STRIDE_PROBE_SAMPLES = (10 * SAMPLE_RATE, 20 * SAMPLE_RATE)

WaveformLike = Any  # torch.Tensor | np.ndarray, (S,) float


# ----------------------------------------------------------------------------------------------------------
# Output container


@dataclass
class UpstreamOutput:
    """All hidden layers of a batch.

    hidden: (B, L, T, D) float tensor; frames ``t >= lengths[b]`` are padding and are set to 0.
    lengths: (B,) LongTensor, valid frames per item.
    frame_rate: frames per second (50.0 for every 20 ms model).
    num_layers: L; dim: D; layer_names: L names, e.g. ("input", "layer_1", ..., "layer_12").
    """

    hidden: torch.Tensor
    lengths: torch.Tensor
    frame_rate: float
    num_layers: int
    dim: int
    layer_names: tuple[str, ...]

    @property
    def mask(self) -> torch.Tensor:
        """(B, T) bool, True on valid frames."""
        t = torch.arange(self.hidden.shape[2], device=self.lengths.device)
        return t[None, :] < self.lengths[:, None]

    def unbatch(self) -> list[torch.Tensor]:
        """The B items without padding: a list of (L, T_i, D) tensors (views into ``hidden``)."""
        return [self.hidden[b, :, : int(n)] for b, n in enumerate(self.lengths.tolist())]


# ----------------------------------------------------------------------------------------------------------
# Protocol for emotk's own modules


@runtime_checkable
class LayeredSpeechEncoder(Protocol):
    """What an ``nn.Module`` exposes to be wrapped by :class:`ModuleUpstream` (soft-HuBERT, CARE, ...).

    ``forward_layers(wavs, lengths)``: wavs (B, S) float 16 kHz, zero-padded; lengths (B,) long, valid samples.
    Returns ``(layers, frame_lengths)``: layers is a sequence of L tensors (B, T, D) -- or one (B, L, T, D)
    tensor -- and frame_lengths (B,) long the valid frames per item. The module is responsible for making
    an item's valid frames independent of its batch mates (mask its padding).
    ``output_lengths(num_samples)``: (N,) long samples -> (N,) long frames, without running the model.
    Optional attribute ``layer_names``: a sequence of L strings.
    """

    def forward_layers(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[Any, torch.Tensor]: ...

    def output_lengths(self, num_samples: torch.Tensor) -> torch.Tensor: ...


# ----------------------------------------------------------------------------------------------------------
# Registry of adapters

_ADAPTERS: dict[str, type["Upstream"]] = {}


def register_upstream(cls: type["Upstream"]) -> type["Upstream"]:
    """Class decorator: make an adapter known to :meth:`Upstream.from_model` under ``cls.kinds``.

    An adapter defines ``kinds`` (names accepted by ``from_model(kind=...)``), ``accepts(model) -> bool``
    (auto-detection), ``__init__(model, trainable=..., **options)``, ``output_lengths`` and ``_encode``.
    """
    for kind in cls.kinds:
        _ADAPTERS[kind] = cls
    return cls


# Upstream names "PREFIX:WHERE" of models trained by emotk -> "module:function" building the encoder module,
# called as function(name, path=path, device=device) (imported only when such a name is used).
UPSTREAM_PREFIXES: dict[str, str] = {
    "care": "emotk.models.care.upstream:upstream_module",
    "care-semantic": "emotk.models.care.upstream:upstream_module",
    "care-acoustic": "emotk.models.care.upstream:upstream_module",
}


def upstream_kinds() -> list[str]:
    """Sorted names accepted by ``Upstream.from_model(kind=...)``."""
    return sorted(_ADAPTERS)


# ----------------------------------------------------------------------------------------------------------
# Base class


class Upstream(nn.Module, metaclass=abc.ABCMeta):
    """Base of every upstream adapter.

    Call with a list of 1-D 16 kHz float waveforms (tensors or arrays; or a zero-padded (B, S) tensor plus
    ``lengths``) -> :class:`UpstreamOutput`. Probed at construction: ``num_layers``, ``dim``,
    ``frame_rate`` (Hz), ``hop`` (samples per frame), ``min_samples`` (shortest input that gives a frame).

    Frozen (default): the wrapped model stays in eval mode whatever ``.train()`` says, its parameters have
    ``requires_grad=False`` and the forward runs under ``torch.no_grad()``. Trainable: parameters require
    grad and ``.train()``/``.eval()`` behave as usual (dropout, SpecAugment, LayerDrop of the model apply).

    Subclasses implement ``output_lengths(num_samples) -> frames`` and
    ``_encode(wavs: list[(S_i,) tensors], lengths: (B,) long) -> (layers: list of L (B, T, D), frames: (B,))``
    and call ``self._probe()`` at the end of ``__init__``.
    """

    kinds: ClassVar[tuple[str, ...]] = ()
    sample_rate: int = SAMPLE_RATE

    def __init__(self, *, trainable: bool = False) -> None:
        super().__init__()
        self._frozen = not trainable
        self.num_layers = 0
        self.dim = 0
        self.frame_rate = 0.0
        self.hop = 0.0
        self.min_samples = 1
        self.layer_names: tuple[str, ...] = ()

    # -- construction ------------------------------------------------------------------------------------

    @classmethod
    def accepts(cls, model: Any) -> bool:
        """Whether this adapter recognises ``model`` (used by :meth:`from_model` when ``kind`` is None)."""
        return False

    @staticmethod
    def from_model(model: Any, kind: str | None = None, *, trainable: bool | None = None,
                   **options: Any) -> "Upstream":
        """Wrap a loaded model in the adapter that fits it.

        model: a transformers WavLM/HuBERT/wav2vec2/data2vec-audio/Whisper model, an openai-whisper model,
        a faster-whisper WhisperModel, an ``nn.Module`` following :class:`LayeredSpeechEncoder`, or an
        :class:`Upstream` (returned as is, with ``trainable`` applied).
        kind: force an adapter (see :func:`upstream_kinds`); None -> detect. trainable: None = frozen for a
        new adapter, unchanged for an Upstream. options: adapter keywords (e.g. ``normalize``, ``freeze_cnn``).
        """
        if isinstance(model, Upstream):
            return model if trainable is None else model.set_trainable(trainable)
        trainable = bool(trainable)
        if kind is not None:
            if kind not in _ADAPTERS:
                raise UsageError(f"unknown upstream kind {kind!r}; choose one of: {', '.join(upstream_kinds())}")
            return _ADAPTERS[kind](model, trainable=trainable, **options)
        for cls in dict.fromkeys(_ADAPTERS.values()):  # registration order, each class once
            if cls.accepts(model):
                return cls(model, trainable=trainable, **options)
        raise UsageError(
            f"no upstream adapter for {type(model).__module__}.{type(model).__name__}; supported: transformers "
            "WavLM/HuBERT/wav2vec2/data2vec-audio/Whisper, openai-whisper, faster-whisper, or an nn.Module with "
            "forward_layers(wavs, lengths) and output_lengths(num_samples)"
        )

    @staticmethod
    def from_hub(name: str, path: str | Path | None = None, *, trainable: bool = False, device: str = "cpu",
                 **options: Any) -> "Upstream":
        """Load a registered pretrained model with ``emotk.hub.load(name, path=path, device=device)`` and wrap it.

        name: registry name ("wavlm-base-plus", "tiny-wavlm", "whisper-tiny.en-ct2", ...); path: explicit
        location (overrides the registry's search). A name ``PREFIX:WHERE`` with a prefix of
        :data:`UPSTREAM_PREFIXES` (``care:RUN_DIR``, ``care-semantic:DIR``, ...) loads an emotk-trained encoder.
        Returns the adapter on ``device``.
        """
        prefix = name.partition(":")[0] if ":" in name else None
        if prefix in UPSTREAM_PREFIXES:  # emotk-trained upstreams: "care:RUN_DIR", ...
            import importlib

            module, func = UPSTREAM_PREFIXES[prefix].split(":")
            encoder = getattr(importlib.import_module(module), func)(name, path=path, device=device)
            return Upstream.from_model(encoder, trainable=trainable, **options).to(device)
        from emotk import hub  # lazy: the hub pulls in transformers

        loaded = hub.load(name, path=path, device=device)
        model = getattr(loaded, "model", loaded)
        front_end = getattr(loaded, "feature_extractor", None)
        if HFSpeechUpstream.accepts(model) and hasattr(front_end, "do_normalize"):
            options.setdefault("normalize", bool(front_end.do_normalize))
        up = Upstream.from_model(model, trainable=trainable, **options)
        return up.to(device)

    def _probe(self) -> None:
        """Measure stride, frame rate, shortest input, layer count and width; check the length function."""
        n1, n2 = _STRIDE_PROBE_SAMPLES
        f1, f2 = (int(v) for v in self.output_lengths(torch.tensor([n1, n2])).tolist())
        if f2 <= f1:
            raise UsageError(f"{type(self).__name__}: output_lengths does not grow with the input ({n1}->{f1}, "
                             f"{n2}->{f2} frames)")
        self.frame_rate = self.sample_rate * (f2 - f1) / (n2 - n1)
        self.hop = self.sample_rate / self.frame_rate
        self.min_samples = self._smallest_input()

        n = max(self.min_samples, int(_PROBE_SECONDS * self.sample_rate))
        gen = torch.Generator().manual_seed(0)
        dummy = 0.1 * torch.randn(n, generator=gen)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                layers, frames = self._encode([self._to_device(dummy)], torch.tensor([n]))
        finally:
            self.train(was_training)
        expected = int(self.output_lengths(torch.tensor([n]))[0])
        if int(frames[0]) != expected or layers[0].shape[1] < expected:
            raise UsageError(f"{type(self).__name__}: the model gave {layers[0].shape[1]} frames (valid "
                             f"{int(frames[0])}) for {n} samples but its length function says {expected}")
        self.num_layers = len(layers)
        self.dim = int(layers[0].shape[-1])
        names = tuple(self._names(self.num_layers))
        if len(names) != self.num_layers:
            raise UsageError(f"{type(self).__name__}: {len(names)} layer names for {self.num_layers} layers")
        self.layer_names = names

    def _smallest_input(self) -> int:
        """Fewest samples for which ``output_lengths`` gives at least one frame (binary search)."""
        lo, hi = 1, _STRIDE_PROBE_SAMPLES[0]
        while lo < hi:
            mid = (lo + hi) // 2
            if int(self.output_lengths(torch.tensor([mid]))[0]) >= 1:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _names(self, num_layers: int) -> list[str]:
        """Names of the L hidden layers: "input" (the encoder's input embedding) then "layer_1".."layer_N"."""
        return ["input"] + [f"layer_{i}" for i in range(1, num_layers)]

    # -- modes ---------------------------------------------------------------------------------------------

    @property
    def frozen(self) -> bool:
        """True when the upstream is a fixed feature extractor (eval mode, no grads)."""
        return self._frozen

    @property
    def trainable(self) -> bool:
        return not self._frozen

    def set_trainable(self, trainable: bool) -> "Upstream":
        """Switch between frozen (eval, no grad, requires_grad False) and trainable mode. Returns self."""
        self._frozen = not trainable
        for p in self.parameters():
            p.requires_grad_(trainable)
        if self._frozen:
            super().train(False)
        return self

    def train(self, mode: bool = True) -> "Upstream":
        """Like ``nn.Module.train`` but a frozen upstream stays in eval mode."""
        return super().train(mode and not self._frozen)

    # -- forward --------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def output_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        """(N,) long samples -> (N,) long valid frames, without running the model."""

    def padded_input_samples(self, num_samples: int) -> int:
        """Samples the model actually processes for an input of ``num_samples`` (Whisper: whole 30 s windows).

        Batch planning uses it to budget compute."""
        return int(num_samples)

    @abc.abstractmethod
    def _encode(self, wavs: list[torch.Tensor], lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """B waveforms (S_i,) on the model's device + their lengths (B,) -> (L tensors (B, T >= frames, D),
        valid frames (B,) long). Runs under the grad mode chosen by :meth:`forward`."""

    def _device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def _dtype(self) -> torch.dtype:
        for p in self.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    def _to_device(self, wav: torch.Tensor) -> torch.Tensor:
        return wav.to(self._device(), self._dtype())

    def forward(self, wavs: Sequence[WaveformLike] | torch.Tensor, lengths: Sequence[int] | torch.Tensor | None = None,
                layers: Sequence[int] | None = None) -> UpstreamOutput:
        """Encode a batch.

        wavs: list of B 1-D float waveforms at 16 kHz (torch or numpy, any length >= ``min_samples``), or a
        zero-padded (B, S) tensor/array together with ``lengths`` (B valid sample counts).
        layers: optional indices (negative allowed) of the layers to keep, in that order.
        Returns :class:`UpstreamOutput` with hidden (B, L, T, D), T = the longest item's frame count.
        """
        items = self._as_items(wavs, lengths)
        n = torch.tensor([int(w.shape[0]) for w in items], dtype=torch.long)
        items = [self._to_device(w) for w in items]
        grad = torch.enable_grad() if (not self._frozen and torch.is_grad_enabled()) else torch.no_grad()
        with grad:
            hidden_layers, frames = self._encode(items, n)
            keep = self._select(layers)
            frames = frames.to(torch.long).cpu()
            t_max = int(frames.max())
            hidden = torch.stack([hidden_layers[i][:, :t_max] for i in keep], dim=1)  # (B, L, T, D)
            pad = (torch.arange(t_max)[None, :] >= frames[:, None]).to(hidden.device)[:, None, :, None]
            hidden = hidden.masked_fill(pad, 0) if hidden.requires_grad else hidden.masked_fill_(pad, 0)
        return UpstreamOutput(hidden=hidden, lengths=frames.to(hidden.device), frame_rate=self.frame_rate,
                              num_layers=len(keep), dim=int(hidden.shape[-1]),
                              layer_names=tuple(self.layer_names[i] for i in keep))

    def _select(self, layers: Sequence[int] | None) -> list[int]:
        if layers is None:
            return list(range(self.num_layers))
        keep = []
        for i in layers:
            if not -self.num_layers <= int(i) < self.num_layers:
                raise UsageError(f"layer {i} does not exist: this upstream has {self.num_layers} layers "
                                 f"(0..{self.num_layers - 1}, or negative from the end)")
            keep.append(int(i) % self.num_layers)
        if not keep:
            raise UsageError("layers=[] selects nothing; pass None for all layers")
        return keep

    def _as_items(self, wavs: Any, lengths: Any) -> list[torch.Tensor]:
        """Validate the input and return B float32 CPU tensors (S_i,)."""
        if isinstance(wavs, (torch.Tensor, np.ndarray)) and wavs.ndim == 2:
            if lengths is None:
                raise UsageError("a padded (B, S) batch needs lengths (valid samples per item); "
                                 "or pass a list of 1-D waveforms")
            lens = [int(v) for v in (lengths.tolist() if hasattr(lengths, "tolist") else lengths)]
            if len(lens) != wavs.shape[0]:
                raise UsageError(f"{len(lens)} lengths for a batch of {wavs.shape[0]} waveforms")
            if any(v < 0 or v > wavs.shape[1] for v in lens):
                raise UsageError(f"lengths {lens} do not fit a padded batch of {wavs.shape[1]} samples")
            wavs = [wavs[b, : lens[b]] for b in range(len(lens))]
        elif isinstance(wavs, (torch.Tensor, np.ndarray)):
            raise AudioError(f"expected a list of 1-D waveforms or a padded (B, S) batch, got shape "
                             f"{tuple(wavs.shape)}")
        elif lengths is not None:
            raise UsageError("lengths is only used with a padded (B, S) batch, not with a list of waveforms")
        if len(wavs) == 0:
            raise UsageError("no waveforms given")
        items = []
        for i, w in enumerate(wavs):
            items.append(_check_waveform(w, i, self.min_samples, self.sample_rate))
        return items


def _check_waveform(w: Any, index: int, min_samples: int, sr: int) -> torch.Tensor:
    """One input waveform -> float32 CPU tensor (S,), or AudioError naming the item."""
    t = torch.as_tensor(w) if not isinstance(w, torch.Tensor) else w
    if t.ndim == 2 and 1 in t.shape:
        t = t.reshape(-1)
    if t.ndim != 1:
        raise AudioError(f"item {index}: expected a mono 1-D waveform, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise AudioError(f"item {index}: expected float samples in [-1, 1], got dtype {t.dtype}")
    t = t.detach().to("cpu", torch.float32) if not t.requires_grad else t.to(torch.float32)
    if t.shape[0] < min_samples:
        raise AudioError(f"item {index}: {t.shape[0]} samples ({t.shape[0] / sr * 1000:.1f} ms) is shorter than "
                         f"this upstream's minimum of {min_samples} samples")
    if not bool(torch.isfinite(t).all()):
        raise AudioError(f"item {index}: waveform contains NaN or Inf")
    return t


def _pad(wavs: list[torch.Tensor]) -> torch.Tensor:
    """B tensors (S_i,) -> zero-padded (B, max S_i)."""
    return nn.utils.rnn.pad_sequence(wavs, batch_first=True)


def _sample_mask(lengths: torch.Tensor, total: int, device: torch.device) -> torch.Tensor:
    """(B,) valid samples -> (B, total) long mask (1 = valid), the HF ``attention_mask`` convention."""
    return (torch.arange(total, device=device)[None, :] < lengths.to(device)[:, None]).to(torch.long)


def _ensure_transformers_importable() -> None:
    """Run emotk's torchaudio workaround (transformers imports torchaudio, whose CUDA wheel fails on CPU)."""
    from emotk.compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()


class _FixedOutput(nn.Module):
    """Stands in for a CNN feature encoder: returns precomputed features whatever the input."""

    def __init__(self, features: torch.Tensor) -> None:
        super().__init__()
        self.features = features

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.features


class _PerItemFrames(nn.Module):
    """Applies a (B, T, D) -> (B, T, D) module to each item's valid frames alone; padded frames get 0."""

    def __init__(self, module: nn.Module, frames: torch.Tensor) -> None:
        super().__init__()
        self.inner = module
        self.frames = [int(v) for v in frames.tolist()]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        groups: dict[int, list[int]] = {}
        for b, n in enumerate(self.frames):
            groups.setdefault(n, []).append(b)
        out = hidden.new_zeros(hidden.shape)
        for n, idx in groups.items():
            rows = torch.tensor(idx, device=hidden.device)
            out[rows, :n] = self.inner(hidden[rows, :n])
        return out


@contextlib.contextmanager
def _swapped_submodule(parent: nn.Module, name: str, replacement: nn.Module) -> Iterator[None]:
    """Temporarily replace ``parent.<name>`` (restored even on error; not thread-safe per model)."""
    original = parent._modules[name]
    parent._modules[name] = replacement
    try:
        yield
    finally:
        parent._modules[name] = original


# ----------------------------------------------------------------------------------------------------------
# transformers SSL models


@register_upstream
class HFSpeechUpstream(Upstream):
    """transformers WavLM / HuBERT / wav2vec2 / data2vec-audio (any model with a CNN ``feature_extractor``,
    an ``encoder`` and ``_get_feat_extract_output_lengths``; task wrappers are unwrapped to the base model).

    Layers: ``hidden_states`` of the model, i.e. the encoder input ("input") and each transformer layer
    (num_hidden_layers + 1). Frame lengths come from the model's ``_get_feat_extract_output_lengths``.

    Padding and masks. HF processors set ``return_attention_mask=False`` for models trained on unpadded
    crops with a group-normalised CNN (``feat_extract_norm == "group"``: wav2vec2-base, HuBERT-base,
    WavLM-base) and advise zero-padding without a mask. That makes an item's output depend on its batch
    mates: the GroupNorm after the first conv normalises each channel over *all* time steps, padding
    included, and the transformer attends to the padded frames. Here every item gets exactly the output
    it gets alone (``cnn_mode``):

    * "masked-group-norm" (the HF group-norm CNNs): the padded batch can go through the CNN at once with
      the GroupNorm temporarily replaced by one that takes its statistics over each item's valid frames
      only (the CNN has no padding, so later frames only ever see their own receptive field);
    * "batched" (layer-norm CNNs, ``feat_extract_norm == "layer"``, data2vec-audio): nothing to change;
    * "per-item" (a GroupNorm elsewhere): the CNN can only run per item.

    ``cnn_batching`` picks between running the CNN per item (the padded features then go on) and batched:
    "auto" = per item on CPU, where a batched CNN was measured ~35 % slower (its activations, 512 channels
    at 3.2 kHz, outgrow the caches; benchmarks/upstream_batching.py), batched on accelerators.

    The transformer always gets the mask (HF zeroes the padded frames before the positional convolution),
    and the positional convolution runs per item (data2vec-audio stacks several padded convolutions there,
    which would otherwise carry padding into valid frames).

    normalize: per-utterance zero-mean unit-variance input normalisation (the processor's ``do_normalize``).
    None -> read ``preprocessor_config.json`` beside the model's ``name_or_path`` when it is a local folder,
    else False. freeze_cnn: in trainable mode keep the CNN frozen (the usual fine-tuning recipe).
    cnn_batching: "auto", "per-item" or "batched" (see above; "batched" falls back to per item when
    ``cnn_mode`` is "per-item").
    """

    kinds = ("hf-ssl", "wavlm", "hubert", "wav2vec2", "data2vec-audio")

    def __init__(self, model: nn.Module, *, trainable: bool = False, normalize: bool | None = None,
                 freeze_cnn: bool = False, cnn_batching: str = "auto") -> None:
        super().__init__(trainable=trainable)
        if cnn_batching not in ("auto", "per-item", "batched"):
            raise UsageError(f"cnn_batching must be 'auto', 'per-item' or 'batched', got {cnn_batching!r}")
        self.cnn_batching = cnn_batching
        base = getattr(model, "base_model", model)
        missing = [a for a in ("feature_extractor", "encoder", "_get_feat_extract_output_lengths")
                   if not hasattr(base, a)]
        if missing:
            raise UsageError(f"{type(model).__name__} is not a wav2vec2-style speech model (no {', '.join(missing)})")
        self.model = base
        self.model_type = str(getattr(getattr(base, "config", None), "model_type", type(base).__name__))
        self.normalize = _processor_flag(model, "do_normalize", False) if normalize is None else bool(normalize)
        self.cnn_mode, self._group_norm_layer = _cnn_mode(base.feature_extractor)
        self.freeze_cnn = bool(freeze_cnn)
        sig = inspect.signature(base._get_feat_extract_output_lengths)
        # hidden_states are taken before any output adapter: never count its down-sampling
        self._length_kwargs = {"add_adapter": False} if "add_adapter" in sig.parameters else {}
        self.set_trainable(trainable)
        self._probe()

    @classmethod
    def accepts(cls, model: Any) -> bool:
        base = getattr(model, "base_model", model)
        return (type(base).__module__.startswith("transformers.")
                and all(hasattr(base, a) for a in ("feature_extractor", "encoder", "_get_feat_extract_output_lengths")))

    def set_trainable(self, trainable: bool) -> "HFSpeechUpstream":
        super().set_trainable(trainable)
        if trainable and getattr(self, "freeze_cnn", False):
            for p in self.model.feature_extractor.parameters():
                p.requires_grad_(False)
        return self

    def output_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        n = torch.as_tensor(num_samples, dtype=torch.long)
        out = self.model._get_feat_extract_output_lengths(n, **self._length_kwargs)
        return torch.as_tensor(out, dtype=torch.long).clamp(min=0)

    def _encode(self, wavs: list[torch.Tensor], lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        if self.normalize:
            wavs = [(w - w.mean()) / torch.sqrt(w.var(unbiased=False) + 1e-7) for w in wavs]
        padded = _pad(wavs)
        # no padding -> no mask (the same result; lets attention take its unmasked fast path)
        padding = int(lengths.min()) < padded.shape[1]
        mask = _sample_mask(lengths, padded.shape[1], padded.device) if padding else None
        frames = self.output_lengths(lengths)
        total = int(self.output_lengths(torch.tensor([padded.shape[1]]))[0])
        batched_cnn = self.cnn_mode != "per-item" and (
            self.cnn_batching == "batched" or (self.cnn_batching == "auto" and padded.device.type != "cpu"))
        with contextlib.ExitStack() as stack:
            if len(wavs) > 1 and not batched_cnn:
                features = self._per_item_features(wavs, total)
                stack.enter_context(_swapped_submodule(self.model, "feature_extractor", _FixedOutput(features)))
            elif padding and self.cnn_mode == "masked-group-norm":
                layer = self._group_norm_layer
                conv = layer.conv
                valid = (lengths + 2 * conv.padding[0] - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1) \
                    // conv.stride[0] + 1
                stack.enter_context(_swapped_submodule(layer, "layer_norm", _MaskedGroupNorm(layer.layer_norm, valid)))
            pos_conv = getattr(self.model.encoder, "pos_conv_embed", None)
            if len(wavs) > 1 and pos_conv is not None and int(frames.min()) < total:
                # data2vec-audio stacks several padded convs here: padding would leak into valid frames
                stack.enter_context(_swapped_submodule(self.model.encoder, "pos_conv_embed",
                                                       _PerItemFrames(pos_conv, frames)))
            out = self.model(padded, attention_mask=mask, output_hidden_states=True, return_dict=True)
        return list(out.hidden_states), frames

    def _per_item_features(self, wavs: list[torch.Tensor], total_frames: int) -> torch.Tensor:
        """CNN features of each item alone (equal lengths share a call) -> zero-padded (B, C, total_frames)."""
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(wavs):
            groups.setdefault(int(w.shape[0]), []).append(i)
        feats: list[torch.Tensor | None] = [None] * len(wavs)
        for idx in groups.values():
            out = self.model.feature_extractor(torch.stack([wavs[i] for i in idx]))  # (b, C, T_i)
            for j, i in enumerate(idx):
                feats[i] = out[j]
        return torch.stack([nn.functional.pad(f, (0, total_frames - f.shape[-1])) for f in feats])


def _cnn_mode(feature_extractor: nn.Module) -> tuple[str, nn.Module | None]:
    """How a CNN feature encoder can take a padded batch exactly -> (mode, the conv layer holding the norm).

    "batched": no GroupNorm. "masked-group-norm": one GroupNorm, the ``layer_norm`` of the first of
    ``conv_layers`` right after its ``conv`` (the HF group-norm layout). "per-item": anything else.
    """
    norms = [m for m in feature_extractor.modules() if isinstance(m, nn.GroupNorm)]
    if not norms:
        return "batched", None
    layers = getattr(feature_extractor, "conv_layers", None)
    first = layers[0] if layers is not None and len(layers) else None
    if (len(norms) == 1 and first is not None and getattr(first, "layer_norm", None) is norms[0]
            and isinstance(getattr(first, "conv", None), nn.Conv1d)):
        return "masked-group-norm", first
    return "per-item", None


class _MaskedGroupNorm(nn.Module):
    """A GroupNorm whose statistics come from each item's first ``valid[b]`` time steps only.

    Input (B, C, T); same affine parameters and eps as the wrapped ``nn.GroupNorm``; frames beyond the
    valid ones are normalised with the item's statistics too (they are padding and never reach a valid
    output of the CNN)."""

    def __init__(self, norm: nn.GroupNorm, valid: torch.Tensor) -> None:
        super().__init__()
        self.norm = norm
        self.valid = valid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        g = self.norm.num_groups
        valid = self.valid.to(x.device)
        mask = (torch.arange(t, device=x.device)[None, :] < valid[:, None]).to(x.dtype)[:, None, None, :]
        xg = x.reshape(b, g, c // g, t)
        count = valid.to(x.dtype)[:, None, None, None] * (c // g)
        mean = (xg * mask).sum(dim=(2, 3), keepdim=True) / count
        var = (((xg - mean) * mask) ** 2).sum(dim=(2, 3), keepdim=True) / count
        y = ((xg - mean) / torch.sqrt(var + self.norm.eps)).reshape(b, c, t)
        if self.norm.affine:
            y = y * self.norm.weight[None, :, None] + self.norm.bias[None, :, None]
        return y


def _processor_flag(model: Any, key: str, default: bool) -> bool:
    """A boolean from ``preprocessor_config.json`` in the model's local folder, else ``default``."""
    where = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", "")
    path = Path(str(where)) / "preprocessor_config.json" if where else None
    if path is None or not path.is_file():
        return default
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get(key, default)
    except (OSError, ValueError):
        return default
    return bool(value)


# ----------------------------------------------------------------------------------------------------------
# Whisper (transformers, openai-whisper, CTranslate2)


class _WhisperWindows(Upstream):
    """Shared logic of the Whisper adapters: fixed windows, valid-frame arithmetic, long inputs.

    Whisper encodes a fixed window (30 s for the released models: ``positions`` output frames, each
    ``stride`` mel frames of ``mel_hop`` samples). Every input is zero-padded to the window, so an item's
    output never depends on its batch mates. The valid frames of n samples are
    ``ceil(ceil(n / mel_hop) / stride)`` (= ``ceil(n / 320)``); an input longer than the window is cut into
    consecutive windows whose valid frames are concatenated (same formula, as the window is a whole number
    of frames).
    """

    mel_hop: int
    stride: int
    positions: int

    @property
    def window_samples(self) -> int:
        return self.positions * self.stride * self.mel_hop

    @property
    def mel_frames(self) -> int:
        return self.positions * self.stride

    def output_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        n = torch.as_tensor(num_samples, dtype=torch.long)
        mel = (n + self.mel_hop - 1) // self.mel_hop
        return (mel + self.stride - 1) // self.stride

    def padded_input_samples(self, num_samples: int) -> int:
        w = self.window_samples
        return max(1, -(-int(num_samples) // w)) * w

    def _windows(self, wavs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
        """Cut each item into windows -> (chunks, [(item, valid frames of the chunk)])."""
        w = self.window_samples
        chunks, where = [], []
        for b, wav in enumerate(wavs):
            for start in range(0, wav.shape[0], w):
                piece = wav[start: start + w]
                chunks.append(piece)
                where.append((b, int(self.output_lengths(torch.tensor([piece.shape[0]]))[0])))
        return chunks, where

    def _assemble(self, layers: list[torch.Tensor], where: list[tuple[int, int]], batch: int) -> list[torch.Tensor]:
        """Per-chunk layers (C, positions, D) -> per-item layers (B, T_max, D), valid frames concatenated."""
        out = []
        for h in layers:
            parts: list[list[torch.Tensor]] = [[] for _ in range(batch)]
            for c, (b, n) in enumerate(where):
                parts[b].append(h[c, :n])
            out.append(nn.utils.rnn.pad_sequence([torch.cat(p, dim=0) for p in parts], batch_first=True))
        return out


@register_upstream
class WhisperEncoderUpstream(_WhisperWindows):
    """The Whisper encoder from transformers or openai-whisper; all layers.

    Layers: the embedding (convs + positions, "input"), the output of each block, and for the last block
    the output after the final LayerNorm (the encoder output, as transformers reports it), so
    num_layers = encoder layers + 1. Window, hop and stride are read from the model (see
    :class:`_WhisperWindows`). The log-mel front end is the model family's own: transformers'
    ``WhisperFeatureExtractor`` or openai-whisper's ``log_mel_spectrogram`` on audio padded to the window.
    """

    kinds = ("whisper", "whisper-hf", "whisper-pt")

    def __init__(self, model: Any, *, trainable: bool = False) -> None:
        super().__init__(trainable=trainable)
        if _is_openai_whisper(model):
            import whisper.audio as wa  # lazy

            encoder = model.encoder if hasattr(model, "encoder") else model
            self.backend = "openai"
            self.encoder = encoder
            self.n_mels = int(encoder.conv1.in_channels)
            self.mel_hop = int(wa.HOP_LENGTH)
            self.positions = int(encoder.positional_embedding.shape[0])
        else:
            encoder = model.get_encoder() if hasattr(model, "get_encoder") else model
            if not hasattr(encoder, "embed_positions") or not hasattr(encoder, "conv1"):
                raise UsageError(f"{type(model).__name__} is not a Whisper model "
                                 "(no encoder with conv1/embed_positions)")
            self.backend = "hf"
            self.encoder = encoder
            self.n_mels = int(encoder.config.num_mel_bins)
            self.positions = int(encoder.config.max_source_positions)
        self.stride = int(encoder.conv1.stride[0]) * int(encoder.conv2.stride[0])
        if self.backend == "hf":
            _ensure_transformers_importable()
            from transformers import WhisperFeatureExtractor

            hop = WhisperFeatureExtractor().hop_length
            seconds = self.positions * self.stride * hop / SAMPLE_RATE
            if seconds != int(seconds):
                raise UsageError(f"Whisper encoder window of {seconds} s is not a whole number of seconds")
            self._fe = WhisperFeatureExtractor(feature_size=self.n_mels, sampling_rate=SAMPLE_RATE,
                                               hop_length=hop, chunk_length=int(seconds))
            self.mel_hop = int(self._fe.hop_length)
        self.set_trainable(trainable)
        self._probe()

    @classmethod
    def accepts(cls, model: Any) -> bool:
        if _is_openai_whisper(model):
            return True
        cfg = getattr(model, "config", None)
        return type(model).__module__.startswith("transformers.") and getattr(cfg, "model_type", "") == "whisper"

    def _encode(self, wavs: list[torch.Tensor], lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        chunks, where = self._windows(wavs)
        if self.backend == "hf":
            feats = self._fe([c.detach().float().cpu().numpy() for c in chunks], sampling_rate=SAMPLE_RATE,
                             return_tensors="pt", padding="max_length", max_length=self.window_samples,
                             device=str(chunks[0].device))
            mel = feats["input_features"].to(chunks[0].device, self._dtype())
            layers = list(self.encoder(mel, output_hidden_states=True, return_dict=True).hidden_states)
        else:
            layers = self._encode_openai(chunks)
        return self._assemble(layers, where, len(wavs)), self.output_lengths(lengths)

    def _encode_openai(self, chunks: list[torch.Tensor]) -> list[torch.Tensor]:
        import whisper.audio as wa

        mel = torch.stack([wa.log_mel_spectrogram(wa.pad_or_trim(c.float(), self.window_samples), self.n_mels)
                           for c in chunks])[..., : self.mel_frames].to(self._dtype())
        collected: list[torch.Tensor] = []
        blocks = list(self.encoder.blocks)
        handles = [blocks[0].register_forward_pre_hook(lambda m, args: collected.append(args[0]))]
        handles += [b.register_forward_hook(lambda m, args, out: collected.append(out)) for b in blocks[:-1]]
        try:
            final = self.encoder(mel)
        finally:
            for h in handles:
                h.remove()
        return collected + [final]


def _is_openai_whisper(model: Any) -> bool:
    mod = type(model).__module__
    encoder = getattr(model, "encoder", None)
    return mod.startswith("whisper.") and (hasattr(model, "blocks") or hasattr(encoder, "blocks"))


@register_upstream
class CT2WhisperUpstream(_WhisperWindows):
    """A faster-whisper ``WhisperModel`` (CTranslate2): the encoder output only (one layer, "encoder_output").

    The audio is zero-padded to the window before the log-mel (as openai-whisper and transformers do),
    encoded in one CTranslate2 call per batch (``model.model.encode``; the StorageView is copied to a numpy
    array) and sliced to the valid frames. Not trainable; the wrapped model keeps its own device
    (``WhisperModel(..., device=...)``).
    """

    kinds = ("whisper-ct2",)

    def __init__(self, model: Any, *, trainable: bool = False) -> None:
        if trainable:
            raise UsageError("a CTranslate2 Whisper model cannot be fine-tuned; load a transformers or openai-whisper "
                             "checkpoint of the same model for a trainable upstream")
        super().__init__(trainable=False)
        if not (hasattr(model, "model") and hasattr(model, "feature_extractor")):
            raise UsageError(f"{type(model).__name__} is not a faster_whisper.WhisperModel")
        self.whisper = model
        fe = model.feature_extractor
        self.mel_hop = int(fe.hop_length)
        # the conv stride, probed from the encoder on a short input (mel frames in / frames out)
        probe_frames = 200
        out = self._run(np.zeros((1, int(model.model.n_mels), probe_frames), dtype=np.float32))
        self.stride = max(1, round(probe_frames / int(out.shape[1])))
        self.positions = int(fe.nb_max_frames) // self.stride
        self._probe()

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return type(model).__module__.startswith("faster_whisper")

    def set_trainable(self, trainable: bool) -> "CT2WhisperUpstream":
        if trainable:
            raise UsageError("a CTranslate2 Whisper model cannot be fine-tuned")
        return super().set_trainable(False)

    def _names(self, num_layers: int) -> list[str]:
        return ["encoder_output"]

    def _run(self, features: np.ndarray) -> np.ndarray:
        import ctranslate2

        storage = ctranslate2.StorageView.from_array(np.ascontiguousarray(features, dtype=np.float32))
        out = self.whisper.model.encode(storage, to_cpu=True)
        return np.asarray(out, dtype=np.float32)

    def _encode(self, wavs: list[torch.Tensor], lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        chunks, where = self._windows(wavs)
        fe = self.whisper.feature_extractor
        mels = []
        for c in chunks:
            a = c.detach().float().cpu().numpy()
            a = np.pad(a, (0, self.window_samples - a.shape[0]))
            mels.append(fe(a, padding=0)[:, : self.mel_frames])
        out = torch.from_numpy(self._run(np.stack(mels)))
        return self._assemble([out], where, len(wavs)), self.output_lengths(lengths)


# ----------------------------------------------------------------------------------------------------------
# emotk modules (soft-HuBERT, CARE, ...)


@register_upstream
class ModuleUpstream(Upstream):
    """Any ``nn.Module`` following :class:`LayeredSpeechEncoder` (``forward_layers`` + ``output_lengths``)."""

    kinds = ("module",)

    def __init__(self, module: nn.Module, *, trainable: bool = False) -> None:
        super().__init__(trainable=trainable)
        if not isinstance(module, LayeredSpeechEncoder):
            raise UsageError(f"{type(module).__name__} does not follow LayeredSpeechEncoder: it needs "
                             "forward_layers(wavs, lengths) -> (layers, frame_lengths) and output_lengths(num_samples)")
        self.module = module
        self.set_trainable(trainable)
        self._probe()

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return isinstance(model, nn.Module) and isinstance(model, LayeredSpeechEncoder)

    def output_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        out = self.module.output_lengths(torch.as_tensor(num_samples, dtype=torch.long))
        return torch.as_tensor(out, dtype=torch.long)

    def _names(self, num_layers: int) -> list[str]:
        names = getattr(self.module, "layer_names", None)
        return list(names) if names is not None else [f"layer_{i}" for i in range(num_layers)]

    def _encode(self, wavs: list[torch.Tensor], lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        padded = _pad(wavs)
        layers, frames = self.module.forward_layers(padded, lengths.to(padded.device))
        if isinstance(layers, torch.Tensor):
            if layers.ndim != 4:
                raise UsageError(f"{type(self.module).__name__}.forward_layers returned a tensor of shape "
                                 f"{tuple(layers.shape)}; expected (B, L, T, D) or a list of (B, T, D)")
            layers = list(layers.unbind(1))
        return list(layers), torch.as_tensor(frames, dtype=torch.long)


@register_upstream
class SoftHubertUpstream(Upstream):
    """emotk's soft-HuBERT (:mod:`emotk.features.encoders.soft_hubert`): its transformer's hidden states,
    "input" and one per layer (num_layers + 1, hidden_size wide; the 256-d soft units are ``model.units``).

    The input is padded by the model's 40 samples on each side, so N samples give N // 320 frames
    (:mod:`emotk.features.frames`). The model has no padding mask (its group norm, positional convolution and
    attention all see padding), so items of different lengths are encoded separately (equal lengths share a
    call): every item gets exactly its single-item output.
    """

    kinds = ("soft-hubert",)

    def __init__(self, model: nn.Module, *, trainable: bool = False) -> None:
        super().__init__(trainable=trainable)
        from emotk.features.encoders.soft_hubert import PAD

        self.model = model
        self.pad = int(PAD)
        self._convs = [(int(m.kernel_size[0]), int(m.stride[0]))
                       for m in model.feature_extractor.modules() if isinstance(m, nn.Conv1d)]
        self.set_trainable(trainable)
        self._probe()

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return (type(model).__name__ == "SoftHubert" and type(model).__module__.startswith("emotk.")
                and hasattr(model, "encode") and hasattr(model, "feature_extractor"))

    def output_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        n = torch.as_tensor(num_samples, dtype=torch.long) + 2 * self.pad
        for kernel, stride in self._convs:
            n = torch.where(n >= kernel, (n - kernel) // stride + 1, torch.zeros_like(n))
        return n

    def _encode(self, wavs: list[torch.Tensor], lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        groups: dict[int, list[int]] = {}
        for b, w in enumerate(wavs):
            groups.setdefault(int(w.shape[0]), []).append(b)
        frames = self.output_lengths(lengths)
        t_max = int(frames.max())
        result: list[torch.Tensor] | None = None
        for idx in groups.values():
            x = nn.functional.pad(torch.stack([wavs[b] for b in idx]), (self.pad, self.pad))
            _, hidden = self.model.encode(x, output_hidden_states=True)
            if result is None:
                result = [h.new_zeros((len(wavs), t_max, h.shape[-1])) for h in hidden]
            rows = torch.tensor(idx, device=hidden[0].device)
            for layer, h in enumerate(hidden):
                result[layer] = result[layer].index_copy(0, rows, nn.functional.pad(h, (0, 0, 0, t_max - h.shape[1])))
        return result, frames  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------------
# Batched extraction


# Padded seconds per batch: on CPU the budget barely matters (12-48 s were within 3 % of each other, 4 % faster
# than one-by-one; benchmarks/upstream_batching.py); on a GPU larger batches pay, so raise it there.
DEFAULT_BATCH_SECONDS = 24.0


def plan_batches(num_samples: Sequence[int], max_batch_seconds: float = DEFAULT_BATCH_SECONDS, *,
                 sort_by_length: bool = True, max_batch_size: int | None = None, sample_rate: int = SAMPLE_RATE,
                 cost: Callable[[int], int] | None = None) -> list[list[int]]:
    """Group utterances into batches whose padded size fits a budget.

    num_samples: length of each utterance (samples). A batch's padded size is ``len(batch) * cost(longest)``
    samples (cost: samples the model really processes, identity by default; Whisper: whole windows); it must stay
    within ``max_batch_seconds`` unless the batch has a single item. sort_by_length: longest first, so
    similar lengths share a batch (little padding; memory peaks at once); else input order.
    Returns lists of input indices; every index appears once. Deterministic (ties by index).
    """
    if max_batch_seconds <= 0:
        raise UsageError(f"max_batch_seconds must be > 0, got {max_batch_seconds}")
    if max_batch_size is not None and max_batch_size < 1:
        raise UsageError(f"max_batch_size must be >= 1, got {max_batch_size}")
    cost = cost or (lambda n: n)
    budget = max_batch_seconds * sample_rate
    order = list(range(len(num_samples)))
    if sort_by_length:
        order.sort(key=lambda i: (-int(num_samples[i]), i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = cost(int(num_samples[i]))
        new_longest = max(longest, n)
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (full or (len(current) + 1) * new_longest > budget):
            batches.append(current)
            current, new_longest = [], n
        current.append(i)
        longest = new_longest
    if current:
        batches.append(current)
    return batches


def extract(upstream: Upstream, wavs: Sequence[WaveformLike], max_batch_seconds: float = DEFAULT_BATCH_SECONDS,
            sort_by_length: bool = True, *, layers: Sequence[int] | None = None, dtype: Any = np.float32,
            max_batch_size: int | None = None,
            on_batch: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """Run ``upstream`` over many utterances and return each one's layers without padding.

    wavs: N 1-D 16 kHz float waveforms. Batches come from :func:`plan_batches` (padding is masked inside the
    model). layers: indices to keep (None = all). dtype: storage type of the result (np.float16 halves it).
    on_batch: called with the number of utterances after each batch (progress).
    Returns N arrays (L, T_i, D) in input order. Runs without gradients and in eval mode (restored after).
    """
    if not len(wavs):
        return []
    items = [_check_waveform(w, i, upstream.min_samples, upstream.sample_rate) for i, w in enumerate(wavs)]
    batches = plan_batches([int(w.shape[0]) for w in items], max_batch_seconds, sort_by_length=sort_by_length,
                           max_batch_size=max_batch_size, sample_rate=upstream.sample_rate,
                           cost=upstream.padded_input_samples)
    results: list[np.ndarray | None] = [None] * len(items)
    was_training = upstream.training
    upstream.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                out = upstream([items[i] for i in batch], layers=layers)
                hidden = out.hidden.float().cpu()
                for j, i in enumerate(batch):
                    results[i] = hidden[j, :, : int(out.lengths[j])].numpy().astype(dtype, copy=True)
                if on_batch is not None:
                    on_batch(len(batch))
    finally:
        upstream.train(was_training)
    return results  # type: ignore[return-value]


def padding_overhead(num_samples: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Padded samples / real samples over a batch plan (1.0 = no padding)."""
    real = sum(int(n) for n in num_samples)
    padded = sum(len(b) * max(int(num_samples[i]) for i in b) for b in batches)
    return padded / real if real else 1.0

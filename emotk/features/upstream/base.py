"""What every upstream shares: the output type, the protocol of emotk's own encoders, the adapter registry and
the :class:`Upstream` base class (probing, frozen/trainable modes, input checks, layer selection).

Adapters subclass :class:`Upstream` in their own modules and register with :func:`register_upstream`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import nn

from emotk.core.audio import SAMPLE_RATE
from emotk.errors import AudioError, UsageError

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


# Upstream names "PREFIX:WHERE" of models trained by emotk (and encoders read from a path by emotk) ->
# "module:function" building the encoder module, called as function(name, path=path, device=device)
# (imported only when such a name is used).
UPSTREAM_PREFIXES: dict[str, str] = {
    "care": "emotk.models.care.infer:upstream_module",
    "care-semantic": "emotk.models.care.infer:upstream_module",
    "care-acoustic": "emotk.models.care.infer:upstream_module",
    # a CTranslate2 Whisper directory (or a registered whisper-<size>-ct2 name) as emotk's all-layer encoder
    "whisper-ct2": "emotk.hub.ct2_whisper:upstream_module",
}
# cheap existence checks of the WHERE part (no model loaded), run before a command creates its output folder
UPSTREAM_CHECKS: dict[str, str] = {
    "care": "emotk.models.care.export:export_dir",
    "care-semantic": "emotk.models.care.export:export_dir",
    "care-acoustic": "emotk.models.care.export:export_dir",
}


def check_prefixed_upstream(name: str) -> None:
    """Raise the loader's one-line error now when a ``PREFIX:WHERE`` upstream names nothing loadable."""
    prefix, _, where = name.partition(":")
    if prefix in UPSTREAM_CHECKS:
        import importlib

        module, func = UPSTREAM_CHECKS[prefix].split(":")
        getattr(importlib.import_module(module), func)(where)


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

    @classmethod
    def hub_options(cls, loaded: Any) -> dict[str, Any]:
        """Adapter options read off a hub-loaded model (its :class:`~emotk.hub.LoadedModel` front end) that
        :meth:`from_hub` passes unless the caller sets them; none by default."""
        return {}

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
        :data:`UPSTREAM_PREFIXES` (``care:RUN_DIR``, ``care-semantic:DIR``, ...) loads an emotk-trained encoder;
        ``whisper-ct2:DIR`` a CTranslate2 Whisper directory as emotk's all-layer encoder.
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
        for cls in dict.fromkeys(_ADAPTERS.values()):  # the adapter from_model will pick: its loader options
            if cls.accepts(model):
                for key, value in cls.hub_options(loaded).items():
                    options.setdefault(key, value)
                break
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
            items.append(check_waveform(w, i, self.min_samples, self.sample_rate))
        return items


def check_waveform(w: Any, index: int, min_samples: int, sr: int) -> torch.Tensor:
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


def pad_batch(wavs: list[torch.Tensor]) -> torch.Tensor:
    """B tensors (S_i,) -> zero-padded (B, max S_i)."""
    return nn.utils.rnn.pad_sequence(wavs, batch_first=True)

"""transformers SSL models (WavLM / HuBERT / wav2vec2 / data2vec-audio) as an upstream, padding-exact."""

from __future__ import annotations

import contextlib
import inspect
import json
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from emotk.errors import UsageError
from emotk.features.upstream.base import Upstream, pad_batch, register_upstream


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
    def hub_options(cls, loaded: Any) -> dict[str, Any]:
        """``normalize`` from the hub model's feature extractor (``do_normalize``), when it has one."""
        front_end = getattr(loaded, "feature_extractor", None)
        return {"normalize": bool(front_end.do_normalize)} if hasattr(front_end, "do_normalize") else {}

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
        padded = pad_batch(wavs)
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


def _sample_mask(lengths: torch.Tensor, total: int, device: torch.device) -> torch.Tensor:
    """(B,) valid samples -> (B, total) long mask (1 = valid), the HF ``attention_mask`` convention."""
    return (torch.arange(total, device=device)[None, :] < lengths.to(device)[:, None]).to(torch.long)


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

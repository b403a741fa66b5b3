"""Whisper encoders from CTranslate2 directories, as PyTorch modules with every layer (emotk's own reader).

A CTranslate2 Whisper directory (``model.bin`` + ``config.json``: faster-whisper's models, the bundled tiny.en,
anything ``ct2-transformers-converter`` wrote) is read by :func:`emotk.hub.ct2.read_ct2_model`, its ``encoder/*``
variables are dequantized to float32 and renamed to :class:`emotk.features.encoders.whisper.WhisperEncoder`'s
parameters, and the result is cached once as safetensors: ``<emotk cache>/ct2-whisper/<sha256 of model.bin>
.safetensors`` (``$EMOTK_CACHE`` or ``~/.cache/emotk``; the encoder config sits in the file's metadata, written
atomically). Later loads hash ``model.bin`` and read the cache; a changed ``model.bin`` has a new hash and is
converted again.

Variable names (CTranslate2's ``WhisperSpec``) -> parameters::

    encoder/conv{1,2}/{weight,bias}                      conv{1,2}.{weight,bias}
    encoder/position_encodings/encodings                 embed_positions.weight
    encoder/layer_{i}/self_attention/layer_norm/{gamma,beta}   layers.{i}.self_attn_layer_norm.{weight,bias}
    encoder/layer_{i}/self_attention/linear_0/*          layers.{i}.self_attn.{q,k,v}_proj (rows split in 3)
    encoder/layer_{i}/self_attention/linear_1/*          layers.{i}.self_attn.out_proj
    encoder/layer_{i}/ffn/layer_norm/{gamma,beta}        layers.{i}.final_layer_norm.{weight,bias}
    encoder/layer_{i}/ffn/linear_{0,1}/*                 layers.{i}.fc{1,2}
    encoder/layer_norm/{gamma,beta}                      layer_norm.{weight,bias}
    encoder/num_heads                                    config.num_heads

The key bias of the fused projection is dropped: it adds the same number to every score of a query, which the
softmax cancels.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from emotk.errors import DataError, UsageError
from emotk.hub.ct2 import CT2Model, read_ct2_model

CACHE_SUBDIR = "ct2-whisper"
CACHE_FORMAT = "emotk-whisper-encoder/1"
_LAYER = re.compile(r"^encoder/layer_(\d+)/")


def encoder_state_dict(model: CT2Model) -> tuple[dict, dict[str, np.ndarray]]:
    """CTranslate2 Whisper variables -> (encoder config dict, float32 state dict of ``WhisperEncoder``).

    Raises DataError naming the file when the model is not a Whisper model or a variable is missing."""
    if model.spec != "WhisperSpec":
        raise DataError(f"{model.path}: a {model.spec} model, not a CTranslate2 Whisper model (WhisperSpec)")
    layers = sorted({int(m.group(1)) for name in model.variables if (m := _LAYER.match(name))})
    if not layers or layers != list(range(len(layers))):
        raise DataError(f"{model.path}: encoder layers {layers} are not 0..N-1")
    f32 = model.float32
    conv1 = f32("encoder/conv1/weight")
    d_model, n_mels = int(conv1.shape[0]), int(conv1.shape[1])
    positions = f32("encoder/position_encodings/encodings")
    heads = int(model.raw("encoder/num_heads").reshape(()))
    state: dict[str, np.ndarray] = {
        "conv1.weight": conv1, "conv1.bias": f32("encoder/conv1/bias"),
        "conv2.weight": f32("encoder/conv2/weight"), "conv2.bias": f32("encoder/conv2/bias"),
        "embed_positions.weight": positions,
        "layer_norm.weight": f32("encoder/layer_norm/gamma"), "layer_norm.bias": f32("encoder/layer_norm/beta"),
    }
    ffn_dim = 0
    for i in layers:
        src, dst = f"encoder/layer_{i}", f"layers.{i}"
        qkv_w, qkv_b = f32(f"{src}/self_attention/linear_0/weight"), f32(f"{src}/self_attention/linear_0/bias")
        if qkv_w.shape[0] != 3 * d_model:
            raise DataError(f"{model.path}: {src}/self_attention/linear_0/weight has shape {qkv_w.shape}, expected "
                            f"({3 * d_model}, {d_model}) (fused query/key/value)")
        q_w, k_w, v_w = np.split(qkv_w, 3)
        q_b, _, v_b = np.split(qkv_b, 3)
        fc1 = f32(f"{src}/ffn/linear_0/weight")
        ffn_dim = int(fc1.shape[0])
        state.update({
            f"{dst}.self_attn.q_proj.weight": q_w, f"{dst}.self_attn.q_proj.bias": q_b,
            f"{dst}.self_attn.k_proj.weight": k_w,
            f"{dst}.self_attn.v_proj.weight": v_w, f"{dst}.self_attn.v_proj.bias": v_b,
            f"{dst}.self_attn.out_proj.weight": f32(f"{src}/self_attention/linear_1/weight"),
            f"{dst}.self_attn.out_proj.bias": f32(f"{src}/self_attention/linear_1/bias"),
            f"{dst}.self_attn_layer_norm.weight": f32(f"{src}/self_attention/layer_norm/gamma"),
            f"{dst}.self_attn_layer_norm.bias": f32(f"{src}/self_attention/layer_norm/beta"),
            f"{dst}.fc1.weight": fc1, f"{dst}.fc1.bias": f32(f"{src}/ffn/linear_0/bias"),
            f"{dst}.fc2.weight": f32(f"{src}/ffn/linear_1/weight"), f"{dst}.fc2.bias": f32(f"{src}/ffn/linear_1/bias"),
            f"{dst}.final_layer_norm.weight": f32(f"{src}/ffn/layer_norm/gamma"),
            f"{dst}.final_layer_norm.bias": f32(f"{src}/ffn/layer_norm/beta"),
        })
    eps = model.config.get("layer_norm_epsilon")
    config = {"n_mels": n_mels, "d_model": d_model, "num_layers": len(layers), "num_heads": heads,
              "ffn_dim": ffn_dim, "max_positions": int(positions.shape[0]),
              "layer_norm_eps": float(eps) if eps is not None else 1e-5}
    return config, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


def converted_path(model_dir: str | os.PathLike, cache: str | os.PathLike | None = None) -> Path:
    """The cached safetensors of ``model_dir``'s encoder, converting it first if needed.

    model_dir: a CTranslate2 Whisper directory (or its ``model.bin``); cache: the cache root (default: emotk's
    cache folder). Returns ``<cache>/ct2-whisper/<sha256 of model.bin>.safetensors``."""
    from safetensors.numpy import save_file

    from emotk.core.io import atomic_path, cache_dir, sha256_file

    model_bin = _model_bin(model_dir)
    digest = sha256_file(model_bin)
    out = Path(cache).expanduser() if cache is not None else cache_dir()
    target = out / CACHE_SUBDIR / f"{digest}.safetensors"
    if target.is_file():
        return target
    ct2 = read_ct2_model(model_bin, select=lambda name: name.startswith("encoder/"))
    config, state = encoder_state_dict(ct2)
    metadata = {"format": CACHE_FORMAT, "config": json.dumps(config, sort_keys=True), "source": str(model_bin),
                "source_sha256": digest}
    with atomic_path(target) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return target


def load_ct2_whisper_encoder(model_dir: str | os.PathLike, device: str = "cpu",
                             cache: str | os.PathLike | None = None):
    """A CTranslate2 Whisper directory -> :class:`~emotk.features.encoders.whisper.WhisperEncoder` (float32, eval
    mode, on ``device``), through the safetensors cache (:func:`converted_path`)."""
    import torch
    from safetensors import safe_open

    from emotk.features.encoders.whisper import WhisperEncoder, WhisperEncoderConfig

    path = converted_path(model_dir, cache)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types: name the file, one line
        raise DataError(f"{path}: unreadable cached Whisper encoder ({err}); delete it to convert again") from None
    if metadata.get("format") != CACHE_FORMAT:
        raise DataError(f"{path}: not an emotk Whisper encoder cache (format {metadata.get('format')!r}); "
                        "delete it to convert again")
    config = WhisperEncoderConfig.from_dict(json.loads(metadata["config"]), source=str(path))
    encoder = WhisperEncoder(config)
    encoder.load_state_dict(state, strict=True)
    return encoder.to(torch.device(device or "cpu")).eval()


def upstream_module(name: str, path: str | os.PathLike | None = None, device: str = "cpu"):
    """``whisper-ct2:WHERE`` -> the encoder module (:data:`emotk.features.upstream.UPSTREAM_PREFIXES`).

    WHERE is a CTranslate2 Whisper directory, or a registered ``whisper-<size>-ct2`` name resolved by the hub
    (e.g. ``whisper-ct2:whisper-tiny.en-ct2``, the bundled tiny.en); ``path`` overrides WHERE."""
    where = name.partition(":")[2]
    if path is None and not where:
        raise UsageError(f"{name!r}: give the CTranslate2 Whisper directory after the colon "
                         "(whisper-ct2:DIR or whisper-ct2:whisper-<size>-ct2)")
    if path is None and not Path(where).expanduser().exists():
        from emotk.hub.registry import get_spec
        from emotk.hub.resolve import resolve

        spec = get_spec(where)
        if spec.format != "ct2":
            raise UsageError(f"{name!r}: {where} is a {spec.format} model, not a CTranslate2 one; use "
                             f"upstream.name={where} directly")
        path = resolve(where)
    return load_ct2_whisper_encoder(Path(path if path is not None else where).expanduser(), device=device)


def is_ct2_dir(path: Path) -> bool:
    """Whether ``path`` is a directory holding a CTranslate2 ``model.bin``."""
    return path.is_dir() and (path / "model.bin").is_file()


def _model_bin(model_dir: str | os.PathLike) -> Path:
    p = Path(model_dir).expanduser()
    model_bin = p / "model.bin" if p.is_dir() else p
    if not model_bin.is_file():
        raise DataError(f"{model_bin}: no CTranslate2 model.bin there (expected a directory written by "
                        "ct2-transformers-converter or faster-whisper)")
    return model_bin


"""Read and write emotion2vec checkpoints for emotk's network (:mod:`emotk.features.encoders.emotion2vec`).

Checkpoints (:func:`load_emotion2vec`; only ``torch.load(weights_only=True)``): FunASR's ``model.pt`` +
``config.yaml`` (emotion2vec+), fairseq's ``emotion2vec_base.pt`` (config pickled inside, read through
:mod:`emotk.hub.inert_load`), or a bare state dict (sizes inferred from the weights). Key names are the upstream
ones (``modality_encoders.AUDIO.local_encoder.conv_layers.0.0.weight``, ``blocks.3.attn.qkv.weight``, ...);
:func:`upstream_key` maps this module's parameter names onto them. Training-only parts (the EMA teacher, the
decoder, FunASR's emotion classifier ``proj``) are ignored.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping

from emotk.errors import DataError
from emotk.features.encoders.emotion2vec import STANDARD_CONV_LAYERS, Emotion2vec, Emotion2vecConfig

log = logging.getLogger("emotk.hub")

FUNASR_WEIGHTS = "model.pt"
FUNASR_CONFIG = "config.yaml"

# Upstream key prefix of the audio encoder, and prefixes of training-only parts inside it.
AUDIO = "modality_encoders.AUDIO."
_TRAINING_ONLY_IN_ENCODER = (AUDIO + "decoder.",)


# ---------------------------------------------------------------------------------------------- key names

_KEY_RULES: list[tuple[re.Pattern, Any]] = [
    (re.compile(r"feature_extractor\.layers\.(\d+)\.conv\.weight"),
     lambda m, c: f"{AUDIO}local_encoder.conv_layers.{m[1]}.0.weight"),
    (re.compile(r"feature_extractor\.layers\.(\d+)\.norm\.(weight|bias)"),  # layer norm: .2.1.*, group norm: .2.*
     lambda m, c: f"{AUDIO}local_encoder.conv_layers.{m[1]}.2.{'1.' if c.extractor_mode == 'layer_norm' else ''}"
                  f"{m[2]}"),
    (re.compile(r"feature_norm\.(.+)"), lambda m, c: f"{AUDIO}project_features.1.{m[1]}"),
    (re.compile(r"feature_projection\.(.+)"), lambda m, c: f"{AUDIO}project_features.2.{m[1]}"),
    (re.compile(r"pos_pre_norm\.(.+)"), lambda m, c: f"{AUDIO}relative_positional_encoder.0.{m[1]}"),
    (re.compile(r"pos_convs\.(\d+)\.(.+)"),
     lambda m, c: f"{AUDIO}relative_positional_encoder.{'1.' if c.pos_conv_pre_norm else ''}{int(m[1]) + 1}.0.{m[2]}"),
    (re.compile(r"(extra_tokens|alibi_scale)"), lambda m, c: f"{AUDIO}{m[1]}"),
    (re.compile(r"prenet_norm\.(.+)"), lambda m, c: f"{AUDIO}context_encoder.norm.{m[1]}"),
    (re.compile(r"prenet\.(.+)"), lambda m, c: f"{AUDIO}context_encoder.blocks.{m[1]}"),
    (re.compile(r"blocks\.(.+)"), lambda m, c: f"blocks.{m[1]}"),
    (re.compile(r"final_norm\.(.+)"), lambda m, c: f"norm.{m[1]}"),
]


def upstream_key(key: str, config: Emotion2vecConfig) -> str:
    """This module's parameter name -> the FunASR / fairseq checkpoint key (e.g. ``feature_norm.weight`` ->
    ``modality_encoders.AUDIO.project_features.1.weight``)."""
    for pattern, target in _KEY_RULES:
        m = pattern.fullmatch(key)
        if m:
            return target(m, config)
    raise KeyError(key)


def to_upstream_state_dict(model) -> dict:
    """``model``'s weights under the upstream key names (the layout of FunASR's ``model.pt``)."""
    return {upstream_key(k, model.config): v.detach().clone() for k, v in model.state_dict().items()}


def _is_encoder_key(key: str) -> bool:
    """Keys of the inference path (everything else -- EMA teacher, decoder, classifier heads -- is ignored)."""
    if key.startswith(_TRAINING_ONLY_IN_ENCODER):
        return False
    return key.startswith((AUDIO, "blocks.", "norm."))


def infer_from_weights(state: Mapping[str, Any]) -> dict[str, Any]:
    """The config fields that upstream-named weights determine (a dict of :class:`Emotion2vecConfig` fields;
    ``conv_layers`` holds (channels, kernel) pairs since strides leave no trace in the weights).

    Raises DataError (message without the file name) when the weights lack the conv extractor or the projection.
    """
    def shape(key: str) -> tuple[int, ...] | None:
        value = state.get(key)
        return tuple(value.shape) if hasattr(value, "shape") else None

    def count(prefix: str) -> int:
        found = {int(m[1]) for k in state for m in [re.match(re.escape(prefix) + r"(\d+)\.", k)] if m}
        return max(found) + 1 if found else 0

    conv_prefix = f"{AUDIO}local_encoder.conv_layers."
    n_conv = count(conv_prefix)
    proj = shape(f"{AUDIO}project_features.2.weight")
    if not n_conv or proj is None:
        missing = f"{conv_prefix}0.0.weight" if not n_conv else f"{AUDIO}project_features.2.weight"
        raise DataError(f"not an emotion2vec / data2vec 2.0 audio checkpoint (no {missing})")
    out: dict[str, Any] = {"embed_dim": proj[0]}
    convs = []
    for i in range(n_conv):
        w = shape(f"{conv_prefix}{i}.0.weight")
        if w is None:
            raise DataError(f"missing weight {conv_prefix}{i}.0.weight")
        convs.append((w[0], w[2]))
    out["conv_layers"] = tuple(convs)
    if shape(f"{conv_prefix}1.2.1.weight") is not None or shape(f"{conv_prefix}0.2.1.weight") is not None:
        out["extractor_mode"] = "layer_norm"
    elif shape(f"{conv_prefix}0.2.weight") is not None:
        out["extractor_mode"] = "default"
    pre_norm = shape(f"{AUDIO}relative_positional_encoder.1.1.0.weight") is not None
    pos_prefix = f"{AUDIO}relative_positional_encoder.{'1.' if pre_norm else ''}"
    depth = count(pos_prefix) - 1
    pos = shape(f"{pos_prefix}1.0.weight")
    if depth >= 1 and pos is not None:
        out.update(pos_conv_pre_norm=pre_norm, pos_conv_depth=depth, pos_conv_kernel=pos[2],
                   pos_conv_groups=proj[0] // pos[1])
    out["prenet_depth"] = count(f"{AUDIO}context_encoder.blocks.")
    out["depth"] = count("blocks.")
    extra = shape(f"{AUDIO}extra_tokens")
    out["num_extra_tokens"] = extra[1] if extra else 0
    scale = shape(f"{AUDIO}alibi_scale")
    out["use_alibi"] = scale is not None
    if scale is not None:
        scale = scale if len(scale) == 5 else (1, *scale)  # old checkpoints stored it without the layer axis
        out["alibi_scale_per_layer"] = scale[0] > 1
        out["alibi_scale_per_head"] = scale[2] > 1
        if scale[2] > 1:
            out["num_alibi_heads"] = scale[2]
    fc1 = shape("blocks.0.mlp.fc1.weight") or shape(f"{AUDIO}context_encoder.blocks.0.mlp.fc1.weight")
    if fc1 is not None:
        out["mlp_ratio"] = fc1[0] / proj[0]
    first = "blocks.0." if out["depth"] else f"{AUDIO}context_encoder.blocks.0."
    out["norm_affine"] = shape(first + "norm1.weight") is not None
    if out["norm_affine"]:
        if shape(f"{AUDIO}context_encoder.norm.weight") is not None:
            out["layer_norm_first"] = False
        elif shape("norm.weight") is not None:
            out["layer_norm_first"] = True
    return out


def check_config(config: Emotion2vecConfig, inferred: Mapping[str, Any], source: str) -> None:
    """Raise DataError (one line naming ``source``) when ``config`` disagrees with ``inferred``, the fields the
    weights determine (:func:`infer_from_weights`)."""
    for name, value in inferred.items():
        have = getattr(config, name)
        if name == "conv_layers":
            have = tuple((ch, kernel) for ch, kernel, _ in have)
        if name == "mlp_ratio":
            agree = int(config.embed_dim * have) == int(round(config.embed_dim * value))
        else:
            agree = have == value
        if not agree:
            raise DataError(f"{source}: the config says {name}={have} but the weights have {name}={value} "
                            "(config and weights from different models?)")


def config_from_weights(inferred: Mapping[str, Any], source: str) -> Emotion2vecConfig:
    """A config for weights that come without one, from the fields they determine (:func:`infer_from_weights`):
    strides of the standard extractor, ``embed_dim // 64`` heads unless per-head ALiBi scales tell the count.
    Raises DataError naming ``source`` when the extractor is not the standard one (its strides are unknown)."""
    fields_ = dict(inferred)
    convs = fields_.pop("conv_layers")
    if tuple(k for _, k in convs) != tuple(k for _, k, _ in STANDARD_CONV_LAYERS):
        raise DataError(f"{source}: the conv extractor is not the standard one (kernels {[k for _, k in convs]}) and "
                        f"no config gives its strides; put the FunASR {FUNASR_CONFIG} next to the weights")
    heads = fields_.get("num_alibi_heads") or max(1, fields_["embed_dim"] // 64)
    fields_.setdefault("num_alibi_heads", heads)
    fields_["conv_layers"] = tuple((ch, k, s) for (ch, k), (_, _, s) in zip(convs, STANDARD_CONV_LAYERS))
    return Emotion2vecConfig(num_heads=heads, **fields_)


# ---------------------------------------------------------------------------------------------- checkpoints


def _state_and_config(obj: Any, path: Path) -> tuple[dict, dict | None, str]:
    """Split a loaded checkpoint into (state dict, upstream config or None, layout name)."""
    from emotk.hub.inert_load import plain

    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a checkpoint dict, found {type(obj).__name__}")
    for key in ("model", "state_dict", "model_state_dict"):
        inner = obj.get(key)
        if isinstance(inner, dict) and any(hasattr(v, "shape") for v in inner.values()):
            cfg = plain(obj.get("cfg")) if obj.get("cfg") is not None else None
            if cfg is None and obj.get("args") is not None:  # fairseq before hydra: an argparse.Namespace
                cfg = {"model": plain(obj["args"]), "task": plain(obj["args"])}
            layout = "fairseq" if isinstance(cfg, dict) else "checkpoint"
            return _strip_module(inner), cfg if isinstance(cfg, dict) else None, layout
    if any(hasattr(v, "shape") for v in obj.values()):
        return _strip_module(obj), None, "state-dict"
    raise DataError(f"{path}: no state dict found (top-level keys: {', '.join(sorted(map(str, obj))[:8])})")


def _strip_module(state: Mapping[str, Any]) -> dict:
    """Drop a DistributedDataParallel ``module.`` prefix from every key."""
    if state and all(str(k).startswith("module.") for k in state):
        return {str(k)[len("module."):]: v for k, v in state.items()}
    return {str(k): v for k, v in state.items()}


def _resolve_interpolations(cfg: Any, root: Mapping[str, Any], depth: int = 0) -> Any:
    """Replace omegaconf ``${a.b}`` references (left unresolved in a pickled config) by the values they name."""
    if isinstance(cfg, dict):
        return {k: _resolve_interpolations(v, root, depth) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [_resolve_interpolations(v, root, depth) for v in cfg]
    if isinstance(cfg, str) and depth < 8:
        m = re.fullmatch(r"\$\{([\w.]+)\}", cfg.strip())
        if m:
            node: Any = root
            for part in m[1].split("."):
                node = node.get(part) if isinstance(node, dict) else None
            return cfg if node is None else _resolve_interpolations(node, root, depth + 1)
    return cfg


def _read_funasr_config(path: Path) -> dict:
    import yaml

    from emotk.hub.inert_load import first_line

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise DataError(f"{path}: cannot read the FunASR config ({first_line(err)})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_conf"), dict):
        raise DataError(f"{path}: not a FunASR emotion2vec config (no model_conf section)")
    return data


def _weights_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(f"{path}: emotion2vec checkpoint not found")
    if (path / FUNASR_WEIGHTS).is_file():
        return path / FUNASR_WEIGHTS
    found = sorted([*path.glob("*.pt"), *path.glob("*.pth")])
    if len(found) != 1:
        raise DataError(f"{path}: expected {FUNASR_WEIGHTS} or exactly one .pt/.pth file, found {len(found)}")
    return found[0]


def read_emotion2vec(path: str | os.PathLike) -> tuple[Emotion2vecConfig, dict, Path, str]:
    """Read an emotion2vec checkpoint without building the model.

    ``path``: a FunASR folder (``model.pt`` + ``config.yaml``), a fairseq ``.pt`` (config inside), a folder
    with one ``.pt``, or a ``.pt`` state dict (a ``config.yaml`` beside it is used when present). Returns
    (config, state dict with upstream key names, weights file, layout: "fairseq" | "funasr" | "state-dict").
    Raises DataError (one line, naming the file) for anything unreadable or inconsistent.
    """
    from emotk.hub.inert_load import load_checkpoint

    path = Path(path).expanduser()
    weights = _weights_file(path)
    state, cfg, layout = _state_and_config(load_checkpoint(weights), weights)
    try:
        inferred = infer_from_weights(state)
    except DataError as err:
        raise DataError(f"{weights}: {err}") from None
    beside = weights.parent / FUNASR_CONFIG
    if cfg is not None and isinstance(cfg.get("model"), dict):
        cfg = _resolve_interpolations(cfg, cfg)
        task = cfg.get("task") if isinstance(cfg.get("task"), dict) else {}
        normalize = task.get("normalize")
        source = f"{weights} (its cfg)"
        config = Emotion2vecConfig.from_upstream(cfg["model"], None if normalize is None else bool(normalize),
                                                 source=source)
    elif beside.is_file():
        conf = _read_funasr_config(beside)
        source = str(beside)
        config = Emotion2vecConfig.from_upstream(_resolve_interpolations(conf["model_conf"], conf), source=source)
        layout = "funasr"
    else:
        config = config_from_weights(inferred, str(weights))
        layout, source = "state-dict", str(weights)
        log.info("%s: no config found; sizes inferred from the weights (%d heads assumed)", weights, config.num_heads)
    check_config(config, inferred, source)
    return config, state, weights, layout


def load_emotion2vec(path: str | os.PathLike, device: str = "cpu"):
    """Load an emotion2vec checkpoint (see :func:`read_emotion2vec`) into emotk's ``Emotion2vec``.

    Returns the model in eval mode on ``device``, with ``checkpoint_path`` (the weights file) and
    ``checkpoint_layout`` attributes. Raises DataError naming the file when a needed weight is missing or has
    the wrong shape; weights of training-only parts are ignored.
    """
    import torch

    config, state, weights, layout = read_emotion2vec(path)
    model = Emotion2vec(config)
    own = model.state_dict()
    converted, missing, used = {}, [], set()
    for key, target in own.items():
        src = upstream_key(key, config)
        value = state.get(src)
        if value is None:
            missing.append(src)
            continue
        if key == "alibi_scale" and value.dim() == 4:  # stored before the per-layer axis existed
            value = value.unsqueeze(0)
        if tuple(value.shape) != tuple(target.shape):
            raise DataError(f"{weights}: weight {src} has shape {tuple(value.shape)}, the config needs "
                            f"{tuple(target.shape)}")
        converted[key] = value.to(target.dtype)
        used.add(src)
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(f"{weights}: missing weight {missing[0]}{more} (not a complete emotion2vec checkpoint)")
    unknown = sorted(k for k in state if _is_encoder_key(k) and k not in used)
    if unknown:
        raise DataError(f"{weights}: encoder weight {unknown[0]} does not fit emotk's emotion2vec "
                        f"({len(unknown)} such keys; a different data2vec 2.0 variant?)")
    with torch.no_grad():
        model.load_state_dict(converted, strict=True)
    model.checkpoint_path = weights
    model.checkpoint_layout = layout
    return model.to(device).eval()


def save_funasr(model, directory: str | os.PathLike) -> Path:
    """Write ``model`` in FunASR's layout: ``model.pt`` (upstream key names) + ``config.yaml`` (``model:
    Emotion2vec``, ``model_conf``). Returns the directory; files are written atomically."""
    import torch
    import yaml

    from emotk.core.io import atomic_path, atomic_write_text

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    conf = {"model": "Emotion2vec", "model_conf": model.config.to_funasr_conf()}
    atomic_write_text(directory / FUNASR_CONFIG, yaml.safe_dump(conf, sort_keys=False))
    with atomic_path(directory / FUNASR_WEIGHTS) as tmp:
        torch.save(to_upstream_state_dict(model), tmp)
    return directory


def state_digest(model) -> str:
    """sha256 hex digest of a model's weights (names, dtypes, shapes and bytes, in key order)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"{key}:{t.dtype}:{tuple(value.shape)};".encode("utf-8"))
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()

"""Read and write soft-HuBERT checkpoints for emotk's network (:mod:`emotk.features.encoders.soft_hubert`).

The state-dict keys follow the upstream checkpoint (``feature_extractor.conv0.weight``, ...,
``positional_embedding.conv.weight_g``/``weight_v``, ``encoder.layers.N.self_attn.in_proj_weight``, ...,
``proj.weight``), so ``hubert-soft-0d54a1f4.pt`` loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from emotk.errors import DataError
from emotk.features.encoders.soft_hubert import SoftHubert, SoftHubertConfig

# ---------------------------------------------------------------------------------------------- checkpoints

_WN_UPSTREAM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}


def to_upstream_state_dict(model) -> dict:
    """Return ``model``'s state dict with bshall/hubert's key names (``...conv.weight_g``/``weight_v``)."""
    out = {}
    for key, value in model.state_dict().items():
        for up, ours in _WN_UPSTREAM.items():
            if key.endswith(ours):
                key = key[: -len(ours)] + up
        out[key] = value.detach().clone()
    return out


def from_upstream_state_dict(state: Mapping[str, Any]) -> dict:
    """Map an upstream soft-HuBERT state dict (optionally ``module.``-prefixed, weight_g/weight_v or
    ``weight`` for the positional conv) onto this module's key names. Returns a new dict."""
    import torch

    out: dict = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module."):]
        for up, ours in _WN_UPSTREAM.items():
            if key.endswith("." + up):
                key = key[: -len(up)] + ours
        out[key] = value
    # A checkpoint saved after torch's remove_weight_norm holds a plain weight: split it into g and v.
    plain = "positional_embedding.conv.weight"
    if plain in out and isinstance(out[plain], torch.Tensor):
        w = out.pop(plain)
        out["positional_embedding.conv." + _WN_UPSTREAM["weight_g"]] = torch.linalg.vector_norm(
            w, dim=(0, 1), keepdim=True)
        out["positional_embedding.conv." + _WN_UPSTREAM["weight_v"]] = w
    return out


def infer_config(state: Mapping[str, Any]) -> SoftHubertConfig:
    """Derive the sizes of a soft-HuBERT from its (upstream or emotk) state dict."""
    state = from_upstream_state_dict(state)
    try:
        conv_dim = state["feature_extractor.conv0.weight"].shape[0]
        hidden = state["feature_projection.projection.weight"].shape[0]
        layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layers."))
        ffn = state["encoder.layers.0.linear1.weight"].shape[0]
        unit_dim, _ = state["proj.weight"].shape
        labels = state["label_embedding.weight"].shape[0]
        v = state["positional_embedding.conv.parametrizations.weight.original1"]
    except (KeyError, ValueError) as err:
        raise DataError(f"not a soft-HuBERT state dict (missing {err})") from None
    kernel = v.shape[2]
    groups = hidden // v.shape[1]
    heads = SoftHubertConfig.num_heads if hidden == SoftHubertConfig.hidden_size else max(1, hidden // 64)
    return SoftHubertConfig(conv_dim=conv_dim, hidden_size=hidden, num_layers=layers, num_heads=heads,
                            ffn_dim=ffn, pos_conv_kernel=kernel, pos_conv_groups=groups, unit_dim=unit_dim,
                            num_label_embeddings=labels)


def load_soft_hubert(path: str | Path, device: str = "cpu"):
    """Load a soft-HuBERT from a ``.pt`` file or a folder (``config.json`` + one ``*.pt``/``*.pth``).

    Uses ``torch.load(weights_only=True)``. The sizes come from ``config.json`` when present (the number of
    attention heads cannot be read off the weights), else from the state dict (12 heads for 768-d).
    Returns the model in eval mode on ``device``. Raises DataError for a missing, unreadable or mismatched
    checkpoint.
    """
    import torch

    path = Path(path)
    config: SoftHubertConfig | None = None
    if path.is_dir():
        cfg_file = path / "config.json"
        if cfg_file.is_file():
            try:
                config = SoftHubertConfig.from_dict(json.loads(cfg_file.read_text(encoding="utf-8")), str(cfg_file))
            except json.JSONDecodeError as err:
                raise DataError(f"{cfg_file}: not valid JSON ({err.msg}, line {err.lineno})") from None
        weights = sorted([*path.glob("*.pt"), *path.glob("*.pth")])
        if len(weights) != 1:
            raise DataError(f"{path}: expected exactly one soft-HuBERT .pt/.pth file, found {len(weights)}")
        path = weights[0]
    if not path.is_file():
        raise DataError(f"{path}: soft-HuBERT checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"{path}: cannot read the soft-HuBERT checkpoint ({type(err).__name__}: {err})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a state dict, found {type(state).__name__}")
    model = SoftHubert(config or infer_config(state))
    try:
        model.load_state_dict(from_upstream_state_dict(state), strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise DataError(f"{path}: checkpoint does not fit the soft-HuBERT architecture ({first})") from None
    return model.to(device).eval()


def save_soft_hubert(model, directory: str | Path) -> Path:
    """Write ``model`` as ``config.json`` + ``hubert-soft.pt`` (upstream key names) into ``directory``.

    Returns the directory. Files are written atomically.
    """
    import torch

    from emotk.core.io import atomic_path, atomic_write_json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_json(directory / "config.json", model.config.to_dict())
    with atomic_path(directory / "hubert-soft.pt") as tmp:
        torch.save(to_upstream_state_dict(model), tmp)
    return directory

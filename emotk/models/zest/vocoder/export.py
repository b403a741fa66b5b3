"""The generator-only inference artefact, separate from the GAN training state.

``<folder>/generator.safetensors`` (weights) + ``<folder>/generator.json`` (format, the generator config and
the feature config: sample rate, hop, token K, embedding sizes). :func:`load_generator` rebuilds the generator
from the JSON, checks the weights fit it and, given the analysis front end's feature config, that both agree;
any mismatch is a one-line :class:`~emotk.errors.ConfigError` / :class:`~emotk.errors.DataError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from emotk.errors import ConfigError, DataError, ModelNotFoundError

FORMAT = "emotk-zest-vocoder/1"
WEIGHTS = "generator.safetensors"
CONFIG = "generator.json"


def export_generator(generator: Any, folder: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``generator`` (a VocoderGenerator, weight norm kept) to ``folder``; returns the folder.

    ``extra``: JSON-able provenance stored in ``generator.json`` under ``"provenance"``.
    """
    from safetensors.torch import save_file

    from emotk.core.io import atomic_path, atomic_write_json
    from emotk.models.zest.vocoder.generator import count_parameters

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    atomic_write_json(folder / CONFIG, {
        "format": FORMAT,
        "generator": generator.cfg.to_dict(),
        "features": generator.cfg.feature_config(),
        "parameters": count_parameters(generator),
        "provenance": extra or {},
    })
    return folder


def read_export_config(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """(folder, parsed generator.json) of an export folder or of a file inside it."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    cfg_file = folder / CONFIG
    if not cfg_file.is_file() or not (folder / WEIGHTS).is_file():
        raise ModelNotFoundError(f"{path}: not a vocoder export (expected {CONFIG} and {WEIGHTS}; "
                                 "train one with `emotk transfer train --stage vocoder`)")
    try:
        meta = json.loads(cfg_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{cfg_file}:{e.lineno}: invalid JSON ({e.msg})") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{cfg_file}: format {meta.get('format')!r} is not {FORMAT!r}")
    return folder, meta


def check_features(meta_features: dict[str, Any], expect: dict[str, Any], where: str) -> None:
    """Raise ConfigError naming the first feature setting where ``expect`` differs from the export's."""
    for key in sorted(expect):
        if key in meta_features and meta_features[key] != expect[key]:
            raise ConfigError(f"{where}: the vocoder was trained for {key}={meta_features[key]!r} but the analysis "
                              f"front end gives {key}={expect[key]!r}; use a matching vocoder or retrain it")


def load_generator(path: str | os.PathLike, expect_features: dict[str, Any] | None = None,
                   device: str = "cpu", fold_weight_norm: bool = True) -> Any:
    """Load an exported generator (eval mode) from its folder (or a file in it).

    ``expect_features``: the analysis front end's feature config (keys of
    ``GeneratorConfig.feature_config()``, e.g. ``{"num_tokens": 100, "hop": 320}``); a disagreement is a
    one-line ConfigError. ``fold_weight_norm``: fold weight norms into plain weights (same outputs, faster).
    Returns a :class:`~emotk.models.zest.vocoder.generator.VocoderGenerator`; call it as
    ``generator(tokens, f0, speaker, emotion) -> wav`` or use :func:`~.infer.synthesize`.
    """
    from safetensors.torch import load_file

    from emotk.core.config import from_dict
    from emotk.models.zest.vocoder.config import GeneratorConfig
    from emotk.models.zest.vocoder.generator import VocoderGenerator

    folder, meta = read_export_config(path)
    where = str(folder / CONFIG)
    try:
        cfg = from_dict(GeneratorConfig, meta.get("generator") or {}, prefix="generator.")
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    check_features(cfg.feature_config(), meta.get("features") or {}, where)  # the JSON agrees with itself
    if expect_features:
        check_features(cfg.feature_config(), expect_features, where)
    generator = VocoderGenerator(cfg)
    state = load_file(str(folder / WEIGHTS))
    own = generator.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        key = (missing or unexpected)[0]
        raise DataError(f"{folder / WEIGHTS}: weights do not fit {CONFIG} ({'missing' if missing else 'unexpected'} "
                        f"tensor {key!r}, {len(missing)} missing / {len(unexpected)} unexpected)")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise DataError(f"{folder / WEIGHTS}: tensor {key!r} has shape {tuple(tensor.shape)}, {CONFIG} implies "
                            f"{tuple(own[key].shape)}")
    generator.load_state_dict(state)
    generator.eval()
    if fold_weight_norm:
        generator.remove_weight_norm()
    return generator.to(device)

"""The CARE inference artefact: write it after pre-training, load it as a model.

The export bundle (:func:`write_export`): ``model.safetensors`` (all CARE weights) and ``care.json`` (the
architecture: layer counts, adapter shape, target widths, compat, and both transformers configs, so loading
needs neither the sources nor the network; plus provenance). :func:`load_export` rebuilds the
:class:`~emotk.models.care.model.CareModel`; :mod:`emotk.models.care.infer` serves it as a SUPERB upstream.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from emotk.errors import DataError

EXPORT_JSON = "care.json"
EXPORT_WEIGHTS = "model.safetensors"
FORMAT = "emotk.care.export"


def write_export(folder: str | os.PathLike, model: nn.Module, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` + ``care.json`` into ``folder`` (replaced atomically file by file). Returns it."""
    from safetensors.torch import save_file

    from emotk.core.io import atomic_path, atomic_write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / EXPORT_WEIGHTS) as tmp:
        save_file(state, str(tmp))
    atomic_write_json(folder / EXPORT_JSON, {"format": FORMAT, "version": 1, **model.export_spec(),
                                             "parameters": model.parameter_counts(), **(extra or {})})
    return folder


def export_dir(path: str | os.PathLike) -> Path:
    """An export folder, or a run folder holding ``export/`` -> the export folder (DataError otherwise)."""
    p = Path(os.path.expanduser(str(path)))
    for cand in (p, p / "export"):
        if (cand / EXPORT_JSON).is_file():
            return cand
    raise DataError(f"{p}: no CARE export here ({EXPORT_JSON} missing; pass a pre-training run folder or its export/)")


def load_export(path: str | os.PathLike, device: str = "cpu") -> nn.Module:
    """Rebuild the CareModel of an export (or run) folder with its weights; eval mode, on ``device``."""
    from safetensors.torch import load_file

    from emotk.models.care.model import from_spec

    folder = export_dir(path)
    try:
        spec = json.loads((folder / EXPORT_JSON).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{folder / EXPORT_JSON}:{e.lineno}: invalid JSON ({e.msg})") from None
    if spec.get("format") != FORMAT:
        raise DataError(f"{folder / EXPORT_JSON}: not a CARE export (format {spec.get('format')!r})")
    model = from_spec(spec)
    state = load_file(str(folder / EXPORT_WEIGHTS))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DataError(f"{folder / EXPORT_WEIGHTS}: weights do not match {EXPORT_JSON} "
                        f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    return model.to(device).eval()

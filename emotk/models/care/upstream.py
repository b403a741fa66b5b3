"""CARE as a SUPERB upstream: layer views, the ``care:`` upstream names, and the export bundle.

Views (``CareEncoder(model, view=...)``), widths for the thesis model (D = 768):

==========  ======================================================================================  =========
view        layers (in order)                                                                        width
==========  ======================================================================================  =========
care        "projection" (CNN + feature projection), "common_1".."common_C", then                    2D = 1536
            "care_1".."care_K" = concat(acoustic layer i, semantic post-conv output i);
            the D-wide layers are duplicated, concat(x, x), to 2D (METHODS.md duplication rule)
            -> 1 + 6 + 6 = 13 layers
semantic    "projection", "common_1".."common_C", "semantic_1".."semantic_K" (ablation)              D = 768
acoustic    "projection", "common_1".."common_C", "acoustic_1".."acoustic_A" (ablation)              D = 768
==========  ======================================================================================  =========

Upstream names (``emotk ser train --set upstream.name=...``, resolved by
:meth:`emotk.features.upstream.Upstream.from_hub`): ``care:DIR`` (view care), ``care-semantic:DIR``,
``care-acoustic:DIR``; DIR is an export folder (``care.json`` + ``model.safetensors``) or a pre-training run
folder (its ``export/`` is used).

The export bundle (:func:`write_export`): ``model.safetensors`` (all CARE weights) and ``care.json`` (the
architecture: layer counts, adapter shape, target widths, compat, and both transformers configs, so loading
needs neither the sources nor the network; plus provenance).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emotk.errors import DataError, UsageError

VIEWS = ("care", "semantic", "acoustic")
EXPORT_JSON = "care.json"
EXPORT_WEIGHTS = "model.safetensors"
FORMAT = "emotk.care.export"


class CareEncoder(nn.Module):
    """A :class:`~emotk.models.care.model.CareModel` seen as a layered speech encoder
    (:class:`emotk.features.upstream.LayeredSpeechEncoder`: wrap it with ``Upstream.from_model``)."""

    def __init__(self, model: nn.Module, view: str = "care") -> None:
        super().__init__()
        if view not in VIEWS:
            raise UsageError(f"CARE view {view!r}: choose one of {', '.join(VIEWS)}")
        self.model = model
        self.view = view
        arch = model.arch
        names = ["projection"] + [f"common_{i}" for i in range(1, arch.common_layers + 1)]
        k = arch.semantic_layers if view != "acoustic" else arch.acoustic_layers
        names += [f"{view}_{i}" for i in range(1, k + 1)]
        self.layer_names = tuple(names)
        self.dim = 2 * model.dim if view == "care" else model.dim

    def output_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        """(N,) samples -> (N,) 50 Hz frames."""
        return self.model.output_lengths(num_samples)

    def forward_layers(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """wavs (B, S) zero-padded 16 kHz, lengths (B,) samples -> (L layers (B, T, width), frames (B,))."""
        res = self.model.layers(wavs, lengths, acoustic=self.view != "semantic", semantic=self.view != "acoustic",
                                detach_acoustic=False)
        base = [res["projection"], *res["common"]]
        if self.view == "care":
            layers = [torch.cat([x, x], dim=-1) for x in base]
            layers += [torch.cat([a, s], dim=-1) for a, s in zip(res["acoustic"], res["semantic"])]
        else:
            layers = base + list(res[self.view])
        return layers, res["frames"]


# ------------------------------------------------------------------------------------------------ export
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


def upstream_module(name: str, path: str | None = None, device: str = "cpu") -> CareEncoder:
    """``care:DIR`` / ``care-semantic:DIR`` / ``care-acoustic:DIR`` (``path`` overrides DIR) -> CareEncoder."""
    prefix, _, where = name.partition(":")
    view = {"care": "care", "care-semantic": "semantic", "care-acoustic": "acoustic"}.get(prefix)
    if view is None:
        raise UsageError(f"upstream {name!r}: CARE names are care:DIR, care-semantic:DIR or care-acoustic:DIR")
    where = path or where
    if not where:
        raise UsageError(f"upstream {name!r}: name the CARE export or run folder, e.g. care:runs/care/export")
    return CareEncoder(load_export(where, device=device), view=view).to(device).eval()


__all__ = ["CareEncoder", "VIEWS", "export_dir", "load_export", "upstream_module", "write_export"]

"""CARE inference: a trained CARE as a layered speech encoder (SUPERB upstream): layer views and the ``care:`` names.

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
folder (its ``export/`` is used; :mod:`emotk.models.care.export`).
"""

from __future__ import annotations

import torch
from torch import nn

from emotk.errors import UsageError
from emotk.models.care.export import load_export

VIEWS = ("care", "semantic", "acoustic")


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


__all__ = ["CareEncoder", "VIEWS", "upstream_module"]

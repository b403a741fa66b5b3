"""The SER inference artefact (``export/``): write it after training, load it for inference.

An export folder is everything ``ser predict`` needs, on its own::

    export/model.safetensors   the SUPERB downstream's weights
    export/config.json         format + version, task type, classes (or regression targets), downstream dims and
                               settings, the feature front-end (:class:`~emotk.models.ser.features.SerFeatures`:
                               upstream name/path, layers, storage dtype, crop/pad), provenance of the source run

:func:`load_export` rebuilds the downstream with its weights; :class:`emotk.models.ser.infer.SerPredictor` adds
the feature front-end and runs it over audio.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from emotk.core.bundle import find_bundle, load_weights, read_bundle_config
from emotk.core.io import atomic_path, atomic_write_json
from emotk.errors import ConfigError, DataError

EXPORT_FORMAT = "emotk.ser.export"
EXPORT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def write_export(folder: str | os.PathLike, model: Any, cfg: Any, classes: list[str] | None,
                 target_names: list[str] | None, extra: dict[str, Any] | None = None) -> Path:
    """Write the inference bundle of a trained :class:`~emotk.models.ser.model.SuperbDownstream`.

    cfg: the run's SerConfig; classes / target_names: output meaning; extra: provenance (run, fold, seed,
    metrics, hashes). Files are written atomically; returns the folder.
    """
    from safetensors.torch import save_file

    from emotk import __version__
    from emotk.core.config import to_dict

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": EXPORT_FORMAT})
    meta = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "task": "ser.superb",
        "task_type": cfg.task_type,
        "classes": classes,
        "target_names": target_names,
        "dims": asdict(model.dims),
        "model": to_dict(cfg.model),
        "features": to_dict(cfg.feature_config()),
        "emotk_version": __version__,
        **(extra or {}),
    }
    atomic_write_json(folder / CONFIG, meta)
    return folder


def find_export(folder: str | os.PathLike) -> Path:
    """The export folder for ``folder``: itself, ``folder/export``, or DataError naming what is missing."""
    return find_bundle(folder, CONFIG, WEIGHTS, "SER export", "train one with `emotk ser train`")


def load_export(folder: str | os.PathLike, device: str = "cpu") -> tuple[Any, dict[str, Any], Path]:
    """An export folder (or a run folder holding ``export/``) -> ``(model, meta, export folder)``.

    model: the :class:`~emotk.models.ser.model.SuperbDownstream` with its weights, in eval mode on ``device``;
    meta: the parsed ``config.json``. DataError when the folder is not a readable SER export of a format
    version this emotk understands, or when the weights do not fit the model it describes.
    """
    from emotk.models.ser.model import SuperbDims, SuperbDownstream

    folder = find_export(folder)
    meta = read_bundle_config(folder, CONFIG, EXPORT_FORMAT, EXPORT_VERSION, "SER export")
    try:
        model = SuperbDownstream.from_config(SuperbDims(**meta["dims"]), meta["model"])
    except (KeyError, TypeError, ConfigError) as e:
        raise DataError(f"{folder / CONFIG}: the model it describes cannot be built ({e})") from None
    return load_weights(model, folder / WEIGHTS, CONFIG).to(device).eval(), meta, folder

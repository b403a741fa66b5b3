"""Inference bundles on disk: a folder holding a weights file and a JSON config that names its format.

Every task's ``export.py`` writes one (``config.json`` + ``model.safetensors`` for SER and ERC); these helpers are
the shared reading side: find the bundle in a folder or its ``export/``, read and check its config, and load its
weights into a model built from that config -- each failure a one-line DataError naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from emotk.errors import DataError


def find_bundle(folder: str | os.PathLike, config: str, weights: str, what: str, hint: str) -> Path:
    """``folder`` itself or ``folder/export`` when it holds ``config`` and ``weights``; DataError otherwise
    (``what``: e.g. "SER export"; ``hint``: how to make one)."""
    folder = Path(folder)
    for cand in (folder, folder / "export"):
        if (cand / config).is_file() and (cand / weights).is_file():
            return cand
    raise DataError(f"{folder}: no {what} here (expected {config} and {weights}, e.g. RUN_DIR/export); {hint}")


def read_bundle_config(folder: Path, config: str, fmt: str, version: int, what: str) -> dict[str, Any]:
    """The parsed ``folder/config``, checked to be format ``fmt`` of a version this emotk understands."""
    try:
        meta = json.loads((folder / config).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{folder / config}: unreadable export config ({e})") from None
    found = meta.get("format") if isinstance(meta, dict) else None
    if found != fmt:
        raise DataError(f"{folder}: not an emotk {what} (format {found!r})")
    if int(meta.get("format_version", 0)) > version:
        raise DataError(f"{folder}: export format version {meta['format_version']} is newer than this emotk "
                        f"understands ({version}); upgrade emotk")
    return meta


def load_weights(model: Any, weights: Path, config: str) -> Any:
    """Load the safetensors file ``weights`` into ``model`` (every tensor must fit; ``config``: the config file's
    name, for the message). Returns the model."""
    from safetensors.torch import load_model

    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except RuntimeError as e:  # shape mismatches
        raise DataError(f"{weights}: weights do not fit the model in {config} "
                        f"({str(e).splitlines()[-1].strip()[:200]})") from None
    if missing or unexpected:
        raise DataError(f"{weights}: weights do not fit the model in {config} "
                        f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    return model

"""The ERC inference bundle: ``export/model.safetensors`` + ``export/config.json``.

A fine-tuned stage I (:mod:`emotk.models.erc.finetune`) stores encoder + head in the same ``model.safetensors``,
its architecture in ``config.json``'s ``finetune`` section and a text model's tokenizer in ``tokenizer/``.

``config.json`` holds everything inference needs besides the weights: the class list, the network's input widths
(``dims``), the ``model`` section it was built from, the ``embed`` section (how each modality's stage-I vector is
made from a turn, so ``erc predict`` embeds new dialogues exactly as training did) and provenance (source run,
seed, config hash, input hashes, validation/test metrics).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from emotk.core.bundle import find_bundle, load_weights, read_bundle_config
from emotk.core.io import atomic_path, atomic_write_json
from emotk.errors import ConfigError, DataError

EXPORT_FORMAT = "emotk.erc.export"
EXPORT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def write_export(folder: str | os.PathLike, model: Any, cfg: Any, dims: Any, classes: list[str],
                 extra: dict[str, Any] | None = None) -> Path:
    """Write the bundle of a trained :class:`~emotk.models.erc.model.ErcNet` (atomic files); returns the folder."""
    from safetensors.torch import save_file

    from emotk import __version__
    from emotk.core.config import to_dict

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    finetune = getattr(model, "description", None)  # a fine-tuned stage I (emotk.models.erc.finetune.UtteranceNet)
    with atomic_path(folder / WEIGHTS, suffix=".safetensors") as tmp:
        if finetune is not None:  # encoder + head; save_model drops the aliases an upstream adapter keeps
            from safetensors.torch import save_model

            save_model(model, str(tmp), metadata={"format": EXPORT_FORMAT})
        else:
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(tmp), metadata={"format": EXPORT_FORMAT})
    if finetune is not None and getattr(model, "tokenizer", None) is not None:
        from emotk.models.erc.finetune import TOKENIZER_DIR

        model.tokenizer.save_pretrained(str(folder / TOKENIZER_DIR))
    meta = {
        "format": EXPORT_FORMAT, "format_version": EXPORT_VERSION, "task": "erc.hcam", "classes": list(classes),
        "dims": asdict(dims), "model": to_dict(cfg.model),
        "embed": {m: to_dict(cfg.embed.get(m)) for m in cfg.model.modalities},
        "label_field": cfg.data.label_field, "label_map": cfg.data.label_map,
        "emotk_version": __version__, **(extra or {}),
    }
    if finetune is not None:
        meta["finetune"] = finetune
    atomic_write_json(folder / CONFIG, meta)
    return folder


def find_export(folder: str | os.PathLike) -> Path:
    """The export folder for ``folder``: itself or ``folder/export``; DataError naming what is missing."""
    return find_bundle(folder, CONFIG, WEIGHTS, "ERC export", "train one with `emotk erc train`")


def load_export(folder: str | os.PathLike, device: str = "cpu") -> tuple[Any, dict[str, Any], Path]:
    """An export folder (or a run folder holding ``export/``) -> ``(ErcNet in eval mode, meta, folder)``."""
    from emotk.models.erc.model import ErcDims, ErcNet

    folder = find_export(folder)
    meta = read_bundle_config(folder, CONFIG, EXPORT_FORMAT, EXPORT_VERSION, "ERC export")
    if meta.get("finetune"):  # a fine-tuned stage I: encoder + utterance head
        return _load_stage1(folder, meta, device)
    try:
        model = ErcNet(ErcDims(**meta["dims"]), meta["model"])
    except (KeyError, TypeError, ConfigError) as e:
        raise DataError(f"{folder / CONFIG}: the model it describes cannot be built ({e})") from None
    return load_weights(model, folder / WEIGHTS, CONFIG).to(device).eval(), meta, folder


def _load_stage1(folder: Path, meta: dict[str, Any], device: str) -> tuple[Any, dict[str, Any], Path]:
    from emotk.models.erc.finetune import net_from_description

    try:
        model = net_from_description(meta["finetune"], folder)
    except (KeyError, TypeError, ValueError, ConfigError) as e:
        raise DataError(f"{folder / CONFIG}: the stage-I model it describes cannot be built ({e})") from None
    return load_weights(model, folder / WEIGHTS, CONFIG).to(device).eval(), meta, folder

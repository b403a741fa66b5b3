"""Fine-tuned stage-I ERC exports as a feature kind: their utterance embeddings (and logits) computed once into the
sharded feature cache, keyed by the export's weights (``erc-stage1-text`` / ``erc-stage1-speech``), so stage II
(``embed.<m>.from_run``), ``erc evaluate`` and ``features extract`` share them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from emotk.errors import ConfigError, DataError
from emotk.models.erc.finetune import SPEECH_KIND, TEXT_KIND, UtteranceNet


# ---- the export's embeddings in the feature cache -----------------------------------------------------------------
@dataclass
class Stage1Features:
    """The utterance embeddings (and logits) of a fine-tuned stage-I ERC export, keyed by its weights: the same
    weights give the same cache wherever the export lies (a run's ``export/`` and the experiment's copy)."""

    weights_sha256: str = ""  # sha256 of the export's model.safetensors (the cache key)
    export: str = ""  # where to load it from when it is not given to run_extraction (features extract)

    def validate(self) -> None:
        if not self.weights_sha256 and not self.export:
            raise ConfigError("features erc-stage1: set export=RUN_DIR/export")


def _extractor(export: str | os.PathLike, device: str) -> Any:
    """``fn(items) -> [{"embedding", "logits"}]`` of an export, loaded at its first call (nothing is loaded when
    every shard is cached already)."""
    state: dict[str, Any] = {}

    def fn(items: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        if "net" not in state:
            from emotk.models.erc.export import load_export

            net, _, _ = load_export(export, device)
            if not isinstance(net, UtteranceNet):
                raise DataError(f"{export}: not a fine-tuned stage-I export")
            state["net"] = net
        net = state["net"]
        if net.modality == "text":
            from emotk.features.text import record_text

            items = [record_text(r, "text") for r in items]
        logits, emb = net.run(list(items))
        return [{"embedding": e.numpy(), "logits": lo.numpy()} for e, lo in zip(emb, logits)]

    return fn


def _build(cfg: Stage1Features, device: str) -> Any:
    if not cfg.export:
        raise ConfigError("features erc-stage1: set export=RUN_DIR/export")
    return _extractor(cfg.export, device)


def _register() -> None:
    from emotk.features.extract import ExtractorSpec, register_extractor

    register_extractor(ExtractorSpec(TEXT_KIND, Stage1Features, "records", _build,
                                     "utterance embeddings of a fine-tuned ERC stage-I text export"))
    register_extractor(ExtractorSpec(SPEECH_KIND, Stage1Features, "audio", _build,
                                     "utterance embeddings of a fine-tuned ERC stage-I speech export"))


_register()


def is_stage1_export(export: str | os.PathLike) -> bool:
    from emotk.models.erc.export import CONFIG

    try:
        return bool(json.loads((Path(export) / CONFIG).read_text(encoding="utf-8")).get("finetune"))
    except (OSError, ValueError):
        return False


def stage1_cache(export: str | os.PathLike, manifest: Any, cache_root: str | os.PathLike, *, device: str = "cpu",
                 shard: tuple[int, int] | None = None, skip_bad: bool = False,
                 progress: bool | None = None) -> dict[str, Any]:
    """Embed every utterance of ``manifest`` with fine-tuned stage-I export ``export`` into the feature cache
    under ``cache_root`` (once: resumable, keyed by the weights); returns the extraction summary plus
    ``array: "embedding"`` and the export's path."""
    from emotk.core.io import sha256_file
    from emotk.core.runtime import device_name
    from emotk.features.cache import ids_sha256
    from emotk.features.extract import run_extraction
    from emotk.models.erc.export import CONFIG, WEIGHTS

    export = Path(export).resolve()
    meta = json.loads((export / CONFIG).read_text(encoding="utf-8"))
    kind = TEXT_KIND if meta["finetune"]["modality"] == "text" else SPEECH_KIND
    cfg = Stage1Features(weights_sha256=sha256_file(export / WEIGHTS))
    root = Path(cache_root) / f"set-{ids_sha256(manifest.ids)[:12]}"  # one sharded cache per utterance set
    summary = run_extraction(kind, manifest, root, cfg, shard=shard, resume=True, skip_bad=skip_bad,
                             progress=progress, device=device, extractor=_extractor(export, device_name(device)))
    return {**summary, "array": "embedding", "export": str(export), "from_run_config_hash": meta.get("config_hash")}

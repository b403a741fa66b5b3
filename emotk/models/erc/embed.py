"""Stage-I utterance vectors for ERC (``emotk erc embed``): one vector per utterance, from the feature cache.

Each modality's ``embed`` entry names a ``features extract`` kind and its config; :func:`ensure_embeddings` runs
:func:`emotk.features.extract.run_extraction` (sharded, resumable, cached under
``<cache root>/set-<ids12>/<kind>-<hash12>/``, shared by every run and seed) and pools what it stores to one (D,)
vector per utterance:

==================  ==============================  =============================================================
kind                stored                          vector
==================  ==============================  =============================================================
text                embedding (D,)                  as stored (a sentence-encoder mean; MiniLM ships offline)
upstream            hidden (L, T, D)                mean of ``layers`` -> time ``pool`` (mean, or mean + std)
acoustic            acoustic (T, D)                 time ``pool`` (lld functionals)
whisper-encoder     frames (T, D)                   time ``pool``
==================  ==============================  =============================================================

``embed.<m>.from_run`` reads an earlier ``erc train`` run instead: a stage II run's turn embeddings (computed over
each dialogue), or a fine-tuned stage I run's utterance embeddings (:mod:`.finetune`, cached once per export).
``embed.<m>.finetune`` entries are trained by ``erc train --stage 1``, not extracted here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from emotk.errors import ConfigError, DataError

ARRAYS = {"text": "embedding", "upstream": "hidden", "acoustic": "acoustic", "whisper-encoder": "frames"}


def embed_config(entry: Any) -> Any:
    """The extractor config of an ``embed.<modality>`` entry (its kind's schema, checked)."""
    from emotk.features.extract import make_config

    if entry.kind not in ARRAYS:
        from emotk.core.suggest import did_you_mean

        raise ConfigError(f"embed.kind: '{entry.kind}'{did_you_mean(entry.kind, ARRAYS)} is not one of "
                          f"{', '.join(ARRAYS)}")
    return make_config(entry.kind, dict(entry.config))


def pool(entry: Any, array: np.ndarray) -> np.ndarray:
    """One stored array -> the utterance's (D,) float32 vector (see the module table)."""
    a = np.asarray(array, dtype=np.float32)
    if entry.kind == "text":
        return a.reshape(-1)
    if entry.kind == "upstream":
        layers = entry.layers
        a = a.mean(axis=0) if layers == "all" else a[list(layers)].mean(axis=0)
    if a.ndim != 2 or a.shape[0] == 0:
        raise DataError(f"embed {entry.kind}: expected (T, D) frames with T >= 1, got shape {a.shape}")
    if entry.pool == "mean_std":
        return np.concatenate([a.mean(axis=0), a.std(axis=0)]).astype(np.float32)
    return a.mean(axis=0).astype(np.float32)


def ensure_embeddings(cfg: Any, manifest: Any, cache_root: str | os.PathLike, *, device: str = "cpu",
                      modalities: list[str] | None = None, shard: tuple[int, int] | None = None,
                      skip_bad: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Extract (or reuse) the stage-I arrays of every record of ``manifest`` for each modality of ``cfg.model``
    (or ``modalities``) under ``cache_root``; returns ``{modality: extraction summary}`` (cache path, counts)."""
    from emotk.features.cache import ids_sha256
    from emotk.features.extract import get_extractor, run_extraction

    # one sharded cache per utterance set (the cache holds exactly a manifest's ids): several manifests can share
    # a cache root without colliding; every run and seed over one manifest shares the vectors
    root = Path(cache_root) / f"set-{ids_sha256(manifest.ids)[:12]}"
    out = {}
    for mod in modalities or list(cfg.model.modalities):
        entry = cfg.embed.get(mod)
        if entry is None:
            raise ConfigError(f"embed.{mod}: no stage-I source for modality '{mod}'")
        if entry.from_run:
            out[mod] = _run_source(entry.from_run, manifest, device, cache_root, shard=shard, skip_bad=skip_bad,
                                   progress=progress)
            continue
        if entry.finetune:
            raise ConfigError(f"embed.{mod}.finetune: a fine-tuned stage I is trained, not extracted: run `emotk erc "
                              f"train --stage 1`, then give stage II its vectors with embed.{mod}.from_run=RUN_DIR")
        if get_extractor(entry.kind).input == "audio":
            manifest.require_audio(f"erc {mod} embeddings ({entry.kind})")
        out[mod] = run_extraction(entry.kind, manifest, root, embed_config(entry), shard=shard,
                                  resume=True, skip_bad=skip_bad, progress=progress, device=device)
    return out


def load_vectors(cfg: Any, summaries: dict[str, Any], ids: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """``{modality: {utterance id: (D,) vector}}`` for ``ids`` from the caches of :func:`ensure_embeddings`."""
    from emotk.features.cache import FeatureCache

    out: dict[str, dict[str, np.ndarray]] = {}
    for mod, summary in summaries.items():
        if "vectors" in summary:  # embeddings of an earlier stage's run (from_run)
            wanted = set(ids)
            out[mod] = {u: v for u, v in summary["vectors"].items() if u in wanted}
            continue
        if "array" in summary:  # a fine-tuned stage-I run's utterance embeddings, cached (from_run)
            cache = FeatureCache(summary["cache"])
            out[mod] = {u: np.asarray(cache.get(u, summary["array"]), dtype=np.float32) for u in ids if u in cache}
            continue
        entry = cfg.embed.get(mod)
        cache = FeatureCache(summary["cache"])
        name = ARRAYS[entry.kind]
        vectors = {}
        for uid in ids:
            if uid in cache:
                vectors[uid] = pool(entry, cache.get(uid, name))
        out[mod] = vectors
    return out


def _run_source(run: str, manifest: Any, device: str, cache_root: str | os.PathLike | None = None,
                shard: tuple[int, int] | None = None, skip_bad: bool = False,
                progress: bool | None = None) -> dict[str, Any]:
    """The per-turn embeddings of ``erc train`` run ``run`` (its export) over every dialogue of ``manifest``:
    the run's own stage-I vectors (from its experiment's feature cache), then its network in eval mode.
    Returns ``{"from_run", "export", "config_hash", "vectors": {id: (E,) vector}}``. A fine-tuned stage-I run
    embeds each utterance once into the feature cache under ``cache_root`` instead
    (:func:`emotk.models.erc.finetune.stage1_cache`; the summary then names the cache and its ``array``)."""
    import json

    import torch

    from emotk.core.config import from_dict
    from emotk.data.conversations import collate_conversations, group_conversations
    from emotk.models.erc.config import ErcConfig
    from emotk.models.erc.export import find_export, load_export

    export = find_export(run)
    from emotk.models.erc.stage1 import is_stage1_export, stage1_cache

    if is_stage1_export(export):
        if cache_root is None:
            raise ConfigError(f"embed.from_run {run}: a fine-tuned stage-I run needs a feature cache folder")
        return {"from_run": str(run), **stage1_cache(export, manifest, cache_root, device=device, shard=shard,
                                                     skip_bad=skip_bad, progress=progress)}
    model, meta, _ = load_export(export, device)
    source = export.parent  # OUT/export or OUT/runs/<run>/export
    run_json = source / "run.json"
    if not run_json.is_file():
        raise DataError(f"embed.from_run {run}: no run.json beside {export} (pass an `erc train` output folder)")
    raw = json.loads(run_json.read_text(encoding="utf-8"))["config"]
    src = from_dict(ErcConfig, {k: v for k, v in raw.items() if k not in ("task", "runtime")})
    top = source if (source / "runs").is_dir() else source.parent.parent
    cache_root = Path(src.embed.cache_dir) if src.embed.cache_dir else top / "features"
    summaries = ensure_embeddings(src, manifest, cache_root, device=device)
    convs = group_conversations(manifest, label_field="\x00", classes=meta["classes"])
    base = load_vectors(src, summaries, convs.ids)
    vectors: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for start in range(0, len(convs), 32):
            batch = collate_conversations(list(convs)[start:start + 32], base)
            feats = {m: t.to(device) for m, t in batch["features"].items()}
            _, emb = model(feats, batch["mask"].to(device), batch["speaker"].to(device))
            for row, ids in enumerate(batch["ids"]):
                for k, uid in enumerate(ids):
                    vectors[uid] = emb[row, k].float().cpu().numpy()
    return {"from_run": str(run), "export": str(export), "config_hash": meta.get("config_hash"),
            "vectors": vectors}

"""The plan of an EST run: the pair files (copied or built) and what is scored: settings -> selected pair ids,
systems, noise levels; the (system, noise, pair) keys of the scores."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from emotk.errors import ConfigError, DataError, UsageError
from emotk.eval.est.config import EstConfig
from emotk.eval.est.systems import System
from emotk.eval.pairs import ANY_TO_ANY, PARALLEL, SETTINGS, spread

log = logging.getLogger("emotk.eval")

PLAN_FORMAT = "emotk.est_plan"


def load_manifests(paths: Sequence[str | os.PathLike], roots: dict[str, str] | None) -> list[Any]:
    from emotk.data.manifest import Manifest

    out = [Manifest.load(p, roots=roots) for p in paths]
    for m in out:
        m.require_audio("evaluate est")
    return out


def prepare_pairs(cfg: EstConfig, out_dir: Path, pair_files: Sequence[str | os.PathLike],
                  sources: Sequence[Any], references: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Copy (``pair_files``) or build (from the ``sources`` / ``references`` manifests) the pair files of the
    configured settings into ``out_dir/pairs``; returns {setting: {"file", "sha256", "header", "pairs"}}.

    A pair file already in ``out_dir/pairs`` (an earlier shard or run) must be byte-identical to the new one.
    """
    from emotk.core.io import atomic_write_bytes, sha256_bytes
    from emotk.data.manifest import merge
    from emotk.eval.pairs import build_pairs, pairs_text, read_pairs, summary

    folder = out_dir / "pairs"
    folder.mkdir(parents=True, exist_ok=True)
    texts: dict[str, bytes] = {}
    if pair_files:
        for path in pair_files:
            header, _ = read_pairs(path)
            setting = header["setting"]
            if setting in texts:
                raise UsageError(f"--pairs {path}: a second pair file for setting {setting}")
            if cfg.settings and setting not in cfg.settings:
                continue
            texts[setting] = Path(path).read_bytes()
        missing = [s for s in cfg.settings if s not in texts]
        if missing:
            raise UsageError(f"setting {missing[0]} was asked for but no --pairs file holds it")
    else:
        if not sources:
            raise UsageError("give --pairs FILE (a pair file per setting) or --data MANIFEST to build the pairs from")
        src = sources[0] if len(sources) == 1 else merge(sources)
        ref = None if not references else references[0] if len(references) == 1 else merge(references)
        for setting in cfg.settings or PARALLEL:
            pairset = build_pairs(setting, src, ref if setting not in (*PARALLEL, ANY_TO_ANY) else None, cfg.pairs)
            log.info("pairs %s", summary(pairset))
            if not pairset.pairs:
                raise DataError(f"setting {setting}: no pairs could be built ({pairset.report['why']})")
            texts[setting] = pairs_text(pairset).encode("utf-8")
    out = {}
    for setting in [s for s in SETTINGS if s in texts]:
        target = folder / f"{setting}.jsonl"
        data = texts[setting]
        if target.exists() and target.read_bytes() != data:
            raise UsageError(f"{target}: this run folder holds other {setting} pairs; use the same pairs "
                             "(or a new -o folder / --overwrite)")
        if not target.exists():
            atomic_write_bytes(target, data)
        header, pairs = read_pairs(target)
        out[setting] = {"file": str(target.relative_to(out_dir)), "sha256": sha256_bytes(data),
                        "header": header, "pairs": pairs}
    return out


def make_plan(cfg: EstConfig, pairsets: Mapping[str, Mapping[str, Any]], systems: Sequence[System],
              models: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The plan of an evaluation (JSON-ready): per setting the pair file, its hash and the selected ids; systems;
    noise levels (None = clean) and the systems that get them; the model bundles (path, sha256)."""
    noise_systems = cfg.noise.systems or [s.name for s in systems]
    unknown = [n for n in noise_systems if n not in {s.name for s in systems}]
    if unknown:
        raise ConfigError(f"config key 'noise.systems': '{unknown[0]}' is not one of the evaluated systems")
    return {
        "format": PLAN_FORMAT, "version": 1,
        "settings": {s: {"file": p["file"], "sha256": p["sha256"], "pairs": len(p["pairs"]),
                         "selected": spread([x["id"] for x in p["pairs"]], cfg.limit or None)}
                     for s, p in pairsets.items()},
        "systems": [s.name for s in systems],
        "noise": [None, *cfg.noise.snr_db],
        "noise_systems": noise_systems,
        "models": {k: dict(v) for k, v in models.items()},
    }


def planned_keys(plan: Mapping[str, Any]) -> list[tuple[str, float | None, str]]:
    """Every (system, noise dB or None, pair id) the plan scores, in processing order."""
    keys = []
    for setting in plan["settings"]:
        for pid in plan["settings"][setting]["selected"]:
            for system in plan["systems"]:
                for snr in plan["noise"]:
                    if snr is None or system in plan["noise_systems"]:
                        keys.append((system, snr, pid))
    return keys


def score_key(system: str, snr: float | None, pair_id: str) -> str:
    return f"{system}|{'clean' if snr is None else f'{float(snr):g}dB'}|{pair_id}"

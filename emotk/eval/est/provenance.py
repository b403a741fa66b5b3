"""What an EST report records about its run: the model bundles' identity and the provenance block."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from emotk.errors import DataError


def bundle_info(path: Path) -> dict[str, Any]:
    from emotk.core.io import sha256_file

    meta = path / "bundle.json"
    if not meta.is_file():
        raise DataError(f"{path}: not an S2S-ZEST model bundle (no bundle.json); build one with "
                        "`emotk transfer bundle`")
    return {"path": str(path.resolve()), "sha256": sha256_file(meta)}


def provenance(run: Any, plan: Mapping[str, Any], backends: Mapping[str, str]) -> dict[str, Any]:
    from emotk.core.runs import package_versions

    models = plan.get("models") or {}
    first = next(iter(models.values()), {})
    argv = run.meta.get("argv") or []
    versions = package_versions(("torch", "faster-whisper", "jiwer", "resemblyzer", "pyworld", "transformers"))
    prov = {
        "command": " ".join(["emotk", *map(str, argv[1:])]) if argv else None,
        "created": run.meta.get("created"), "emotk_version": run.meta.get("emotk_version"),
        "git_revision": run.meta.get("git_revision"), "config_hash": run.meta.get("config_hash"),
        "bundle": first.get("path"), "bundle_sha256": first.get("sha256"),
        "pairs": {s: {"path": v["file"], "sha256": v["sha256"], "count": len(v["selected"]), "of": v["pairs"]}
                  for s, v in plan["settings"].items()},
        "backends": dict(backends), "versions": versions,
    }
    if len(models) > 1:
        prov["models"] = {k: v.get("sha256") for k, v in models.items()}
    return prov

"""Fetch a registered model where a network exists: Hugging Face snapshots, direct URLs, tiny variants.

Never used by :func:`emotk.hub.resolve.resolve` or :func:`emotk.hub.load.load` (they only look at the file
system); ``emotk models download`` calls :func:`download`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from emotk.errors import DataError, EmotkError, ModelNotFoundError
from emotk.hub.registry import ModelSpec, get_spec
from emotk.hub.resolve import default_dest, fetch_hint, found_path, missing_files, verify_files

# Files of a Hugging Face repository that emotk never needs (other frameworks' weights).
_HF_IGNORE = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "onnx/*", "*.tflite", "tf_model*", "flax_model*",
              "rust_model*", "openvino/*", "coreml/*", "*.mlmodel"]


def download(name: str, dest: str | os.PathLike | None = None, offline: bool | None = None,
             overwrite: bool = False) -> Path:
    """Fetch model ``name`` into ``dest`` (default ``$EMOTK_MODELS/<name>``) as real files; returns its path.

    Hugging Face repositories go through ``huggingface_hub.snapshot_download(local_dir=dest)`` (plain copies,
    no symlinks into the cache; an interrupted download resumes), direct URLs through urllib with the
    registry's sha256 check, tiny variants are written by :func:`emotk.hub.tiny.save_tiny` (no network
    needed). A complete copy already at ``dest`` is kept unless ``overwrite``. Returns the resolved path (the
    file for single-file models). Raises ModelNotFoundError when offline or when the model cannot be fetched
    by a command, DataError when a downloaded file fails its sha256 check.
    """
    spec = get_spec(name)
    target = Path(dest).expanduser() if dest is not None else default_dest(name)
    if target.exists() and not missing_files(spec, target) and not overwrite:
        return found_path(spec, target)
    if spec.is_tiny:
        from emotk.hub.tiny import save_tiny

        save_tiny(name, target, overwrite=True)
        return found_path(spec, target)
    if offline is None:
        from emotk.core.context import is_offline

        offline = is_offline()
    if offline:
        raise ModelNotFoundError(
            f"model {name!r}: refusing to download while offline (--offline / HF_HUB_OFFLINE=1); run "
            f"`emotk models download {name}` on a machine with network access and copy {target} here")
    if spec.hf_repo:
        _download_hf(spec, target, force=overwrite)
    elif spec.url:
        _download_url(spec, target)
    else:
        raise ModelNotFoundError(f"model {name!r} cannot be downloaded by emotk: {fetch_hint(spec, target)}")
    missing = missing_files(spec, target)
    if missing:
        raise ModelNotFoundError(f"model {name!r}: the download into {target} lacks {', '.join(missing)}")
    result = found_path(spec, target)
    if spec.sha256:
        try:
            verify_files(spec, result)
        except DataError:
            if spec.url and not spec.hf_repo:  # never keep a corrupt direct download around
                (target / spec.files[0]).unlink(missing_ok=True)
            raise
    return result


def _download_hf(spec: ModelSpec, target: Path, force: bool = False) -> None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:  # huggingface_hub comes with transformers; say what to install if it is absent
        raise EmotkError("downloading needs huggingface_hub (pip install huggingface_hub)") from err
    target.mkdir(parents=True, exist_ok=True)
    allow = list(spec.files) if spec.kind == "file" else None
    try:
        snapshot_download(repo_id=spec.hf_repo, revision=spec.revision, local_dir=str(target),
                          allow_patterns=allow, ignore_patterns=None if allow else _HF_IGNORE,
                          force_download=force)
    except Exception as err:  # network errors, gated repos, unknown revisions: one line for the user
        first = str(err).splitlines()[0] if str(err) else ""
        raise ModelNotFoundError(f"model {spec.name!r}: download of hf:{spec.hf_repo} failed: "
                                 f"{type(err).__name__}: {first}") from err


def _download_url(spec: ModelSpec, target: Path) -> None:
    import urllib.request

    from emotk.core.io import atomic_path

    assert spec.url is not None
    target.mkdir(parents=True, exist_ok=True)
    out = target / spec.files[0]
    try:
        with atomic_path(out) as tmp, urllib.request.urlopen(spec.url, timeout=60) as resp, open(tmp, "wb") as f:
            shutil.copyfileobj(resp, f, length=1 << 20)
    except OSError as err:
        raise ModelNotFoundError(f"model {spec.name!r}: download of {spec.url} failed: {err}") from err

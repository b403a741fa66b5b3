"""Checkpoints without pickle: weights and optimiser tensors in safetensors, everything else in JSON.

Layout of a run's ``ckpt/`` folder::

    ckpt/step-<N>/model.safetensors   model weights (shared/tied tensors stored once)
    ckpt/step-<N>/state.safetensors   optimiser moments, RNG states ... (every tensor of the training state)
    ckpt/step-<N>/meta.json           step, epoch, sampler position, metrics, and the training state's
                                      non-tensor structure, with {"__tensor__": key} where a tensor was
    ckpt/best/                        the best checkpoint by the validation metric (hard links to the files
                                      of its step folder, or copies where links are impossible)

A checkpoint folder is written under a temporary name and renamed into place, so a crash never leaves a
half-written one; :func:`latest_checkpoint` only sees complete ones. :func:`flatten_state` /
:func:`unflatten_state` turn any nest of dicts (any hashable JSON keys), lists, tuples, tensors, numpy
arrays and JSON scalars into (JSON tree, {key: tensor}) and back, which is how optimiser, scheduler,
grad-scaler and RNG states are stored.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotk.core.io import atomic_write_json
from emotk.errors import DataError

FORMAT = "emotk-checkpoint/1"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
META_FILE = "meta.json"
BEST = "best"
_STEP_RE = re.compile(r"^step-(\d+)$")
_MARKERS = ("__tensor__", "__ndarray__", "__tuple__", "__items__")


# --- generic (JSON, tensors) flattening ------------------------------------------------------------

def flatten_state(obj: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split ``obj`` into a JSON-serialisable tree and a flat ``{key: CPU tensor}`` dict.

    Tensors become ``{"__tensor__": key}``, numpy arrays ``{"__ndarray__": key}``, tuples
    ``{"__tuple__": [...]}`` and dicts with non-string keys ``{"__items__": [[key, value], ...]}``; keys are
    ``/``-joined paths below ``prefix``. Raises TypeError for anything else (no pickle fallback).
    """
    tensors: dict[str, torch.Tensor] = {}

    def enc(o: Any, path: str) -> Any:
        if isinstance(o, torch.Tensor):
            tensors[path] = o.detach().to("cpu", copy=True).contiguous()
            return {"__tensor__": path}
        if isinstance(o, np.ndarray):
            tensors[path] = torch.from_numpy(np.ascontiguousarray(o).copy())
            return {"__ndarray__": path}
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, dict):
            if all(isinstance(k, str) for k in o) and not any(m in o for m in _MARKERS):
                return {k: enc(v, f"{path}/{k}") for k, v in o.items()}
            items = []
            for i, (k, v) in enumerate(o.items()):
                if not isinstance(k, (str, int, float, bool)) and k is not None:
                    raise TypeError(f"cannot store a dict key of type {type(k).__name__} at {path or '/'}")
                items.append([k, enc(v, f"{path}/{i}")])
            return {"__items__": items}
        if isinstance(o, tuple):
            return {"__tuple__": [enc(v, f"{path}/{i}") for i, v in enumerate(o)]}
        if isinstance(o, list):
            return [enc(v, f"{path}/{i}") for i, v in enumerate(o)]
        if o is None or isinstance(o, (bool, int, float, str)):
            return o
        raise TypeError(f"cannot store a {type(o).__name__} at {path or '/'} in a checkpoint (no pickle)")

    return enc(obj, prefix), tensors


def unflatten_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`: rebuild the nest from the JSON tree and the tensors."""

    def dec(o: Any) -> Any:
        if isinstance(o, dict):
            if "__tensor__" in o and len(o) == 1:
                return _get(o["__tensor__"])
            if "__ndarray__" in o and len(o) == 1:
                return _get(o["__ndarray__"]).numpy()
            if "__tuple__" in o and len(o) == 1:
                return tuple(dec(v) for v in o["__tuple__"])
            if "__items__" in o and len(o) == 1:
                return {k: dec(v) for k, v in o["__items__"]}
            return {k: dec(v) for k, v in o.items()}
        if isinstance(o, list):
            return [dec(v) for v in o]
        return o

    def _get(key: str) -> torch.Tensor:
        if key not in tensors:
            raise DataError(f"checkpoint state is missing tensor '{key}' (corrupt or mismatched {STATE_FILE})")
        return tensors[key]

    return dec(tree)


# --- reading and writing checkpoint folders ----------------------------------------------------------

def step_dir_name(step: int) -> str:
    return f"step-{step}"


def write_checkpoint(root: str | os.PathLike, name: str, model: torch.nn.Module, state: dict[str, Any],
                     meta: dict[str, Any]) -> Path:
    """Write ``root/name/`` (model weights, ``state`` tensors, ``meta`` + state structure) atomically.

    ``state``: any nest :func:`flatten_state` accepts (optimiser state dicts, RNG states ...). ``meta``: JSON
    data (step, epoch, metrics ...). An existing ``root/name`` is replaced. Returns the folder.
    """
    from safetensors.torch import save_file, save_model

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    tmp = root / f".{name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        tree, tensors = flatten_state(state)
        save_model(model, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        save_file(tensors, str(tmp / STATE_FILE), metadata={"format": "pt"})
        atomic_write_json(tmp / META_FILE, {"format": FORMAT, **meta, "state": tree})
        _replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` onto ``dst`` (replacing it) with the old one removed only after the move."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta.json`` of checkpoint folder ``path`` (DataError naming the file when unreadable)."""
    meta_path = Path(path) / META_FILE
    if not meta_path.is_file():
        raise DataError(f"{path} is not an emotk checkpoint (no {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{meta_path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{meta_path}: unknown checkpoint format {meta.get('format')!r} (expected {FORMAT})")
    return meta


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], Any]:
    """Return ``(meta, state)`` of checkpoint folder ``path``; ``state`` holds CPU tensors again."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_meta(path)
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise DataError(f"{path}: checkpoint has no {STATE_FILE}")
    try:
        tensors = load_file(str(state_file))
    except Exception as e:  # safetensors raises its own SafetensorError on corrupt files
        raise DataError(f"{state_file}: cannot read ({e})") from None
    return meta, unflatten_state(meta.get("state"), tensors)


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete ``step-N`` folders under ``root`` as ``(N, path)``, sorted by N."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir() and (p / META_FILE).is_file() and (p / MODEL_FILE).is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The ``step-N`` folder with the largest N, or None."""
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def prune_checkpoints(root: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest ``step-N`` folders (``best/`` is separate). Returns the removed."""
    found = list_checkpoints(root)
    removed = []
    for _, path in found[: max(len(found) - max(keep_last, 1), 0)]:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    for pattern in (".*.tmp-*", ".*.old-*"):  # leftovers of a crash while writing or replacing
        for stale in Path(root).glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)
    return removed


def set_best(root: str | os.PathLike, step_dir: str | os.PathLike) -> Path:
    """Make ``root/best`` hold the files of ``step_dir`` (hard links when possible, else copies)."""
    root, step_dir = Path(root), Path(step_dir)
    tmp = root / f".{BEST}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        for f in sorted(step_dir.iterdir()):
            try:
                os.link(f, tmp / f.name)
            except OSError:
                shutil.copy2(f, tmp / f.name)
        _replace_dir(tmp, root / BEST)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root / BEST


def resolve_weights(path: str | os.PathLike) -> Path:
    """Find the weights file for ``path``: a ``.safetensors`` file, a checkpoint folder, a run's ``ckpt/``
    folder or a run folder (its ``ckpt/best``, else its newest ``ckpt/step-N``)."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / MODEL_FILE).is_file():
        return path / MODEL_FILE
    for root in (path / "ckpt", path):
        if (root / BEST / MODEL_FILE).is_file():
            return root / BEST / MODEL_FILE
        latest = latest_checkpoint(root)
        if latest is not None:
            return latest / MODEL_FILE
    raise DataError(f"{path}: no model weights found (expected a .safetensors file, a checkpoint folder or a run)")


def load_model_weights(path: str | os.PathLike, model: torch.nn.Module, strict: bool = True) -> Path:
    """Load weights into ``model`` in place from ``path`` (see :func:`resolve_weights`); returns the file.

    With ``strict`` every model tensor must be in the file and nothing else; a mismatch is a DataError
    naming the file and the first differing keys or shapes.
    """
    from safetensors.torch import load_model

    weights = resolve_weights(path)
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        raise DataError(f"{weights}: checkpoint does not fit the model ({detail[:300]})") from None
    except Exception as e:
        raise DataError(f"{weights}: cannot read weights ({e})") from None
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        raise DataError(f"{weights}: checkpoint does not fit the model ({'; '.join(parts)})")
    return weights


def _few(keys: Any, n: int = 4) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def truncate_file(path: str | os.PathLike, size: int) -> None:
    """Cut ``path`` back to ``size`` bytes (used to drop metrics lines written after a checkpoint)."""
    with contextlib.suppress(FileNotFoundError):
        if os.path.getsize(path) > size:
            os.truncate(path, size)

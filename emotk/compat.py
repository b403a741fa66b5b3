"""Work-arounds for third-party packages that cannot import cleanly on some machines.

The one that matters: ``torchaudio`` wheels built for CUDA (the only torchaudio that installs beside
``torch==2.13.0+cpu``) fail at ``import torchaudio`` on a CPU-only machine, because
``torchaudio._extension`` loads its compiled library with ``torch.ops.load_library`` and lets the
``OSError`` escape. ``transformers`` and ``speechbrain`` import torchaudio whenever it is installed, so
they fail too. torchaudio itself supports a pure-Python mode (``_IS_TORCHAUDIO_EXT_AVAILABLE = False``,
used when no compiled library is shipped); :func:`ensure_torchaudio_importable` switches it into that
mode when, and only when, the compiled library cannot be loaded.

Call it before importing transformers or speechbrain (every module of :mod:`emotk.hub` does).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

_LOCK = threading.Lock()
_STATE: dict[str, object] = {}


def ensure_torchaudio_importable() -> bool:
    """Make ``import torchaudio`` succeed (in pure-Python mode if its C++ extension cannot load).

    Takes nothing. Returns True when torchaudio is importable afterwards, False when it is not installed or
    still cannot be imported; in the latter case ``sys.modules["torchaudio"]`` is set to None so that
    libraries which probe for it (``importlib.util.find_spec``) treat it as absent instead of crashing.
    Idempotent and cheap after the first call.
    """
    with _LOCK:
        if "ok" in _STATE:
            return bool(_STATE["ok"])
        ok = _make_importable()
        _STATE["ok"] = ok
        return ok


def torchaudio_mode() -> str:
    """Return how torchaudio is available: "native", "pure-python", "absent" or "unusable"."""
    ensure_torchaudio_importable()
    return str(_STATE.get("mode", "absent"))


def _make_importable() -> bool:
    existing = sys.modules.get("torchaudio", ...)
    if existing is None:  # already blocked (by us or by the user)
        _STATE["mode"] = "unusable"
        return False
    if existing is not ...:  # already imported successfully
        ext = sys.modules.get("torchaudio._extension")
        native = bool(getattr(ext, "_IS_TORCHAUDIO_EXT_AVAILABLE", False))
        _STATE["mode"] = "native" if native else "pure-python"
        return True
    try:
        spec = importlib.util.find_spec("torchaudio")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        _STATE["mode"] = "absent"
        return False

    _install_tolerant_extension_loader(Path(list(spec.submodule_search_locations)[0]))
    try:
        import torchaudio  # noqa: F401
    except Exception as err:  # the extension failed in a way the tolerant loader could not absorb
        _forget_torchaudio()
        sys.modules["torchaudio"] = None  # type: ignore[assignment]  # makes find_spec() report it absent
        _STATE["mode"] = "unusable"
        _STATE["error"] = f"{type(err).__name__}: {err}"
        return False
    ext = sys.modules.get("torchaudio._extension")
    utils = sys.modules.get("torchaudio._extension.utils")
    if ext is not None and utils is not None and not hasattr(ext, "utils"):
        ext.utils = utils  # a normal import would have set this attribute
    native = bool(getattr(ext, "_IS_TORCHAUDIO_EXT_AVAILABLE", False))
    _STATE["mode"] = "native" if native else "pure-python"
    return True


def _install_tolerant_extension_loader(package_dir: Path) -> None:
    """Pre-load ``torchaudio._extension.utils`` and wrap its ``_load_lib`` so that a library that exists
    but cannot be loaded (``OSError``, e.g. a missing ``libc10_cuda.so``) reports "not available" (False),
    exactly as torchaudio does when no compiled library was shipped at all.

    ``torchaudio/_extension/__init__.py`` imports ``_load_lib`` from this module, so the wrapped function is
    the one it calls. Does nothing when torchaudio's layout is not the expected one (the plain import is
    then tried as is).
    """
    utils_path = package_dir / "_extension" / "utils.py"
    name = "torchaudio._extension.utils"
    if name in sys.modules or not utils_path.is_file():
        return
    spec = importlib.util.spec_from_file_location(name, utils_path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # imports only torch and the standard library
    except Exception:
        return
    original = getattr(module, "_load_lib", None)
    if not callable(original):
        return

    def _load_lib(lib: str) -> bool:
        try:
            return bool(original(lib))
        except OSError as err:
            _STATE.setdefault("extension_error", f"{lib}: {err}")
            return False

    module._load_lib = _load_lib  # type: ignore[attr-defined]
    sys.modules[name] = module


def _forget_torchaudio() -> None:
    for key in [k for k in sys.modules if k == "torchaudio" or k.startswith("torchaudio.")]:
        del sys.modules[key]

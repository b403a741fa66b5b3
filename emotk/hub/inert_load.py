"""Read third-party torch checkpoints whose metadata pickles foreign classes, with ``weights_only=True`` only.

A fairseq checkpoint (``{"cfg": ..., "model": state_dict, ...}``) may pickle its config as omegaconf objects
(``DictConfig``, ``AnyNode``, ...), an ``argparse.Namespace`` or fairseq's own classes beside the tensors. The
weights-only unpickler rejects every global it does not know. :func:`load_checkpoint` lists those globals
(``torch.serialization.get_unsafe_globals_in_checkpoint``, a static read of the pickle) and registers, under each
original name, an *inert stand-in* made here: a class that only records the arguments and the state the pickle
gives it. Nothing named in the file is imported or called, so the file cannot run code; tensors are rebuilt by
torch's own weights-only path. :func:`plain` then turns the stand-ins into dicts, lists and scalars (an omegaconf
config becomes the nested dict it holds).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from emotk.errors import DataError

# Plain data types that may appear as references in a pickle (omegaconf stores ``object_type=dict``); they are
# allowed as themselves, calling them builds only data.
_DATA_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "int", "float", "str", "bool", "bytes")
_MAX_DEPTH = 64  # nesting bound of :func:`plain` (configs are shallow; guards against reference cycles)


class ForeignObject:
    """An inert record of an object of a class the checkpoint names (``global_name``, "module.qualname").

    ``args`` are the constructor arguments the pickle passed (an enum member's value, for instance) and
    ``state`` what it set afterwards (``__dict__``-like state, or None).
    """

    global_name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "ForeignObject":
        obj = object.__new__(cls)
        obj.args = args
        obj.state = None
        return obj

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.global_name}>"


def _empty_dict(*args: Any) -> dict:
    """Stand-in for ``collections.defaultdict(factory)``: a plain dict (the factory is not kept)."""
    return {}


def _stand_in(full_name: str) -> Any:
    module, _, name = full_name.rpartition(".")
    if module == "builtins" and name in _DATA_BUILTINS:
        import builtins

        return getattr(builtins, name)
    if full_name == "collections.defaultdict":
        return _empty_dict
    return type(name or "Foreign", (ForeignObject,), {"global_name": full_name, "__module__": __name__})


def load_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, with inert stand-ins for foreign globals.

    Returns the unpickled object (tensors as tensors; objects of foreign classes as :class:`ForeignObject`).
    Raises DataError (one line, naming the file) when the file is missing or cannot be read.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint file not found")
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as err:  # not a zip-format torch file (legacy torch.save, or not torch at all)
        raise DataError(f"{path}: not a torch checkpoint that can be read safely "
                        f"({type(err).__name__}: {_first_line(err)})") from None
    safe = [(_stand_in(n), n) for n in names]
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"{path}: cannot read the checkpoint with weights_only=True "
                        f"({type(err).__name__}: {_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def plain(obj: Any, _depth: int = 0) -> Any:
    """Turn stand-ins into plain data: omegaconf containers -> dict / list, value nodes -> their value, enum
    members -> their value, other objects -> the dict of their public state; dict keys become strings.

    Tensors and other values pass unchanged. Private state (names starting with "_", e.g. omegaconf's
    ``_parent`` back-reference) is dropped; nesting deeper than 64 levels becomes None.
    """
    if _depth > _MAX_DEPTH:
        return None
    nxt = _depth + 1
    if isinstance(obj, ForeignObject):
        state = obj.state
        if isinstance(state, dict) and "_content" in state:  # omegaconf DictConfig / ListConfig
            return plain(state["_content"], nxt)
        if isinstance(state, dict) and "_val" in state:  # omegaconf value node
            return plain(state["_val"], nxt)
        if state is None and len(obj.args) == 1:  # an enum member pickles as Class(value)
            return plain(obj.args[0], nxt)
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], (dict, type(None))):
            state = {**(state[0] or {}), **(state[1] or {})}  # (__dict__, __slots__ values)
        if isinstance(state, dict):
            return {str(k): plain(v, nxt) for k, v in state.items() if not str(k).startswith("_")}
        return None
    if isinstance(obj, dict):
        return {str(k): plain(v, nxt) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v, nxt) for v in obj]
    return obj

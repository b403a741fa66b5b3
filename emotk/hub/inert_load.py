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
# allowed as themselves, calling them builds only data. ``bytes`` and ``int`` are wrapped: ``bytes(10**12)`` or
# ``int("9" * 10**8)`` from a crafted file would build data too, but exhaust memory or time.
_DATA_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "float", "str", "bool")
_MAX_DEPTH = 64  # nesting bound of :func:`plain` (configs are shallow; guards against reference cycles)
_MAX_NODES = 1_000_000  # objects :func:`plain` visits at most (shared references could otherwise explode)
_MAX_DATA = 1 << 20  # largest bytes / digits a stand-in builtin accepts


def _bounded_bytes(*args: Any) -> bytes:
    """``bytes(...)`` for data of at most 1 MiB (a size argument, or an iterable/bytes-like of that length)."""
    if args and isinstance(args[0], int) and not isinstance(args[0], bool) and args[0] > _MAX_DATA:
        raise ValueError(f"bytes({args[0]}) in a checkpoint: larger than {_MAX_DATA} bytes")
    if args and hasattr(args[0], "__len__") and len(args[0]) > _MAX_DATA:
        raise ValueError("bytes data in a checkpoint larger than 1 MiB")
    return bytes(*args)


def _bounded_int(*args: Any) -> int:
    """``int(...)`` of a number or of a string of at most 1 Mi characters."""
    if args and isinstance(args[0], (str, bytes)) and len(args[0]) > _MAX_DATA:
        raise ValueError("int() of a string longer than 1 Mi characters in a checkpoint")
    return int(*args)


_WRAPPED_BUILTINS = {"bytes": _bounded_bytes, "int": _bounded_int}


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
    if module == "builtins" and name in _WRAPPED_BUILTINS:
        return _WRAPPED_BUILTINS[name]
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
    serialization = torch.serialization
    if not (hasattr(serialization, "get_unsafe_globals_in_checkpoint") and hasattr(serialization, "safe_globals")):
        raise DataError(f"{path}: reading this checkpoint safely needs torch >= 2.6 (installed: {torch.__version__})")
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as err:  # not a zip-format torch file (legacy torch.save, or not torch at all)
        raise DataError(f"{path}: not a torch checkpoint that can be read safely "
                        f"({type(err).__name__}: {first_line(err)})") from None
    safe = [(_stand_in(n), n) for n in names]
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"{path}: cannot read the checkpoint with weights_only=True "
                        f"({type(err).__name__}: {first_line(err)})") from None


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def plain(obj: Any) -> Any:
    """Turn stand-ins into plain data: omegaconf containers -> dict / list, value nodes -> their value, enum
    members -> their value, other objects -> the dict of their public state; dict keys become strings.

    Tensors and other values pass unchanged. Private state (names starting with "_", e.g. omegaconf's
    ``_parent`` back-reference) is dropped; nesting deeper than 64 levels becomes None. Raises DataError when
    the metadata has more than a million nodes (shared references in a crafted file could explode the walk).
    """
    return _plain(obj, 0, [_MAX_NODES])


def _plain(obj: Any, depth: int, budget: list[int]) -> Any:
    if depth > _MAX_DEPTH:
        return None
    budget[0] -= 1
    if budget[0] < 0:
        raise DataError(f"checkpoint metadata has more than {_MAX_NODES} nodes: not a model config")
    nxt = depth + 1
    if isinstance(obj, ForeignObject):
        state = obj.state
        if isinstance(state, dict) and "_content" in state:  # omegaconf DictConfig / ListConfig
            return _plain(state["_content"], nxt, budget)
        if isinstance(state, dict) and "_val" in state:  # omegaconf value node
            return _plain(state["_val"], nxt, budget)
        if state is None and len(obj.args) == 1:  # an enum member pickles as Class(value)
            return _plain(obj.args[0], nxt, budget)
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], (dict, type(None))):
            state = {**(state[0] or {}), **(state[1] or {})}  # (__dict__, __slots__ values)
        if isinstance(state, dict):
            return {str(k): _plain(v, nxt, budget) for k, v in state.items() if not str(k).startswith("_")}
        return None
    if isinstance(obj, dict):
        return {str(k): _plain(v, nxt, budget) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, nxt, budget) for v in obj]
    return obj

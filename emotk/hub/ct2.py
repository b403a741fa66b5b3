"""emotk's reader of CTranslate2 model files (``model.bin``): plain bytes in, numpy arrays out; no ctranslate2.

Layout (little-endian, as ``ctranslate2.specs.model_spec.ModelSpec._serialize`` writes binary version 6; versions
4 and 5 share it): ``uint32`` binary version; string spec name (e.g. "WhisperSpec"); ``uint32`` spec revision;
``uint32`` number of variables, then per variable: string name, ``uint8`` rank, rank x ``uint32`` shape, ``uint8``
dtype id, ``uint32`` byte count, the raw bytes; then ``uint32`` number of aliases, each two strings (alias,
variable it stands for). A string is ``uint16`` length (with the trailing NUL), the UTF-8 bytes and a NUL.

Dtype ids (CTranslate2's ``DataType`` enum): 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16.
Quantized weights (``int8`` / ``int16``) come with a ``<name>_scale`` variable (int8: one float per output row,
int16: one float): :meth:`CT2Model.float32` divides by it.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from emotk.errors import DataError

SUPPORTED_VERSIONS = (4, 5, 6)
_DTYPES: dict[int, tuple[str, np.dtype]] = {
    0: ("float32", np.dtype("<f4")),
    1: ("int8", np.dtype("i1")),
    2: ("int16", np.dtype("<i2")),
    3: ("int32", np.dtype("<i4")),
    4: ("float16", np.dtype("<f2")),
    5: ("bfloat16", np.dtype("<u2")),  # stored as the upper 16 bits of a float32
}


@dataclass
class CT2Model:
    """The content of a CTranslate2 model directory.

    ``variables``: name -> array as stored (bfloat16 as uint16 bit patterns); ``dtypes``: name -> CTranslate2
    dtype name; ``aliases``: alias -> the variable name it shares; ``config``: ``config.json`` (``{}`` when absent).
    """

    path: Path
    version: int
    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    dtypes: dict[str, str]
    aliases: dict[str, str] = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name in self.variables or name in self.aliases

    def raw(self, name: str) -> np.ndarray:
        """The stored array of ``name`` (aliases followed); DataError naming the file when it is missing."""
        seen = name
        while seen in self.aliases:
            seen = self.aliases[seen]
        if seen not in self.variables:
            raise DataError(f"{self.path}: no variable {name!r} in this {self.spec} model")
        return self.variables[seen]

    def dtype(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]
        return self.dtypes[name]

    def float32(self, name: str) -> np.ndarray:
        """``name`` as float32: float16/bfloat16 widened, int8/int16 weights divided by ``<name>_scale``."""
        value, dtype = self.raw(name), self.dtype(name)
        if dtype == "float32":
            return value.astype(np.float32)
        if dtype == "float16":
            return value.astype(np.float32)
        if dtype == "bfloat16":
            return (value.astype(np.uint32) << 16).view(np.float32)
        if dtype in ("int8", "int16"):
            if f"{name}_zero" in self:
                raise DataError(f"{self.path}: variable {name!r} is {dtype} with zero points (AWQ-style "
                                "quantization); emotk reads float32/float16/bfloat16 and CTranslate2's int8/int16")
            if f"{name}_scale" not in self:
                raise DataError(f"{self.path}: variable {name!r} is {dtype} but has no {name}_scale to dequantize "
                                "it with")
            scale = self.float32(f"{name}_scale")
            rows = value.reshape(value.shape[0], -1).astype(np.float32) if value.ndim else value.astype(np.float32)
            if dtype == "int8" and scale.ndim == 1 and scale.shape[0] == value.shape[0]:
                return (rows / scale[:, None]).reshape(value.shape)
            if scale.size == 1:
                return (rows / scale.reshape(())).reshape(value.shape)
            raise DataError(f"{self.path}: variable {name!r} ({dtype}, shape {value.shape}) has a scale of shape "
                            f"{scale.shape} that fits neither per-row nor per-tensor quantization")
        raise DataError(f"{self.path}: variable {name!r} has dtype {dtype}, which is not a weight dtype emotk can "
                        "read (float32, float16, bfloat16, int8/int16 with a scale)")


def read_ct2_model(path: str | os.PathLike, select: Callable[[str], bool] | None = None) -> CT2Model:
    """Read a CTranslate2 model: ``path`` is the model directory (holding ``model.bin``, maybe ``config.json``)
    or the ``model.bin`` file itself. ``select(name)`` picks which variables to keep (the others are skipped
    without being copied; aliases are always kept). Raises DataError (one line, naming the file) when the file
    is missing, truncated, of an unknown binary version or holds an unknown dtype."""
    path = Path(path)
    model_bin = path / "model.bin" if path.is_dir() else path
    if not model_bin.is_file():
        raise DataError(f"{model_bin}: no such CTranslate2 model file")
    config: dict = {}
    config_file = model_bin.parent / "config.json"
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DataError(f"{config_file}: not valid JSON ({err})") from None
    size = model_bin.stat().st_size
    if size == 0:
        raise DataError(f"{model_bin}: empty file (not a CTranslate2 model)")
    with open(model_bin, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            return _parse(buf, model_bin, config, select)
        except (struct.error, UnicodeDecodeError, ValueError) as err:
            raise DataError(f"{model_bin}: truncated or not a CTranslate2 model file ({err})") from None


class _Cursor:
    def __init__(self, buf: mmap.mmap) -> None:
        self.buf, self.pos = buf, 0

    def unpack(self, fmt: str) -> tuple:
        out = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return out

    def string(self) -> str:
        (n,) = self.unpack("H")
        if n == 0 or self.pos + n > len(self.buf):
            raise ValueError(f"bad string of length {n} at byte {self.pos}")
        raw = self.buf[self.pos: self.pos + n - 1]
        self.pos += n
        return raw.decode("utf-8")

    def take(self, n: int) -> int:
        start = self.pos
        if start + n > len(self.buf):
            raise ValueError(f"needs {n} bytes at byte {start} but the file has {len(self.buf)}")
        self.pos += n
        return start


def _parse(buf: mmap.mmap, model_bin: Path, config: dict, select: Callable[[str], bool] | None) -> CT2Model:
    cur = _Cursor(buf)
    (version,) = cur.unpack("I")
    if version not in SUPPORTED_VERSIONS:
        raise DataError(f"{model_bin}: CTranslate2 binary version {version} is not supported (emotk reads "
                        f"{', '.join(map(str, SUPPORTED_VERSIONS))}; convert the model again with a current "
                        "ctranslate2 converter)")
    spec = cur.string()
    (revision,) = cur.unpack("I")
    (count,) = cur.unpack("I")
    variables: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for _ in range(count):
        name = cur.string()
        (rank,) = cur.unpack("B")
        shape = cur.unpack(f"{rank}I") if rank else ()
        type_id, nbytes = cur.unpack("BI")
        if type_id not in _DTYPES:
            raise DataError(f"{model_bin}: variable {name!r} has unknown dtype id {type_id} (known: "
                            + ", ".join(f"{k} {v[0]}" for k, v in _DTYPES.items()) + ")")
        dtype_name, dtype = _DTYPES[type_id]
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes != expected:
            raise ValueError(f"variable {name!r}: {nbytes} bytes for shape {tuple(shape)} of {dtype_name}")
        start = cur.take(nbytes)
        if select is None or select(name):
            variables[name] = np.frombuffer(buf, dtype=dtype, count=expected // dtype.itemsize,
                                            offset=start).reshape(shape).copy()
            dtypes[name] = dtype_name
    aliases: dict[str, str] = {}
    (n_alias,) = cur.unpack("I")
    for _ in range(n_alias):
        alias = cur.string()
        aliases[alias] = cur.string()
    if cur.pos != len(buf):
        raise ValueError(f"{len(buf) - cur.pos} unexpected bytes after the aliases")
    return CT2Model(model_bin, version, spec, revision, variables, dtypes, aliases, config)

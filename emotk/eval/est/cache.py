"""Caches of an EST run: a small LRU, and the id -> audio index over the given manifests (decoded audio kept)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np

from emotk.errors import DataError
from emotk.eval.pairs import audio_index


class LRU(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_or(self, key: Any, make: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        if len(self) > self.size:
            self.popitem(last=False)
        return value


class Corpus:
    """id -> (manifest, record) over every given manifest; decoded audio kept in a small LRU."""

    def __init__(self, manifests: Sequence[Any], cache: int = 256) -> None:
        self.where = audio_index(manifests)
        self._audio = LRU(cache)
        self.analysis = LRU(cache)  # (model, reference id) -> the bundle's reference analysis

    def record(self, uid: str, pair_id: str, key: str) -> dict[str, Any]:
        if uid not in self.where:
            raise DataError(f"pair {pair_id}: key '{key}': id '{uid}' is in none of the --data/--references "
                            "manifests")
        return self.where[uid][1]

    def audio(self, uid: str) -> np.ndarray:
        def load() -> np.ndarray:
            from emotk.data.audio import load_audio

            m, rec = self.where[uid]
            return load_audio(m.resolve_path(rec), start=rec.get("start"), end=rec.get("end"))

        return self._audio.get_or(uid, load)

"""Label maps: the class list of a corpus/protocol and how raw labels map onto it.

A label map file (``data_manifests/<dataset>/label_map*.json``)::

    {"name": "iemocap-4", "dataset": "iemocap", "field": "emotion",
     "classes": ["angry", "happy", "neutral", "sad"],
     "map": {"ang": "angry", "hap": "happy", "exc": "happy", ...},   # raw -> class; null drops
     "sha256": "..."}                                               # of the rest, added on write
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emotk.core.io import atomic_write_json, sha256_json
from emotk.errors import DataError


@dataclass
class LabelMap:
    name: str
    classes: list[str]
    map: dict[str, str | None] = field(default_factory=dict)
    dataset: str = ""
    field: str = "emotion"

    def __post_init__(self) -> None:
        if len(set(self.classes)) != len(self.classes):
            raise DataError(f"label map '{self.name}': duplicate classes in {self.classes}")
        for raw, cls in self.map.items():
            if cls is not None and cls not in self.classes:
                raise DataError(f"label map '{self.name}': '{raw}' maps to '{cls}', which is not a class")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def index(self, label: str) -> int:
        return self.classes.index(label)

    def convert(self, raw: Any) -> str | None:
        """Raw label -> class name; None means "not part of this label set" (drop the utterance)."""
        if raw is None:
            return None
        raw = str(raw)
        if raw in self.map:
            return self.map[raw]
        return raw if raw in self.classes else None

    def knows(self, raw: Any) -> bool:
        """True when ``raw`` is a class or explicitly mapped (also when mapped to None = dropped on purpose)."""
        return raw is not None and (str(raw) in self.classes or str(raw) in self.map)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dataset": self.dataset, "field": self.field, "classes": self.classes,
                "map": self.map}

    @property
    def sha256(self) -> str:
        return sha256_json(self.to_dict())

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, {**self.to_dict(), "sha256": self.sha256})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LabelMap":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"label map not found: {path}") from None
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        for key in ("name", "classes"):
            if key not in data:
                raise DataError(f"{path}: label map lacks '{key}'")
        return cls(
            name=data["name"], classes=list(data["classes"]), map=dict(data.get("map", {})),
            dataset=data.get("dataset", ""), field=data.get("field", "emotion"),
        )

    @classmethod
    def from_labels(cls, name: str, labels: list[str], dataset: str = "", field: str = "emotion") -> "LabelMap":
        return cls(name=name, classes=sorted(set(labels)), dataset=dataset, field=field)

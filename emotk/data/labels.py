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


# ---- label names across corpora ---------------------------------------------------------------------------------
# Canonical emotion names and their synonyms (lower-cased; corpus codes such as IEMOCAP's 'ang' included). Two label
# names are the same emotion when they fall in one group. The one table every cross-corpus mapping uses.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "anger": ("angry", "ang", "mad"),
    "happiness": ("happy", "joy", "joyful", "hap"),
    "sadness": ("sad", "sorrow"),
    "fear": ("fearful", "afraid", "scared", "fea"),
    "disgust": ("disgusted", "dis"),
    "surprise": ("surprised", "sur", "amazed"),
    "neutral": ("neu",),
    "calm": ("calmness", "relaxed"),
    "boredom": ("bored", "boring"),
    "frustration": ("frustrated", "fru"),
    "excitement": ("excited", "exc"),
    "contempt": ("contemptuous", "con"),
    "pleasure": ("pleased", "pleasant"),
    "amusement": ("amused",),
    "pride": ("proud",),
    "shame": ("ashamed",),
    "guilt": ("guilty",),
    "relief": ("relieved",),
    "interest": ("interested",),
}
_CANON = {name: canon for canon, names in SYNONYMS.items() for name in (canon, *names)}


def canonical_label(name: Any) -> str:
    """The canonical emotion name of a label (``'Fearful'`` -> ``'fear'``); unknown names come back lower-cased."""
    text = str(name).strip().lower()
    return _CANON.get(text, text)


@dataclass
class LabelMatch:
    """How one corpus's labels map onto a model's classes (:func:`match_labels`).

    mapping: source label -> model class, or None (dropped). how: source label -> ``exact`` | ``label map`` |
    ``synonym`` | ``user`` | ``none``. shared: model classes some source label maps onto (model order).
    absent: model classes no source label maps onto (they can never be predicted on this corpus).
    dropped: source label -> utterances dropped (no model class for it).
    """

    mapping: dict[str, str | None]
    how: dict[str, str]
    shared: list[str]
    absent: list[str]
    dropped: dict[str, int]

    @property
    def identity(self) -> bool:
        """True when every source label is a model class by name or by the run's label map, nothing drops and
        every model class occurs (nothing to map, drop or renormalise)."""
        return not self.dropped and not self.absent and all(h in ("exact", "label map") for h in self.how.values())

    @property
    def dropped_utterances(self) -> int:
        return sum(self.dropped.values())

    def summary(self) -> str:
        """One line: the mapped labels, what is dropped and which model classes are absent."""
        mapped = [f"{s}->{c}" for s, c in sorted(self.mapping.items()) if c is not None and s != c]
        parts = [f"scoring {len(self.shared)} shared classes ({', '.join(self.shared)})"]
        if mapped:
            parts.append(f"mapped {', '.join(mapped)}")
        if self.dropped:
            parts.append(f"dropped {self.dropped_utterances} utterance(s) with labels "
                         + ", ".join(f"'{k}' ({v})" for k, v in sorted(self.dropped.items())))
        if self.absent:
            parts.append(f"model classes absent from the data (never predicted): {', '.join(self.absent)}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"mapping": dict(sorted(self.mapping.items())), "how": dict(sorted(self.how.items())),
                "shared_classes": self.shared, "absent_classes": self.absent,
                "dropped_labels": dict(sorted(self.dropped.items())), "dropped_utterances": self.dropped_utterances,
                "summary": self.summary()}


def match_labels(counts: dict[str, int], classes: list[str], user: dict[str, str | None] | None = None,
                 base: "LabelMap | None" = None) -> LabelMatch:
    """Map a corpus's labels (``counts``: label -> utterances) onto a model's ``classes``.

    Per source label, the first that applies: the ``user`` mapping (``{src: class}``; None or "" drops the label),
    the exact class name, the run's own label map ``base`` (raw codes it knows), a synonym of :data:`SYNONYMS`
    (case-insensitive; e.g. ``fearful`` -> ``fear``), else dropped. A user target that is not a class is a
    UsageError naming the closest class; a user source that does not occur is a UsageError too.
    """
    from emotk.core.suggest import did_you_mean
    from emotk.errors import UsageError

    user = dict(user or {})
    for src, dst in user.items():
        if dst not in (None, "") and dst not in classes:
            raise UsageError(f"--map {src}={dst}: '{dst}' is not a class of the model{did_you_mean(dst, classes)}; "
                             f"classes: {', '.join(classes)} (an empty target drops '{src}')")
        if src not in counts:
            raise UsageError(f"--map {src}={dst or ''}: the data has no label '{src}'{did_you_mean(src, counts)}; "
                             f"labels: {', '.join(sorted(counts))}")
    by_canon: dict[str, list[str]] = {}
    for c in classes:
        by_canon.setdefault(canonical_label(c), []).append(c)
    mapping: dict[str, str | None] = {}
    how: dict[str, str] = {}
    for src in sorted(counts):
        if src in user:
            mapping[src], how[src] = (user[src] or None), "user"
        elif src in classes:
            mapping[src], how[src] = src, "exact"
        elif base is not None and base.knows(src) and (base.convert(src) is None or base.convert(src) in classes):
            mapping[src], how[src] = base.convert(src), "label map"
        elif len(by_canon.get(canonical_label(src), [])) == 1:
            mapping[src], how[src] = by_canon[canonical_label(src)][0], "synonym"
        else:
            mapping[src], how[src] = None, "none"
    used = {c for c in mapping.values() if c is not None}
    return LabelMatch(mapping=mapping, how=how, shared=[c for c in classes if c in used],
                      absent=[c for c in classes if c not in used],
                      dropped={s: counts[s] for s, c in mapping.items() if c is None})


def parse_label_mapping(items: list[str] | None = None, file: str | os.PathLike | None = None) -> dict[str, str | None]:
    """``--map SRC=DST`` items and/or a ``--map-file`` (JSON object, or two-column CSV ``src,dst``) -> ``{src: dst}``
    (an empty DST, or JSON null, means "drop"). Items given on the command line win over the file."""
    from emotk.errors import UsageError

    out: dict[str, str | None] = {}
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise UsageError(f"--map-file {path}: file not found")
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(data, dict) or not all(isinstance(v, (str, type(None))) for v in data.values()):
                raise DataError(f"{path}: expected a JSON object of label -> class (or null)")
            out.update({str(k): (v or None) for k, v in data.items()})
        else:
            import csv

            for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
                if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                    continue
                if len(row) != 2:
                    raise DataError(f"{path}:{lineno}: expected two columns 'label,class', got {len(row)}")
                src, dst = row[0].strip(), row[1].strip()
                if lineno == 1 and (src.lower(), dst.lower()) in {("src", "dst"), ("source", "target"),
                                                                 ("label", "class")}:
                    continue  # header
                out[src] = dst or None
    for item in items or ():
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UsageError(f"--map {item!r}: expected SOURCE=CLASS (e.g. --map fearful=fear; SOURCE= drops it)")
        src, dst = item.split("=", 1)
        out[src.strip()] = dst.strip() or None
    return out


def renormalise(probabilities: Any, keep: list[int]) -> Any:
    """(N, K) class probabilities -> (N, len(keep)) over the kept columns, rows summing to 1 again.

    The same as a softmax over the kept logits: a class outside ``keep`` can never be predicted."""
    import numpy as np

    p = np.asarray(probabilities, dtype=np.float64)[:, keep]
    return p / np.clip(p.sum(axis=1, keepdims=True), 1e-300, None)


def unknown_labels_message(counts: dict[str, int], first_lines: dict[str, int], where: str, field_name: str,
                           label_map: "LabelMap", hint: str) -> str:
    """One line listing every unknown label once with its count and first line number, then ``hint``."""
    shown = ", ".join(f"'{k}' ({counts[k]}, first on line {first_lines[k]})"
                      for k in sorted(counts, key=lambda k: (-counts[k], k)))
    n = len(counts)
    return (f"{where}: {n} unknown {field_name} label{'s' if n != 1 else ''} not in label map '{label_map.name}' "
            f"(classes: {', '.join(label_map.classes)}): {shown}; {hint}")


def find_label_map(name_or_path: str, dataset: str | None = None) -> LabelMap:
    """A label map by file path, by committed name, or (empty name) the dataset's default map."""
    from emotk.data.protocols import protocols_dir

    text = str(name_or_path or "")
    path = Path(text).expanduser()
    if text and path.is_file():
        return LabelMap.load(path)
    if text.endswith(".json") or os.sep in text:
        raise DataError(f"label map file not found: {path}")
    root = protocols_dir()
    if not text:
        default = root / str(dataset) / "label_map.json"
        if dataset and default.is_file():
            return LabelMap.load(default)
        raise DataError(f"no default label map for dataset '{dataset}'")
    known: dict[str, Path] = {}
    for p in sorted(root.glob("*/label_map*.json")):
        try:
            name = json.loads(p.read_text(encoding="utf-8")).get("name")
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(name, str):
            known.setdefault(name, p)
    if text in known:
        return LabelMap.load(known[text])
    from emotk.core.suggest import did_you_mean

    raise DataError(f"unknown label map '{text}'{did_you_mean(text, known)}; "
                    f"known: {', '.join(sorted(known)) or 'none'} (or give the path of a label map JSON file)")

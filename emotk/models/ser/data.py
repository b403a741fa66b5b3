"""SER data preparation: manifest -> (segments) -> labels -> protocol splits.

:func:`prepare` reads the manifest once and keeps the usable utterances: records of the protocol's dataset,
cut into ``segment_seconds`` windows when asked (DAIC-WOZ: 10 s), with a label the label map knows
(classification) or with every regression target (VAD). :meth:`PreparedData.splits` then gives the
train / valid / test items of one fold. Every dropped record is counted by reason (and logged), never silent.

Label maps: ``data.label_map`` names a committed map (``iemocap-4`` ->
``data_manifests/iemocap/label_map.iemocap-4.json``, ``meld`` -> ``data_manifests/meld/label_map.json``) or a
file; empty = the committed ``label_map.json`` of the manifest's dataset when there is one, else the sorted
labels of the training split. ``data.classes: [..]`` keeps only the records of those classes (the head's classes,
in that order; each must occur in the training split). Labels the map does not know are one DataError that lists
each once with its count and first line.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from emotk.core.log import get_logger
from emotk.data.labels import LabelMap, find_label_map
from emotk.data.manifest import Manifest
from emotk.data.protocols import SPLIT_ALIASES  # one table for protocol "" and manifest-split
from emotk.errors import DataError

log = get_logger("ser")


@dataclass
class SerItem:
    """One utterance of a split: its id and target (class index, or a list of regression values)."""

    id: str
    target: Any


@dataclass
class PreparedData:
    """The usable utterances of a manifest, their labels, and the protocol that splits them."""

    manifest: Manifest  # usable records only (segments when segmenting), paths as in the source manifest
    task_type: str
    targets: dict[str, Any]  # id -> class name (classification) or [float] (regression)
    classes: list[str] | None = None  # classification: the label list (output order of the head)
    target_names: list[str] | None = None  # regression: the target fields
    label_map: LabelMap | None = None
    protocol: Any = None  # emotk.data.protocols.Protocol or None (records' own `split` field)
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> records dropped

    @property
    def fold_names(self) -> list[str]:
        return self.protocol.fold_names if self.protocol is not None else ["split"]

    def splits(self, fold: str | int | None = None) -> dict[str, list[SerItem]]:
        """``{"train", "valid", "test"}`` -> items (sorted by id) of ``fold``; classes become indices."""
        if self.protocol is not None:
            ids = self.protocol.assign(self.manifest, _fold_key(fold))
        else:
            ids = {"train": [], "valid": [], "test": []}
            for rec in self.manifest:
                split = SPLIT_ALIASES.get(str(rec.get("split", "")).lower())
                if split is not None:
                    ids[split].append(rec["id"])
            ids = {k: sorted(v) for k, v in ids.items()}
        if not ids["train"]:
            where = f"protocol '{self.protocol.name}' fold {fold!r}" if self.protocol is not None else \
                "the manifest's `split` field (or give --protocol)"
            raise DataError(f"no training utterances from {where}")
        index = {c: i for i, c in enumerate(self.classes or [])}
        out = {}
        for split, split_ids in ids.items():
            if self.task_type == "classification":
                out[split] = [SerItem(i, index[self.targets[i]]) for i in split_ids]
            else:
                out[split] = [SerItem(i, list(self.targets[i])) for i in split_ids]
        return out

    def inputs(self) -> dict[str, str]:
        """Hashes of what the results depend on: manifest, protocol, label map (for run provenance)."""
        out = {"manifest_sha256": self.manifest.sha256}
        if self.protocol is not None:
            out["protocol"] = self.protocol.name
            out["protocol_sha256"] = self.protocol.sha256
        if self.label_map is not None:
            out["label_map"] = self.label_map.name
            out["label_map_sha256"] = self.label_map.sha256
        return out


# ---- label maps ---------------------------------------------------------------------------------------------
# ---- segments -----------------------------------------------------------------------------------------------
def _duration(m: Manifest, rec: dict[str, Any]) -> float:
    start, end = rec.get("start"), rec.get("end")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        return float(end) - float(start)
    if isinstance(rec.get("duration"), (int, float)):
        return float(rec["duration"])
    from emotk.data.audio import audio_info

    total = audio_info(m.resolve_path(rec)).duration
    return total - float(start or 0.0)


def segment_records(m: Manifest, seconds: float, min_seconds: float = 1.0) -> Manifest:
    """Cut every record longer than ``seconds`` into consecutive windows (DAIC-WOZ: 10 s segments).

    A window record copies its source's fields with ``id`` ``<id>-w<NNN>``, ``start``/``end`` (seconds, offset
    by the source's own ``start``), ``duration`` and ``source_id``; a last window shorter than ``min_seconds``
    is dropped. Records not longer than ``seconds`` are kept as they are. Deterministic.
    """
    if seconds <= 0:
        return m
    records, lines = [], []
    for i, rec in enumerate(m.records):
        dur = _duration(m, rec)
        if dur <= seconds + 1e-6:
            records.append(rec)
            lines.append(m.lineno(i))
            continue
        offset = float(rec.get("start") or 0.0)
        n = int(math.ceil(dur / seconds - 1e-9))
        for k in range(n):
            s = k * seconds
            e = min(dur, s + seconds)
            if e - s < min_seconds:
                continue
            records.append({**rec, "id": f"{rec['id']}-w{k:03d}", "start": round(offset + s, 6),
                            "end": round(offset + e, 6), "duration": round(e - s, 6), "source_id": rec["id"]})
            lines.append(m.lineno(i))
    return Manifest(records, m.path, dict(m.roots), lines)


# ---- preparation ---------------------------------------------------------------------------------------------
TRAIN_LABEL_HINT = ("map them in the label map (null drops them), choose another with --set data.label_map=NAME|FILE, "
                    "or train on a subset with --set data.classes=[...]")


def prepare(cfg: Any, manifest: str | os.PathLike | Manifest, roots: dict[str, str] | None = None, *,
            label_map: LabelMap | None = None, hint: str = TRAIN_LABEL_HINT) -> PreparedData:
    """Read ``manifest`` and keep the usable records for SerConfig ``cfg`` (see the module docstring).

    label_map: use this map instead of ``data.label_map`` (``ser evaluate`` on another corpus). hint: how to fix
    unknown labels, naming options of the calling command. ``data.classes`` keeps only records of those classes
    (the head's classes, in that order). Unknown labels are one DataError listing each with its count."""
    from emotk.data.protocols import find_protocol

    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest, roots=roots)
    if not len(m):
        raise DataError(f"{m.path}: the manifest has no utterances")
    m.require_audio("ser train/evaluate")
    d = cfg.data
    protocol = find_protocol(d.protocol) if d.protocol else None
    dropped: dict[str, int] = {}
    if protocol is not None and protocol.dataset:
        kept = m.filter(dataset=protocol.dataset)
        if not len(kept):
            found = sorted({str(r.get("dataset")) for r in m})
            raise DataError(f"protocol '{protocol.name}' is for dataset '{protocol.dataset}' but the manifest "
                            f"{m.path} has only {', '.join(found[:5])}")
        if len(kept) < len(m):
            dropped["other dataset"] = len(m) - len(kept)
        m = kept
    m = segment_records(m, d.segment_seconds, d.min_segment_seconds)

    targets: dict[str, Any] = {}
    keep: list[int] = []
    label_map = label_map if cfg.task_type == "classification" else None
    classes = None
    if cfg.task_type == "classification":
        datasets = sorted({str(r.get("dataset")) for r in m})
        dataset = datasets[0] if len(datasets) == 1 else None
        if label_map is None and d.label_map:
            label_map = find_label_map(d.label_map, dataset)
        elif label_map is None and dataset is not None:
            try:
                label_map = find_label_map("", dataset)
            except DataError:
                label_map = None
        subset = list(d.classes) if d.classes else None
        unknown: dict[str, int] = {}
        first_line: dict[str, int] = {}
        for i, rec in enumerate(m.records):
            raw = rec.get(d.label_field)
            if raw is None:
                dropped[f"no '{d.label_field}'"] = dropped.get(f"no '{d.label_field}'", 0) + 1
                continue
            if label_map is None:
                if subset is not None and str(raw) not in subset:
                    dropped[f"'{raw}' not in data.classes"] = dropped.get(f"'{raw}' not in data.classes", 0) + 1
                    continue
                targets[rec["id"]] = str(raw)
                keep.append(i)
                continue
            if not label_map.knows(raw):
                unknown[str(raw)] = unknown.get(str(raw), 0) + 1
                first_line.setdefault(str(raw), m.lineno(i))
                continue
            label = label_map.convert(raw)
            if label is None:
                dropped[f"'{raw}' not in label set"] = dropped.get(f"'{raw}' not in label set", 0) + 1
                continue
            if subset is not None and label not in subset:
                dropped[f"'{label}' not in data.classes"] = dropped.get(f"'{label}' not in data.classes", 0) + 1
                continue
            targets[rec["id"]] = label
            keep.append(i)
        if unknown:
            from emotk.data.labels import unknown_labels_message

            raise DataError(unknown_labels_message(unknown, first_line, str(m.path), d.label_field, label_map, hint))
        if label_map is not None:
            classes = list(label_map.classes)
            if subset is not None:
                missing = [c for c in subset if c not in classes]
                if missing:
                    from emotk.core.suggest import did_you_mean

                    raise DataError(f"data.classes: {', '.join(repr(c) for c in missing)} not in label map "
                                    f"'{label_map.name}'{did_you_mean(missing[0], classes)} "
                                    f"(classes: {', '.join(classes)})")
                classes = list(subset)
    else:
        for i, rec in enumerate(m.records):
            values = [rec.get(t) for t in d.targets]
            if any(v is None for v in values):
                dropped["missing target"] = dropped.get("missing target", 0) + 1
                continue
            try:
                values = [float(v) for v in values]
            except (TypeError, ValueError):
                raise DataError(f"{m.path}:{m.lineno(i)}: '{rec['id']}' has a non-numeric target in "
                                f"{dict(zip(d.targets, values))}") from None
            if not all(math.isfinite(v) for v in values):
                raise DataError(f"{m.path}:{m.lineno(i)}: '{rec['id']}' has a non-finite target")
            targets[rec["id"]] = values
            keep.append(i)
    if not keep:
        what = f"a '{d.label_field}' label" if cfg.task_type == "classification" else f"all targets {d.targets}"
        raise DataError(f"{m.path}: no record has {what} (dropped: {dropped})")
    usable = Manifest([m.records[i] for i in keep], m.path, dict(m.roots), [m.lineno(i) for i in keep])
    prepared = PreparedData(manifest=usable, task_type=cfg.task_type, targets=targets, classes=classes,
                            target_names=list(d.targets) if cfg.task_type == "regression" else None,
                            label_map=label_map, protocol=protocol, dropped=dropped)
    if cfg.task_type == "classification" and (classes is None or d.classes):
        # the labels of the training data (of every fold, so folds agree)
        folds = [None] if protocol is None or len(protocol.folds) == 1 else protocol.fold_names
        labels: set[str] = set()
        for name in folds:
            labels.update(targets[it_id] for it_id in _train_ids(prepared, name))
        if d.classes:
            for name in folds:
                seen = {targets[it_id] for it_id in _train_ids(prepared, name)}
                absent = [c for c in d.classes if c not in seen]
                if absent:
                    where = f" of fold '{name}'" if name is not None else ""
                    raise DataError(f"data.classes: {', '.join(repr(c) for c in absent)} never occur in the training "
                                    f"split{where} of {m.path}; remove them from data.classes")
            prepared.classes = list(d.classes)
        else:
            prepared.classes = sorted(labels)
            outside: dict[str, int] = {}
            for label in targets.values():
                if label not in labels:
                    outside[label] = outside.get(label, 0) + 1
            if outside:
                shown = ", ".join(f"'{k}' ({v})" for k, v in sorted(outside.items(), key=lambda kv: (-kv[1], kv[0])))
                raise DataError(f"{m.path}: {len(outside)} {d.label_field} label(s) occur outside the training data "
                                f"and no label map lists them: {shown}; give one with --set data.label_map=NAME|FILE "
                                "or keep a subset with --set data.classes=[...]")
    for reason, n in sorted(dropped.items()):
        log.info(f"ser: dropped {n} record(s): {reason}")
    return prepared


def _train_ids(prepared: PreparedData, fold: str | None) -> list[str]:
    if prepared.protocol is not None:
        return prepared.protocol.assign(prepared.manifest, fold)["train"]
    return [r["id"] for r in prepared.manifest if SPLIT_ALIASES.get(str(r.get("split", "")).lower()) == "train"]


def _fold_key(fold: str | None) -> str | int | None:
    if fold in (None, ""):
        return None
    return int(fold) if str(fold).isdigit() else str(fold)

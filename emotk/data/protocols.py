"""Evaluation protocols: committed, hashed split files and the deterministic fold builder.

A protocol file (``data_manifests/<dataset>/protocols/<name>.json``) says, for every fold, which values of one
manifest field (the *unit*) go to train, valid and test::

    {"name": "iemocap-loso",                  # unique; equals the file stem for committed files
     "dataset": "iemocap",                    # records of other datasets are ignored ("" = any dataset)
     "description": "...", "source": "thesis Table 3.1 / METHODS.md",
     "unit": "session",                       # the manifest field the folds list: speaker, session, video, split,
                                              # id, ...
     "valid_rule": {...},                     # optional, see below
     "strip_dataset_prefix": true,            # optional (default false), see below
     "folds": [{"name": "Ses01", "train": ["Ses02", ...], "valid": [], "test": ["Ses01"]}, ...],
     "sha256": "..."}                         # sha256 of the canonical JSON of everything except this key

Values are compared as strings (``str(record[unit])``); with ``"strip_dataset_prefix": true`` a record's value
that starts with ``<its dataset>-`` is compared without that prefix, so one protocol serves manifests whose
importers prefix the value (IEMOCAP's ``iemocap-Ses01F_impro01``) and copies that do not (``Ses01F_impro01``).
A record whose unit value is in no list of a fold, that
lacks the unit field, or that belongs to another dataset is excluded from that fold (and counted in summaries).
Within a fold the three lists are disjoint; across folds they may overlap (a value is test in one fold, train in
the next). ``sha256`` is checked on load: an edited file, or one without ``sha256``, is an error until it is
re-saved. Fold names become folder names, so each must be one safe path component
(:func:`emotk.core.names.safe_name`).

``valid_rule`` (optional) derives or narrows the validation split of every fold from the manifest itself, for
protocols whose validation set is not a list of unit values:

* ``{"kind": "holdout", "fraction": 0.1, "group_by": "dialogue", "seed": 0}`` moves a fraction of the train
  records into valid, whole groups at a time: the distinct ``group_by`` values of the fold's train records (a
  record without the field is its own group, keyed by its id) are ranked by ``sha256(f"{seed}:{value}")`` and the
  first ``round(fraction * n_groups)`` (at least one) go to valid. The choice depends only on the group names, not
  on manifest order or on other records.
* ``{"kind": "balanced", "per_class": 326, "label_field": "emotion", "seed": 0, "classes": [...]}`` keeps only a
  class-balanced subset of the valid records (:func:`balanced_subset`); the others are excluded from the fold.

The fold builder :func:`make_folds` (the RAVDESS baseline protocol of BASELINES.md) is, for N unit values:

1. sort the distinct values (as strings) and shuffle them with ``numpy.random.default_rng(seed).permutation``;
2. test groups: ``numpy.array_split`` of the shuffled order into ``n_folds`` groups, or, with an explicit
   ``n_test``, fold k's test group = ``n_test`` consecutive values of the shuffled order starting at position
   ``k * n_test`` (positions taken modulo N, so groups overlap when ``n_folds * n_test > N`` and some values are
   never tested when it is smaller);
3. fold k's validation = the ``n_valid`` values that follow its test group in the shuffled order (cyclically),
   i.e. the first ``n_valid`` values of fold (k+1)'s test group — continuing into the group after that when that
   group is smaller than ``n_valid``; default ``n_valid`` = one less than the smallest test group (at least 1), so
   24 actors in 5 folds give 3 validation actors as in BASELINES.md;
4. train = every other value. All lists are written sorted; fold names are ``fold0 .. fold{n-1}``.

The built-in protocol ``manifest-split`` (:data:`MANIFEST_SPLIT`, no file) is the manifest's own ``split`` field:
one fold ``split`` whose train / valid / test are the records whose ``split`` is ``train`` / ``valid`` (also
``dev``, ``val``, ``validation``) / ``test`` (case-insensitive); any other value belongs to no split. It is what
commands do without ``--protocol``, under a name that can be given explicitly and recorded with results.

``n_test=0`` makes folds without a test split (the validation groups rotate like test groups); :func:`named_fold`
builds one fold from named validation / test values (the rest train); ``make_folds(holdout=...)`` adds a
``holdout`` ``valid_rule`` (validation records disjoint from training ones in, e.g., their ``text``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from emotk.core.io import atomic_write_json, sha256_json
from emotk.core.log import get_logger
from emotk.core.names import safe_name
from emotk.core.suggest import did_you_mean
from emotk.data.manifest import Manifest
from emotk.errors import DataError, UsageError

log = get_logger("protocols")

SPLITS = ("train", "valid", "test")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_TOP_KEYS = ("name", "dataset", "description", "source", "unit", "valid_rule", "strip_dataset_prefix", "folds",
             "sha256")
MANIFEST_SPLIT = "manifest-split"  # the built-in protocol: the records' own `split` field
# the manifest `split` values the built-in protocol accepts (lower-cased) -> train / valid / test
SPLIT_ALIASES = {"train": "train", "valid": "valid", "validation": "valid", "dev": "valid", "val": "valid",
                 "test": "test"}
_FOLD_KEYS = ("name", *SPLITS)
_RULE_KEYS = {
    "holdout": {"kind": True, "fraction": True, "group_by": False, "seed": False},
    "balanced": {"kind": True, "per_class": True, "label_field": False, "seed": False, "classes": False},
}


def _rank_key(seed: int, value: str) -> str:
    """Deterministic pseudo-random rank of a string (independent of every other value)."""
    return hashlib.sha256(f"{seed}:{value}".encode("utf-8")).hexdigest()


@dataclass
class Fold:
    """One fold: the unit values (strings) of its train / valid / test splits."""

    name: str
    train: list[str] = field(default_factory=list)
    valid: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)

    def split_of(self) -> dict[str, str]:
        """unit value -> split name."""
        return {v: split for split in SPLITS for v in getattr(self, split)}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "train": list(self.train), "valid": list(self.valid), "test": list(self.test)}


@dataclass
class Protocol:
    """A named set of folds over one manifest field; see the module docstring for the file format."""

    name: str
    unit: str
    folds: list[Fold]
    dataset: str = ""
    description: str = ""
    source: str = ""
    valid_rule: dict[str, Any] | None = None
    strip_dataset_prefix: bool = False
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_protocol(self, str(self.path) if self.path else f"protocol '{self.name}'")

    # ---- identity -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The file content without ``sha256`` (optional ``valid_rule`` only when set)."""
        out: dict[str, Any] = {"name": self.name, "dataset": self.dataset, "description": self.description,
                               "source": self.source, "unit": self.unit}
        if self.valid_rule is not None:
            out["valid_rule"] = dict(self.valid_rule)
        if self.strip_dataset_prefix:
            out["strip_dataset_prefix"] = True
        out["folds"] = [f.to_dict() for f in self.folds]
        return out

    @property
    def sha256(self) -> str:
        """sha256 (hex) of the canonical JSON of :meth:`to_dict` — the hash every result records."""
        return sha256_json(self.to_dict())

    @property
    def fold_names(self) -> list[str]:
        return [f.name for f in self.folds]

    def fold(self, fold: str | int | None = None) -> Fold:
        """A fold by name or 0-based index; ``None`` is allowed when the protocol has a single fold."""
        if fold is None:
            if len(self.folds) == 1:
                return self.folds[0]
            raise UsageError(f"protocol '{self.name}' has {len(self.folds)} folds ({', '.join(self.fold_names)}): "
                             "choose one with --fold")
        if isinstance(fold, int) and not isinstance(fold, bool):
            if 0 <= fold < len(self.folds):
                return self.folds[fold]
            raise UsageError(f"protocol '{self.name}' has folds 0..{len(self.folds) - 1}, not {fold}")
        for f in self.folds:
            if f.name == str(fold):
                return f
        hint = did_you_mean(str(fold), self.fold_names)
        raise UsageError(f"protocol '{self.name}' has no fold '{fold}'{hint}; folds: {', '.join(self.fold_names)}")

    # ---- files --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the protocol atomically with its ``sha256``; returns the path."""
        path = Path(path)
        atomic_write_json(path, {**self.to_dict(), "sha256": self.sha256})
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = True) -> "Protocol":
        """Read and check a protocol file; a bad file, a wrong or (with ``verify``) a missing ``sha256`` is a
        one-line DataError. ``verify=False`` accepts a file without ``sha256`` (a mismatch is still an error)."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"protocol file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise DataError(f"{path}: not valid UTF-8 text") from None
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        proto = cls.from_dict(data, where=str(path), path=path)
        stored = data.get("sha256")
        if stored is None and verify:
            raise DataError(f"{path}: no 'sha256' key, so the protocol cannot be checked for edits; sign it with "
                            f"`emotk data split MANIFEST --protocol {path} --no-verify -o SIGNED.json` (or "
                            "Protocol.save) and use the signed file")
        if stored is None:
            log.warning(f"warning: {path}: no 'sha256' key; --no-verify: using it UNCHECKED (edits go unnoticed)")
        if stored is not None and stored != proto.sha256:
            raise DataError(f"{path}: sha256 mismatch (file says {str(stored)[:12]}…, content is {proto.sha256[:12]}…);"
                            " the protocol was edited — re-save it with Protocol.save to accept the change")
        return proto

    @classmethod
    def from_dict(cls, data: Any, where: str = "protocol", path: Path | None = None) -> "Protocol":
        """Build from parsed JSON, checking keys and types (errors name ``where`` and the key)."""
        if not isinstance(data, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(data).__name__}")
        unknown = [k for k in data if k not in _TOP_KEYS]
        if unknown:
            raise DataError(f"{where}: unknown key '{unknown[0]}'{_suggest(unknown[0], _TOP_KEYS)}")
        for key in ("name", "unit", "folds"):
            if key not in data:
                raise DataError(f"{where}: missing required key '{key}'")
        for key in ("name", "unit", "dataset", "description", "source", "sha256"):
            if key in data and not isinstance(data[key], str):
                raise DataError(f"{where}: '{key}' must be a string, got {data[key]!r}")
        if not isinstance(data.get("strip_dataset_prefix", False), bool):
            raise DataError(f"{where}: 'strip_dataset_prefix' must be true or false, got "
                            f"{data['strip_dataset_prefix']!r}")
        if not isinstance(data["folds"], list) or not data["folds"]:
            raise DataError(f"{where}: 'folds' must be a non-empty list")
        folds = []
        for i, fd in enumerate(data["folds"]):
            at = f"{where}: folds[{i}]"
            if not isinstance(fd, dict):
                raise DataError(f"{at}: expected an object, got {type(fd).__name__}")
            bad = [k for k in fd if k not in _FOLD_KEYS]
            if bad:
                raise DataError(f"{at}: unknown key '{bad[0]}'{_suggest(bad[0], _FOLD_KEYS)}")
            if not isinstance(fd.get("name"), str) or not fd["name"]:
                raise DataError(f"{at}: 'name' must be a non-empty string")
            lists = {}
            for split in SPLITS:
                values = fd.get(split, [])
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise DataError(f"{at} ('{fd['name']}'): '{split}' must be a list of strings")
                lists[split] = list(values)
            folds.append(Fold(name=fd["name"], **lists))
        rule = data.get("valid_rule")
        return cls(name=data["name"], unit=data["unit"], folds=folds, dataset=data.get("dataset", ""),
                   description=data.get("description", ""), source=data.get("source", ""),
                   valid_rule=dict(rule) if isinstance(rule, dict) else rule,
                   strip_dataset_prefix=data.get("strip_dataset_prefix", False), path=path)

    # ---- applying -----------------------------------------------------------------------------
    def unit_key(self, rec: dict[str, Any]) -> str | None:
        """The string a record's unit value is compared as (None: the record has no unit value)."""
        value = rec.get(self.unit)
        if value is None:
            return None
        key = str(value)
        if self.strip_dataset_prefix:
            prefix = f"{rec.get('dataset')}-"
            if key.startswith(prefix):
                key = key[len(prefix):]
        return key

    def assign(self, manifest: Manifest, fold: str | int | None = None) -> dict[str, list[str]]:
        """Split name ("train", "valid", "test") -> sorted record ids of ``manifest`` in ``fold``."""
        return self.assign_detailed(manifest, fold)["splits"]

    def assign_detailed(self, manifest: Manifest, fold: str | int | None = None) -> dict[str, Any]:
        """:meth:`assign` plus bookkeeping: ``{"fold", "splits", "excluded" (record count), "missing_values"
        (unit values the fold lists that no record has)}``."""
        f = self.fold(fold)
        where = f.split_of()
        records = [r for r in manifest if not self.dataset or r.get("dataset") == self.dataset]
        if self.dataset and not records and len(manifest):
            found = sorted({str(r.get("dataset")) for r in manifest})
            raise DataError(f"protocol '{self.name}' is for dataset '{self.dataset}' but the manifest"
                            f"{' ' + str(manifest.path) if manifest.path else ''} has only {', '.join(found[:5])}")
        groups: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        seen_values: set[str] = set()
        for rec in records:
            key = self.unit_key(rec)
            if key is None:
                continue
            seen_values.add(key)
            split = where.get(key)
            if split is not None:
                groups[split].append(rec)
        if self.valid_rule is not None:
            groups = _apply_valid_rule(self.valid_rule, groups)
        splits = {s: sorted(r["id"] for r in groups[s]) for s in SPLITS}
        kept = sum(len(v) for v in splits.values())
        return {"fold": f.name, "splits": splits, "excluded": len(manifest) - kept,
                "missing_values": sorted(set(where) - seen_values)}


class ManifestSplitProtocol(Protocol):
    """The built-in ``manifest-split`` protocol: the records' own ``split`` field (see the module docstring)."""

    def unit_key(self, rec: dict[str, Any]) -> str | None:
        value = rec.get("split")
        return None if value is None else SPLIT_ALIASES.get(str(value).strip().lower())


def manifest_split_protocol() -> Protocol:
    """The built-in protocol ``manifest-split``: one fold ``split`` from the records' own ``split`` field
    (train; valid = valid/dev/val/validation; test), any dataset."""
    return ManifestSplitProtocol(
        name=MANIFEST_SPLIT, unit="split", dataset="", source="emotk built-in",
        description=("The manifest's own 'split' field: train -> train; valid, dev, val, validation -> valid; test -> "
                     "test (case-insensitive); records with another or no split belong to no split."),
        folds=[Fold("split", ["train"], ["valid"], ["test"])])


def is_manifest_split(name: Any) -> bool:
    """True for a protocol option that means the records' own ``split`` field ("" or ``manifest-split``)."""
    return name is None or str(name) in ("", MANIFEST_SPLIT)


def _suggest(key: str, known: Iterable[str]) -> str:
    known = list(known)
    return did_you_mean(key, known) or f"; known keys: {', '.join(known)}"


def _check_protocol(p: Protocol, where: str) -> None:
    """Invariants of a protocol object (one-line DataError naming ``where``)."""
    if not isinstance(p.name, str) or not _NAME_RE.match(p.name):
        raise DataError(f"{where}: protocol name {p.name!r} must be letters, digits and ._+- (no spaces)")
    if not isinstance(p.unit, str) or not p.unit.strip():
        raise DataError(f"{where}: 'unit' must name a manifest field, got {p.unit!r}")
    if not p.folds:
        raise DataError(f"{where}: a protocol needs at least one fold")
    names: set[str] = set()
    for f in p.folds:
        safe_name(f.name, "fold name", where)  # folds become folders: OUT/<fold>/, runs/<fold>-seed<S>/
        if f.name in names:
            raise DataError(f"{where}: duplicate fold name '{f.name}'")
        names.add(f.name)
        owner: dict[str, str] = {}
        for split in SPLITS:
            values = getattr(f, split)
            for v in values:
                if not isinstance(v, str):
                    raise DataError(f"{where}: fold '{f.name}' {split}: values must be strings, got {v!r}")
                if v in owner:
                    what = "twice in" if owner[v] == split else f"in both {owner[v]} and"
                    raise DataError(f"{where}: fold '{f.name}': value '{v}' is {what} {split}")
                owner[v] = split
        if not owner:
            raise DataError(f"{where}: fold '{f.name}' lists no values")
    if p.valid_rule is not None:
        _check_rule(p.valid_rule, where)


def _check_rule(rule: Any, where: str) -> None:
    if not isinstance(rule, dict):
        raise DataError(f"{where}: 'valid_rule' must be an object, got {rule!r}")
    kind = rule.get("kind")
    if kind not in _RULE_KEYS:
        raise DataError(f"{where}: valid_rule kind must be one of {', '.join(_RULE_KEYS)}, got {kind!r}")
    spec = _RULE_KEYS[kind]
    for key in rule:
        if key not in spec:
            raise DataError(f"{where}: valid_rule ({kind}): unknown key '{key}'{_suggest(key, spec)}")
    for key, required in spec.items():
        if required and key not in rule:
            raise DataError(f"{where}: valid_rule ({kind}) needs '{key}'")
    if "seed" in rule and (isinstance(rule["seed"], bool) or not isinstance(rule["seed"], int)):
        raise DataError(f"{where}: valid_rule seed must be an integer, got {rule['seed']!r}")
    if kind == "holdout":
        frac = rule["fraction"]
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac < 1:
            raise DataError(f"{where}: valid_rule fraction must be in (0, 1), got {frac!r}")
        if "group_by" in rule and not isinstance(rule["group_by"], str):
            raise DataError(f"{where}: valid_rule group_by must be a field name, got {rule['group_by']!r}")
    else:
        n = rule["per_class"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataError(f"{where}: valid_rule per_class must be a positive integer, got {n!r}")
        classes = rule.get("classes")
        if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
            raise DataError(f"{where}: valid_rule classes must be a list of strings")


def _apply_valid_rule(rule: dict[str, Any], groups: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    seed = int(rule.get("seed", 0))
    if rule["kind"] == "holdout":
        by = rule.get("group_by") or "id"

        def group_of(rec: dict[str, Any]) -> str:
            value = rec.get(by)
            return str(value) if value is not None else f"id:{rec['id']}"

        names = sorted({group_of(r) for r in groups["train"]})
        if len(names) < 2:
            return groups
        n_pick = min(len(names) - 1, max(1, round(rule["fraction"] * len(names))))
        picked = set(sorted(names, key=lambda g: _rank_key(seed, g))[:n_pick])
        moved = [r for r in groups["train"] if group_of(r) in picked]
        return {"train": [r for r in groups["train"] if group_of(r) not in picked],
                "valid": groups["valid"] + moved, "test": groups["test"]}
    subset = balanced_subset(Manifest.from_records(groups["valid"]), rule["per_class"],
                             label_field=rule.get("label_field", "emotion"), seed=seed, classes=rule.get("classes"))
    return {"train": groups["train"], "valid": list(subset.records), "test": groups["test"]}


# ---- committed protocols ---------------------------------------------------------------------------
def protocols_dir() -> Path:
    """The folder with committed protocols: ``$EMOTK_DATA_MANIFESTS`` or the repository's ``data_manifests/``."""
    env = os.environ.get("EMOTK_DATA_MANIFESTS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data_manifests"


def _protocol_files() -> list[Path]:
    return sorted(protocols_dir().glob("*/protocols/*.json"))


def list_protocols(dataset: str | None = None) -> list[Protocol]:
    """Every committed protocol (sorted by name), optionally only those of ``dataset``."""
    protos = [Protocol.load(p) for p in _protocol_files()]
    if dataset is not None:
        protos = [p for p in protos if p.dataset == dataset]
    return sorted(protos, key=lambda p: p.name)


def find_protocol(name_or_path: str | os.PathLike, verify: bool = True) -> Protocol:
    """A protocol by committed name (e.g. ``ravdess-5fold``), ``manifest-split`` (the records' own ``split``
    field, built in) or the path of a protocol JSON file (``verify``: see :meth:`Protocol.load`; committed
    protocols are always verified)."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return Protocol.load(path, verify=verify)
    if text == MANIFEST_SPLIT:
        return manifest_split_protocol()
    if path.suffix == ".json" or os.sep in text:
        raise DataError(f"protocol file not found: {path}")
    for p in _protocol_files():
        if p.stem == text:
            proto = Protocol.load(p)
            if proto.name == text:
                return proto
    known = {}
    for p in list_protocols():
        known[p.name] = p
    if text in known:
        return known[text]
    hint = did_you_mean(text, [*known, MANIFEST_SPLIT])
    listing = (", ".join(known) if known else f"none found under {protocols_dir()}") + \
        f"; built in: {MANIFEST_SPLIT} (the records' own split field)"
    raise DataError(f"unknown protocol '{text}'{hint}; known: {listing} (or give the path of a protocol JSON file)")


# ---- applying to manifests ---------------------------------------------------------------------------
def apply_protocol(manifest: Manifest, protocol: Protocol, fold: str | int | None = None) -> Manifest:
    """A copy of ``manifest`` holding only the records of ``fold``, each with ``split`` set to train/valid/test.

    Record order (and line numbers) follow ``manifest``; records outside the fold are dropped.
    """
    splits = protocol.assign(manifest, fold)
    split_of = {rid: s for s, ids in splits.items() for rid in ids}
    records, lines = [], []
    for rec, line in zip(manifest.records, manifest._lines()):
        s = split_of.get(rec["id"])
        if s is not None:
            records.append({**rec, "split": s})
            lines.append(line)
    return Manifest(records, manifest.path, dict(manifest.roots), lines)


def write_split_manifests(manifest: Manifest, protocol: Protocol, out_dir: str | os.PathLike,
                          fold: str | int | None = None) -> dict[str, Any]:
    """Write ``out_dir/<fold>/{train,valid,test}.jsonl`` (absolute audio paths, ``split`` set; atomic) for one fold,
    or for every fold when ``fold`` is None. Existing files are replaced (the caller checks ``--overwrite``).

    Returns ``{"protocol", "protocol_sha256", "manifest_sha256", "unit", "out_dir", "folds": {fold: {"train": n,
    "valid": n, "test": n, "excluded": n, "missing_values": [...]}}}``.
    """
    out_dir = Path(out_dir)
    folds = [protocol.fold(fold)] if fold is not None or len(protocol.folds) == 1 else list(protocol.folds)
    absolute = manifest.with_absolute_paths()
    summary: dict[str, Any] = {"protocol": protocol.name, "protocol_sha256": protocol.sha256,
                               "manifest_sha256": manifest.sha256, "unit": protocol.unit,
                               "out_dir": str(out_dir), "folds": {}}
    by_id = absolute.by_id()
    for f in folds:
        safe_name(f.name, "fold name", f"protocol '{protocol.name}'")  # a Protocol checks it; never trust a path
        info = protocol.assign_detailed(absolute, f.name)
        for split in SPLITS:
            recs = [{**by_id[i], "split": split} for i in info["splits"][split]]
            Manifest.from_records(recs).save(out_dir / f.name / f"{split}.jsonl")
        entry: dict[str, Any] = {s: len(info["splits"][s]) for s in SPLITS}
        entry["excluded"] = info["excluded"]
        entry["missing_values"] = info["missing_values"]
        if info["missing_values"]:
            log.warning(f"warning: protocol '{protocol.name}' fold '{f.name}': {len(info['missing_values'])} "
                        f"{protocol.unit} value(s) have no records (e.g. {info['missing_values'][0]})")
        summary["folds"][f.name] = entry
    return summary


# ---- building protocols ---------------------------------------------------------------------------------
def split_units(values: Iterable[Any], n_folds: int = 5, seed: int = 0, n_valid: int | None = None,
                n_test: int | None = None, unit: str = "unit") -> list[Fold]:
    """The fold rule of the module docstring over ``values`` (any order, duplicates ignored, compared as strings).

    Returns ``n_folds`` folds named ``fold0..``, each with sorted train / valid / test value lists. ``n_test=0``
    gives folds without a test split whose validation groups take the place of the test groups (validation
    cross-checking: ``numpy.array_split`` groups, or ``n_valid`` consecutive values from position ``k * n_valid``).
    ``unit`` only names the values in error messages, which say which option (``--folds``, ``--valid``,
    ``--test``) makes the request fit.
    """
    import numpy as np

    ordered = sorted({str(v) for v in values})
    n = len(ordered)
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise UsageError(f"need at least 2 folds, got {n_folds!r}")
    if n_test is not None and n_test < 0:
        raise UsageError(f"the test size cannot be negative, got {n_test}")
    if n_valid is not None and n_valid < 0:
        raise UsageError(f"validation size cannot be negative, got {n_valid}")
    if n_test == 0 and n_valid == 0:
        raise UsageError("--test 0 with --valid 0 leaves nothing to evaluate on; keep one of them, name units with "
                         "--valid-speakers, or hold out records with --valid-holdout")
    rotating = n_valid if n_test == 0 else n_test  # the groups that rotate over the folds (test, or valid)
    if rotating is None and n < n_folds:
        fix = f"--folds {n}" if n >= 2 else "a manifest with more values"
        if n >= 2 and n_test != 0 and (1 + (1 if n_valid is None else n_valid)) > n - 1:
            fix += f" --valid {max(0, n - 2)}"
        raise DataError(f"cannot make {n_folds} folds from {n} distinct {unit} value(s); use {fix}")
    shuffled = [ordered[i] for i in np.random.default_rng(seed).permutation(n)] if n else []
    if rotating is None:
        sizes = [len(g) for g in np.array_split(np.arange(n), n_folds)]
        starts = [sum(sizes[:k]) for k in range(n_folds)]
    else:
        sizes = [rotating] * n_folds
        starts = [k * rotating for k in range(n_folds)]
    if n_test == 0:
        if max(sizes) > n - 1:
            raise DataError(f"{n} distinct {unit} value(s) cannot hold {max(sizes)} validation + at least 1 train "
                            f"per fold; use --valid {max(1, n - 1)}" if n >= 2 else
                            f"{n} distinct {unit} value(s) cannot make folds")
        folds = []
        for k in range(n_folds):
            valid = {shuffled[(starts[k] + j) % n] for j in range(sizes[k])}
            folds.append(Fold(name=f"fold{k}", train=sorted(set(ordered) - valid), valid=sorted(valid), test=[]))
        return folds
    if n_valid is None:
        n_valid = max(1, min(sizes) - 1)
    if max(sizes) + n_valid > n - 1:
        fits = n - 1 - max(sizes)
        if fits >= 0:
            fix = f"only {n} {unit} values: use --valid {fits}"
        else:
            fix = f"use --test {max(1, n - 1 - n_valid)}" if n - 1 - n_valid >= 1 else f"use --test 1 --valid {n - 2}"
        raise DataError(f"{n} distinct {unit} value(s) cannot hold {max(sizes)} test + {n_valid} validation "
                        f"+ at least 1 train per fold ({fix})")
    folds = []
    for k in range(n_folds):
        test_pos = [(starts[k] + j) % n for j in range(sizes[k])]
        valid_pos = [(starts[k] + sizes[k] + j) % n for j in range(n_valid)]
        test = {shuffled[i] for i in test_pos}
        valid = {shuffled[i] for i in valid_pos}
        train = set(ordered) - test - valid
        folds.append(Fold(name=f"fold{k}", train=sorted(train), valid=sorted(valid), test=sorted(test)))
    return folds


def _did_you_mean_value(value: str, known: list[str]) -> str:
    """A did-you-mean that first matches numbers without their leading zeros (``ravdess-2`` -> ``ravdess-02``)."""
    def norm(text: str) -> str:
        return re.sub(r"\d+", lambda m: str(int(m.group())), text.lower())

    same = [k for k in known if norm(k) == norm(value)]
    return f" (did you mean '{same[0]}'?)" if len(same) == 1 else did_you_mean(value, known)


def named_fold(values: Iterable[Any], valid: Iterable[str] = (), test: Iterable[str] = (),
               n_valid: int | None = None, n_test: int | None = None, seed: int = 0, unit: str = "speaker",
               name: str = "fold0") -> Fold:
    """One fold with named validation / test values (``--valid-speakers`` / ``--test-speakers``).

    values: the unit values present (any order; compared as strings). A split that is not named gets ``n_valid``
    / ``n_test`` values (default 0: no such split) picked from the unnamed values in the order of
    ``numpy.random.default_rng(seed).permutation`` over them sorted (test first, then validation); train = the rest.
    Raises DataError for a name that is not a value (with a did-you-mean) or when nothing is left to train on,
    UsageError for contradictory requests.
    """
    import numpy as np

    known = sorted({str(v) for v in values})
    valid, test = [str(v) for v in valid], [str(v) for v in test]
    for option, count_option, names, count in (("--valid-speakers", "--valid", valid, n_valid),
                                               ("--test-speakers", "--test", test, n_test)):
        for v in names:
            if v not in known:
                shown = ", ".join(known[:12]) + (f", … ({len(known)} in all)" if len(known) > 12 else "")
                raise DataError(f"{option}: no {unit} '{v}' in the manifest{_did_you_mean_value(v, known)}; "
                                f"{unit} values: {shown}")
        if len(set(names)) < len(names):
            dup = next(v for v in names if names.count(v) > 1)
            raise UsageError(f"{option}: '{dup}' is named twice")
        if names and count is not None and count != len(names):
            raise UsageError(f"{option} names {len(names)} {unit}(s) but {count_option} asks for {count}; "
                             "give one of them")
    both = sorted(set(valid) & set(test))
    if both:
        raise UsageError(f"{unit} '{both[0]}' is named for both validation and test")
    rest = [v for v in known if v not in set(valid) | set(test)]
    shuffled = [rest[i] for i in np.random.default_rng(seed).permutation(len(rest))] if rest else []
    want_test = 0 if test else (n_test or 0)
    want_valid = 0 if valid else (n_valid or 0)
    if want_test < 0 or want_valid < 0:
        raise UsageError("--valid and --test cannot be negative")
    if not rest:
        raise DataError(f"no {unit} is left for training: every one of the {len(known)} is named for validation or "
                        "test")
    room = len(shuffled) - 1  # unnamed values that may go to test / validation (one must stay to train)
    if want_test + want_valid > room:
        if want_valid and room - want_test >= 0:
            fix = f"use --valid {room - want_test}"
        else:
            fix = f"use --test {room}" + (" --valid 0" if want_valid else "")
        raise DataError(f"only {len(known)} {unit} values ({len(shuffled)} not named): {want_test} test + "
                        f"{want_valid} validation + at least 1 train do not fit; {fix}")
    test = test or shuffled[:want_test]
    valid = valid or shuffled[want_test: want_test + want_valid]
    train = [v for v in known if v not in set(valid) | set(test)]
    return Fold(name=name, train=train, valid=sorted(valid), test=sorted(test))


def make_folds(manifest: Manifest, n_folds: int | None = None, unit: str = "speaker", seed: int = 0,
               n_valid: int | None = None, n_test: int | None = None, name: str | None = None,
               dataset: str | None = None, valid_values: Iterable[str] | None = None,
               test_values: Iterable[str] | None = None, holdout: float | None = None,
               holdout_by: str = "text") -> Protocol:
    """Unit-independent folds (speaker-independent by default) over the ``unit`` values present in ``manifest``.

    Modes (one protocol file format for all):

    * folds (default): :func:`split_units` with ``n_folds`` (None = 5), ``n_valid``, ``n_test``; ``n_test=0``
      makes folds without a test split (rotating validation groups);
    * one named fold: ``valid_values`` and/or ``test_values`` name the validation / test units
      (:func:`named_fold`; ``n_valid`` / ``n_test`` pick the unnamed split's units by ``seed``, default none), the
      rest train — e.g. "train on all of corpus A, these two speakers for validation, no test";
    * ``holdout`` (a fraction in (0, 1)): a ``valid_rule`` ``holdout`` that moves that fraction of each fold's
      training records to validation, whole ``holdout_by`` groups at a time (default ``text``: validation
      sentences are disjoint from training sentences); ``n_valid`` then defaults to 0, and with ``n_test=0`` and no
      validation units the protocol is one fold with every unit in train.

    Records without ``unit`` are ignored (and logged). ``dataset`` defaults to the manifest's single dataset
    ("" when it mixes several); ``name`` to ``<dataset>-<unit>-<n>fold-seed<seed>`` (``-split`` for one fold).
    Deterministic: the same values and arguments always give the same protocol (and sha256).
    """
    values = [r[unit] for r in manifest if r.get(unit) is not None]
    missing = len(manifest) - len(values)
    if not values:
        raise DataError(f"no record of the manifest{' ' + str(manifest.path) if manifest.path else ''} has the "
                        f"field '{unit}' to build folds by")
    if missing:
        log.warning(f"warning: {missing} record(s) have no '{unit}' and belong to no fold")
    if dataset is None:
        found = {str(r.get("dataset")) for r in manifest if r.get("dataset")}
        dataset = found.pop() if len(found) == 1 else ""
    rule = None
    if holdout is not None:
        rule = _holdout_rule(manifest, holdout, holdout_by, seed)
        if n_valid is None and not valid_values:
            n_valid = 0
    n_units = len({str(v) for v in values})
    valid_values, test_values = list(valid_values or []), list(test_values or [])
    single = bool(valid_values or test_values) or (n_test == 0 and n_valid == 0 and rule is not None)
    if single:
        if n_folds not in (None, 1):
            raise UsageError(f"--folds {n_folds}: named --valid-speakers/--test-speakers (or --test 0 --valid 0 "
                             "with --valid-holdout) make one fold; drop --folds")
        fold = named_fold(values, valid_values, test_values, n_valid=n_valid, n_test=n_test, seed=seed, unit=unit)
        folds = [fold]
        picked = (not test_values and n_test) or (not valid_values and n_valid)
        description = (f"one fold over {n_units} '{unit}' values: {len(fold.train)} train, {len(fold.valid)} "
                       f"valid{' (named)' if valid_values else ''}, {len(fold.test)} test"
                       f"{' (named)' if test_values else ''}"
                       + (f"; unnamed splits picked with numpy.random.default_rng({seed}).permutation of the "
                          "other values, test first" if picked else "") + ".")
        default_name = f"{dataset or 'custom'}-{unit}-split" + (f"-seed{seed}" if picked else "")
    else:
        folds = split_units(values, n_folds=5 if n_folds is None else n_folds, seed=seed, n_valid=n_valid,
                            n_test=n_test, unit=unit)
        n_folds = len(folds)
        n_valid_used = len(folds[0].valid)
        if n_test == 0:
            size = f"validation groups of {n_valid}" if n_valid is not None else "numpy.array_split validation groups"
            description = (
                f"{n_folds} {unit}-independent folds without a test split over {n_units} '{unit}' values: sorted, "
                f"shuffled with numpy.random.default_rng({seed}).permutation, {size}; train = the rest.")
        else:
            size = f"{n_test} test" if n_test is not None else "numpy.array_split test groups"
            description = (
                f"{n_folds} {unit}-independent folds over {n_units} '{unit}' values: sorted, shuffled with "
                f"numpy.random.default_rng({seed}).permutation, {size}; validation = the {n_valid_used} value(s) "
                "after each test group in the shuffled order (the next fold's first); train = the rest.")
        default_name = f"{dataset or 'custom'}-{unit}-{n_folds}fold-seed{seed}"
    if rule is not None:
        description += (f" Validation also gets {rule['fraction']:g} of each fold's training records, whole "
                        f"'{rule['group_by']}' groups (ranked by sha256 of seed {seed} and the value), so its "
                        f"'{rule['group_by']}' values never occur in training.")
    return Protocol(name=name or default_name, unit=unit, folds=folds, dataset=dataset, description=description,
                    source="emotk.data.protocols.make_folds", valid_rule=rule)


def _holdout_rule(manifest: Manifest, fraction: float, group_by: str, seed: int) -> dict[str, Any]:
    """The ``valid_rule`` of ``--valid-holdout FRACTION --holdout-by FIELD`` after checking both against the
    manifest (a field no record has is a DataError with a did-you-mean over the fields present)."""
    if isinstance(fraction, bool) or not 0 < fraction < 1:
        raise UsageError(f"--valid-holdout {fraction}: give the fraction of training records in (0, 1), e.g. 0.1")
    have = sum(1 for r in manifest if r.get(group_by) not in (None, ""))
    if not have:
        fields = sorted({k for r in manifest for k in r})
        raise DataError(f"--holdout-by {group_by}: no record has the field '{group_by}'"
                        f"{did_you_mean(group_by, fields)}; fields: {', '.join(fields)}")
    if have < len(manifest):
        log.warning(f"warning: {len(manifest) - have} record(s) have no '{group_by}': each is its own hold-out "
                    "group")
    return {"kind": "holdout", "fraction": float(fraction), "group_by": group_by, "seed": int(seed)}


def balanced_subset(manifest: Manifest, per_class: int, label_field: str = "emotion", seed: int = 0,
                    classes: Iterable[str] | None = None) -> Manifest:
    """At most ``per_class`` records of each class (e.g. MSP-Podcast's balanced development set: 326 per class).

    ``classes`` defaults to every label present; records with another or no label are dropped. Within a class
    the records are ranked by ``sha256(f"{seed}:{id}")`` and the first ``per_class`` kept, so a record's fate does
    not depend on manifest order or on other classes. A class with fewer records keeps them all (logged warning).
    The result keeps ``manifest``'s record order.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise UsageError(f"per_class must be a positive integer, got {per_class!r}")
    by_class: dict[str, list[str]] = {}
    for rec in manifest:
        label = rec.get(label_field)
        if label is not None:
            by_class.setdefault(str(label), []).append(rec["id"])
    wanted = sorted(by_class) if classes is None else list(classes)
    keep: set[str] = set()
    for cls in wanted:
        ids = by_class.get(cls, [])
        if len(ids) < per_class:
            log.warning(f"warning: balanced subset: class '{cls}' has {len(ids)} record(s), fewer than {per_class}")
        keep.update(sorted(ids, key=lambda i: _rank_key(seed, i))[:per_class])
    return manifest.filter(lambda r: r["id"] in keep)


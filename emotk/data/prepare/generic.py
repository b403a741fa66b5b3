"""Generic importer: any folder of audio files, labelled by a CSV table or by a regex over the file paths.

* ``csv=FILE`` (relative to ROOT or absolute): one row per utterance; the audio path column (``path`` or ``file``,
  relative to ROOT) is required. ``columns=path:file,emotion:label`` maps manifest fields to CSV columns; other
  columns keep their names. Rows naming missing files are skipped with a warning.
* ``regex=PATTERN``: named groups (``speaker``, ``emotion``, ``text``, ...) are taken from the first match in
  each file's path relative to ROOT (``/`` separators); files that do not match are skipped (counted).
* neither: every audio file, unlabelled.

Ids are ``<dataset>-<relative path without extension, '/' -> '_'>`` unless an ``id`` column/group is given.
Speakers are prefixed with the dataset name; ``emotion`` is lower-cased (``emotion_raw`` keeps the original).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from emotk.data.labels import LabelMap
from emotk.data.prepare.base import PrepareOptions, PrepareResult, attach_audio
from emotk.errors import DataError, UsageError

DATASET = "generic"
DESCRIPTION = "Any folder of audio files, labelled from a CSV table or a regex over the file paths"
LAYOUT = "ROOT/**/*.wav (or the extensions given with ext=); labels from csv=FILE or regex=PATTERN"
OPTIONS = {
    "csv": "CSV table with one row per utterance (path relative to ROOT, or absolute)",
    "columns": "manifest field:CSV column pairs, e.g. path:file,emotion:label,speaker:actor",
    "regex": "pattern with named groups searched in each relative path, "
             "e.g. (?P<speaker>[^/]+)/(?P<emotion>[a-z]+)_",
    "dataset": "dataset name and id prefix (default: the folder name)",
    "ext": "audio file extensions (default wav,flac,mp3,ogg)",
}
DEFAULT_EXT = "wav,flac,mp3,ogg"
PATH_COLUMNS = ("path", "file")
_FLOAT_FIELDS = ("start", "end", "duration", "valence", "arousal", "dominance")
_INT_FIELDS = ("turn", "sr")


def dataset_name(opts: PrepareOptions, root: Path) -> str:
    """The ``dataset`` option, else ROOT's folder name, as a lower-case id prefix ('My Corpus' -> 'my-corpus')."""
    raw = str(opts.extra.get("dataset") or Path(root).resolve().name)
    name = re.sub(r"[^a-z0-9._-]+", "-", raw.strip().lower()).strip("-")
    if not name:
        raise UsageError(f"option dataset={raw!r}: needs at least one letter or digit")
    return name


def _extensions(opts: PrepareOptions) -> tuple[str, ...]:
    exts = tuple("." + e.strip().lower().lstrip(".") for e in str(opts.extra.get("ext") or DEFAULT_EXT).split(","))
    if not any(e != "." for e in exts):
        raise UsageError("option ext: give at least one extension, e.g. ext=wav,flac")
    return tuple(e for e in exts if e != ".")


def _utt_id(dataset: str, rel: str) -> str:
    stem = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel
    return f"{dataset}-{stem.replace('/', '_')}"


def _typed(field: str, value: str, where: str) -> Any:
    """CSV/regex strings -> the manifest's types for known numeric fields; DataError naming ``where``."""
    if field in _FLOAT_FIELDS:
        try:
            return float(value)
        except ValueError:
            raise DataError(f"{where}: field '{field}' must be a number, got {value!r}") from None
    if field in _INT_FIELDS:
        try:
            return int(value)
        except ValueError:
            raise DataError(f"{where}: field '{field}' must be an integer, got {value!r}") from None
    return value


def _finish(rec: dict[str, Any], dataset: str) -> dict[str, Any]:
    """Prefix speaker/id with the dataset, lower-case the emotion (keeping emotion_raw)."""
    if rec.get("speaker") and not str(rec["speaker"]).startswith(dataset + "-"):
        rec["speaker"] = f"{dataset}-{rec['speaker']}"
    if rec.get("id") and not str(rec["id"]).startswith(dataset + "-"):
        rec["id"] = f"{dataset}-{rec['id']}"
    if rec.get("emotion"):
        rec.setdefault("emotion_raw", rec["emotion"])
        rec["emotion"] = str(rec["emotion"]).strip().lower()
    return rec


def _parse_columns(spec: str) -> dict[str, str]:
    """'path:file,emotion:label' -> {'path': 'file', 'emotion': 'label'} (manifest field -> CSV column)."""
    mapping: dict[str, str] = {}
    for pair in (p.strip() for p in spec.split(",") if p.strip()):
        if ":" not in pair:
            raise UsageError(f"option columns: {pair!r} is not FIELD:COLUMN")
        field, column = (s.strip() for s in pair.split(":", 1))
        if not field or not column:
            raise UsageError(f"option columns: {pair!r} is not FIELD:COLUMN")
        mapping[field] = column
    return mapping


def _from_csv(root: Path, opts: PrepareOptions, dataset: str, result: PrepareResult) -> list[tuple[Path, dict]]:
    table = Path(str(opts.extra["csv"]))
    table = table if table.is_absolute() else root / table
    if not table.is_file():
        raise DataError(f"{table}: CSV file not found (option csv= is relative to ROOT or absolute)")
    mapping = _parse_columns(str(opts.extra.get("columns") or ""))
    try:
        with open(table, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except UnicodeDecodeError:
        raise DataError(f"{table}: not valid UTF-8 text") from None
    except csv.Error as e:
        raise DataError(f"{table}: cannot parse CSV ({e})") from None
    for field, column in mapping.items():
        if column not in header:
            raise DataError(
                f"{table}:1: column '{column}' (for field '{field}') not in the header: {', '.join(header)}")
    if "path" not in mapping:
        column = next((c for c in PATH_COLUMNS if c in header), None)
        if column is None:
            raise DataError(f"{table}:1: no audio path column ('path' or 'file'); map one with columns=path:COLUMN")
        mapping["path"] = column
    mapped_columns = set(mapping.values())
    exts = _extensions(opts)

    items, missing, seen = [], [], {}
    for lineno, row in enumerate(rows, 2):
        where = f"{table}:{lineno}"
        rel = row.get(mapping["path"], "")
        if not rel:
            raise DataError(f"{where}: empty audio path in column '{mapping['path']}'")
        audio = Path(rel) if Path(rel).is_absolute() else root / rel
        if not audio.is_file():
            missing.append(f"{where} ({rel})")
            continue
        if audio.suffix.lower() not in exts:
            result.warn(f"{where}: {rel} does not have one of the extensions {','.join(exts)}; using it anyway")
        rec: dict[str, Any] = {}
        for field, column in mapping.items():
            if field != "path" and row.get(column):
                rec[field] = _typed(field, row[column], where)
        for column, value in row.items():  # unmapped columns keep their names (a mapped field wins)
            if value and column not in mapped_columns and column not in mapping:
                rec[column] = _typed(column, value, where)
        rec["dataset"] = dataset
        if not rec.get("id"):
            try:
                rel_id = audio.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                rel_id = audio.name
            rec["id"] = _utt_id(dataset, rel_id)
        rec = _finish(rec, dataset)
        if rec["id"] in seen:
            raise DataError(f"{where}: duplicate id '{rec['id']}' (first on line {seen[rec['id']]})")
        seen[rec["id"]] = lineno
        items.append((audio, rec))
    if missing:
        result.warn(f"skipped {len(missing)} CSV rows whose audio file does not exist (first: {missing[0]})")
    return items


def _audio_files(root: Path, opts: PrepareOptions) -> list[str]:
    exts = _extensions(opts)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)


def _from_files(root: Path, opts: PrepareOptions, dataset: str, result: PrepareResult) -> list[tuple[Path, dict]]:
    files = _audio_files(root, opts)
    if not files:
        raise DataError(f"{root}: no audio files with extensions {opts.extra.get('ext') or DEFAULT_EXT}")
    pattern = None
    if opts.extra.get("regex"):
        try:
            pattern = re.compile(str(opts.extra["regex"]))
        except re.error as e:
            raise UsageError(f"option regex: invalid pattern ({e})") from None
        if not pattern.groupindex:
            raise UsageError("option regex: the pattern has no named groups, e.g. (?P<emotion>[a-z]+)")
    items, unmatched, seen = [], [], {}
    for rel in files:
        rec: dict[str, Any] = {"dataset": dataset}
        if pattern is not None:
            m = pattern.search(rel)
            if m is None:
                unmatched.append(rel)
                continue
            for field, value in m.groupdict().items():
                if value:
                    rec[field] = _typed(field, value, f"{root / rel} (regex group '{field}')")
        rec.setdefault("id", _utt_id(dataset, rel))
        rec = _finish(rec, dataset)
        if rec["id"] in seen:
            result.warn(f"skipped {rel}: id '{rec['id']}' already used by {seen[rec['id']]}")
            continue
        seen[rec["id"]] = rel
        items.append((root / rel, rec))
    if pattern is not None and not items:
        raise DataError(f"{root}: option regex matches none of the {len(files)} audio files (e.g. {files[0]!r})")
    if unmatched:
        result.warn(f"skipped {len(unmatched)} audio files that the regex does not match (e.g. {unmatched[0]})")
    return items


def prepare(root: Path, opts: PrepareOptions) -> PrepareResult:
    """Import ROOT with the csv / regex / plain-folder rules above; label map from the emotions found."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    if opts.extra.get("csv") and opts.extra.get("regex"):
        raise UsageError("options csv and regex exclude each other; give one")
    if opts.extra.get("columns") and not opts.extra.get("csv"):
        raise UsageError("option columns needs csv=FILE")
    dataset = dataset_name(opts, root)
    result = PrepareResult(dataset=dataset, records=[])
    if opts.extra.get("csv"):
        items = _from_csv(root, opts, dataset, result)
    else:
        items = _from_files(root, opts, dataset, result)
    if not items:
        raise DataError(f"{root}: nothing to import")
    items.sort(key=lambda item: item[1]["id"])
    attach_audio(result, items, opts, root)
    emotions = sorted({r["emotion"] for r in result.records if r.get("emotion")})
    if emotions:  # classes = the emotions of the records that made it into the manifest
        raw_map = {str(r["emotion_raw"]): r["emotion"] for r in result.records if r.get("emotion")}
        mapping = {raw: cls for raw, cls in sorted(raw_map.items()) if raw != cls}
        result.label_maps = [LabelMap(name=dataset, classes=emotions, map=mapping, dataset=dataset)]
    return result

"""JSONL data manifests: one utterance per line (schema in DESIGN.md "Manifest").

Required: ``id`` (dataset-prefixed, unique), ``path`` (relative to the manifest's folder, absolute,
or ``${NAME}/...`` resolved from ``--root NAME=DIR`` / ``$EMOTK_ROOT_NAME``), ``dataset``.
Optional fields have fixed types (below); unknown fields are kept untouched.

*Text-only records*: a record that carries a non-empty ``text`` may omit ``path`` (transcript corpora for ERC
text models and text pre-training). Commands that need audio call :meth:`Manifest.require_audio`, which names
the first such record (file:line, id) in a one-line DataError.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from emotk.core.io import atomic_write_text, sha256_bytes
from emotk.errors import DataError

REQUIRED = ("id", "dataset")  # and "path", unless the record is text-only (has a non-empty "text")
_NUM = (int, float)
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "path": (str,), "dataset": (str,),
    "start": _NUM, "end": _NUM, "sr": (int,), "duration": _NUM,
    "speaker": (str,), "gender": (str,), "language": (str,),
    "emotion": (str,), "emotion_raw": (str,),
    "valence": _NUM, "arousal": _NUM, "dominance": _NUM,
    "sentiment": (str, int, float), "text": (str,), "asr_text": (str,),
    "dialogue": (str,), "turn": (int,), "split": (str,),
}
_ROOT_RE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}(?:/(.*))?$")


def is_text_only(rec: dict[str, Any]) -> bool:
    """True for a record without ``path`` (a transcript without audio)."""
    return "path" not in rec


def record_problems(rec: Any) -> list[tuple[str, str]]:
    """Schema problems of one record as (key, message) pairs; empty when the record is valid."""
    if not isinstance(rec, dict):
        return [("", f"expected a JSON object, got {type(rec).__name__}")]
    problems = []
    for key in REQUIRED:
        if key not in rec:
            problems.append((key, f"missing required field '{key}'"))
        elif not isinstance(rec[key], str) or not rec[key].strip():
            problems.append((key, f"field '{key}' must be a non-empty string"))
    if "path" not in rec:
        if not (isinstance(rec.get("text"), str) and rec["text"].strip()):
            problems.append(("path", "missing required field 'path' (only a record with a non-empty 'text' may "
                                     "omit it: a text-only record)"))
    elif not isinstance(rec["path"], str) or not rec["path"].strip():
        problems.append(("path", "field 'path' must be a non-empty string"))
    for key, types in FIELD_TYPES.items():
        if key in REQUIRED or key == "path" or key not in rec or rec[key] is None:
            continue
        value = rec[key]
        if isinstance(value, bool) or not isinstance(value, types):
            want = " or ".join(t.__name__ for t in types)
            problems.append((key, f"field '{key}' must be {want}, got {value!r}"))
    start, end = rec.get("start"), rec.get("end")
    if isinstance(start, _NUM) and start < 0:
        problems.append(("start", f"field 'start' must be >= 0, got {start}"))
    if isinstance(start, _NUM) and isinstance(end, _NUM) and end <= start:
        problems.append(("end", f"segment end {end} is not after start {start}"))
    return problems


@dataclass
class Manifest:
    """An ordered list of utterance records plus where they came from."""

    records: list[dict[str, Any]]
    path: Path | None = None
    roots: dict[str, str] = field(default_factory=dict)
    line_numbers: list[int] = field(default_factory=list)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, roots: dict[str, str] | None = None, strict: bool = True) -> "Manifest":
        """Read a JSONL manifest. ``strict`` raises on the first bad line, naming file:line:key."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"manifest not found: {path}")
        return cls._from_rows(iter_jsonl(path), str(path), path, roots, strict)

    @classmethod
    def loads(cls, text: str, name: str = "stdin", roots: dict[str, str] | None = None,
              strict: bool = True) -> "Manifest":
        """A manifest from JSONL text (e.g. standard input), checked like :meth:`load`; errors name ``name:line``
        and relative audio paths count from the current directory."""
        return cls._from_rows(_iter_lines(text.splitlines()), name, None, roots, strict)

    @classmethod
    def _from_rows(cls, rows: Iterable[tuple[int, Any, str | None]], where: str, path: Path | None,
                   roots: dict[str, str] | None, strict: bool) -> "Manifest":
        records, lines = [], []
        seen: dict[str, int] = {}
        for lineno, rec, err in rows:
            if err is not None:
                if strict:
                    raise DataError(f"{where}:{lineno}: {err}")
                continue
            problems = record_problems(rec)
            if problems and strict:
                key, msg = problems[0]
                raise DataError(f"{where}:{lineno}: {msg}")
            if strict and rec["id"] in seen:
                raise DataError(f"{where}:{lineno}: duplicate id '{rec['id']}' (first on line {seen[rec['id']]})")
            if not problems:
                seen.setdefault(rec["id"], lineno)
            records.append(rec)
            lines.append(lineno)
        return cls(records=records, path=path, roots=dict(roots or {}), line_numbers=lines)

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]], path: str | os.PathLike | None = None) -> "Manifest":
        recs = list(records)
        return cls(records=recs, path=Path(path) if path else None, line_numbers=list(range(1, len(recs) + 1)))

    # ---- access ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.records[i]

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.records]

    def by_id(self) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in self.records}

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    def resolve_path(self, rec: dict[str, Any]) -> Path:
        """Absolute audio path of a record (relative paths are relative to the manifest's folder)."""
        if "path" not in rec:
            raise DataError(f"{self.path or 'manifest'}: record '{rec.get('id')}' has no 'path' (a text-only "
                            "record): this needs audio")
        return resolve_audio_path(rec["path"], self.base_dir, self.roots)

    def text_only(self) -> list[int]:
        """Indices of the records without ``path`` (text-only records)."""
        return [i for i, r in enumerate(self.records) if is_text_only(r)]

    def require_audio(self, command: str) -> None:
        """Raise a one-line DataError naming the first text-only record (file:line, id) when any record lacks
        ``path``: ``command`` (e.g. "ser train") needs audio for every record."""
        missing = self.text_only()
        if not missing:
            return
        i = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{self.path or 'manifest'}:{self.lineno(i)}: record '{self.records[i].get('id')}' has no "
                        f"'path' (a text-only record){more}: {command} needs audio for every record; give a "
                        "manifest with audio paths or keep only records that have one")

    def lineno(self, index: int) -> int:
        return self.line_numbers[index] if index < len(self.line_numbers) else index + 1

    # ---- transformation -------------------------------------------------------------------------
    def filter(self, predicate: Callable[[dict[str, Any]], bool] | None = None, **equals: Any) -> "Manifest":
        """Records for which ``predicate`` holds and every ``field=value`` matches (value may be a set/list)."""

        def keep(rec: dict[str, Any]) -> bool:
            for key, want in equals.items():
                have = rec.get(key)
                if isinstance(want, (set, frozenset, list, tuple)):
                    if have not in want:
                        return False
                elif have != want:
                    return False
            return predicate(rec) if predicate else True

        pairs = [(r, n) for r, n in zip(self.records, self._lines()) if keep(r)]
        return Manifest([r for r, _ in pairs], self.path, dict(self.roots), [n for _, n in pairs])

    def _lines(self) -> list[int]:
        return self.line_numbers if len(self.line_numbers) == len(self.records) else list(range(1, len(self) + 1))

    def select_ids(self, ids: Iterable[str]) -> "Manifest":
        wanted = set(ids)
        return self.filter(lambda r: r["id"] in wanted)

    def with_absolute_paths(self) -> "Manifest":
        """A copy whose paths are absolute, so it can be saved anywhere."""
        recs = [r if is_text_only(r) else {**r, "path": str(self.resolve_path(r))} for r in self.records]
        return Manifest(recs, None, {}, self._lines())

    # ---- output ---------------------------------------------------------------------------------
    def to_jsonl(self) -> str:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records)

    def save(self, path: str | os.PathLike) -> str:
        """Write atomically; returns the sha256 of the written bytes."""
        text = self.to_jsonl()
        atomic_write_text(path, text)
        self.path = Path(path)
        return sha256_bytes(text.encode("utf-8"))

    @property
    def sha256(self) -> str:
        """sha256 of the file bytes when loaded from a file, else of the canonical JSONL text."""
        if self.path is not None and self.path.is_file():
            from emotk.core.io import sha256_file

            return sha256_file(self.path)
        return sha256_bytes(self.to_jsonl().encode("utf-8"))


def merge(manifests: Iterable[Manifest]) -> Manifest:
    """Concatenate manifests (paths made absolute); duplicate ids are an error."""
    out: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for m in manifests:
        for rec in m.with_absolute_paths():
            if rec["id"] in seen:
                raise DataError(f"duplicate id '{rec['id']}' in {m.path} (also in {seen[rec['id']]})")
            seen[rec["id"]] = str(m.path)
            out.append(rec)
    return Manifest.from_records(out)


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, parsed object or None, error or None) for each non-blank line."""
    try:
        handle = open(path, encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    with handle:
        yield from _iter_lines(handle)


def _iter_lines(lines: Iterable[str]) -> Iterator[tuple[int, Any, str | None]]:
    """:func:`iter_jsonl` over lines of text (a file handle or a list)."""
    lineno = 0
    it = iter(lines)
    while True:
        try:
            line = next(it)
        except StopIteration:
            return
        except UnicodeDecodeError:
            yield lineno + 1, None, "not valid UTF-8 text"
            return
        lineno += 1
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line), None
        except json.JSONDecodeError as e:
            yield lineno, None, f"invalid JSON ({e.msg} at column {e.colno})"


def resolve_audio_path(path: str, base_dir: Path, roots: dict[str, str] | None = None) -> Path:
    """Resolve ``${NAME}/rest`` (from ``roots`` or ``$EMOTK_ROOT_NAME``), absolute, or base-relative paths to an
    absolute path (relative roots and base folders count from the current directory)."""
    m = _ROOT_RE.match(path)
    if m:
        name, rest = m.group(1), m.group(2) or ""
        root = (roots or {}).get(name) or os.environ.get(f"EMOTK_ROOT_{name}")
        if not root:
            raise DataError(
                f"path '{path}' uses root ${{{name}}}, which is not set: "
                f"pass --root {name}=DIR or set EMOTK_ROOT_{name}"
            )
        return (Path(root) / rest).absolute()
    p = Path(path)
    # absolute even when the manifest was opened by a relative path: resolved paths get saved into other folders
    return p if p.is_absolute() else (base_dir / p).absolute()

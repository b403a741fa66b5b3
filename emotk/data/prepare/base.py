"""Shared machinery for dataset importers: options, results, header probing, output writing."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from emotk.core.io import atomic_write_json, check_writable
from emotk.core.log import get_logger
from emotk.core.names import safe_name
from emotk.data.audio import AudioInfo, audio_info
from emotk.data.labels import LabelMap
from emotk.data.manifest import Manifest
from emotk.errors import AudioError, DataError

log = get_logger("prepare")


@dataclass
class PrepareOptions:
    """Options common to every importer (importer-specific ones go in ``extra``)."""

    out_dir: Path
    root_name: str | None = None  # write paths as ${ROOT_NAME}/rel instead of relative to out_dir
    workers: int = 4
    skip_bad: bool = True  # unreadable audio files: warn and skip (importers never die on one bad file)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PrepareResult:
    dataset: str
    records: list[dict[str, Any]]
    label_maps: list[LabelMap] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    expected: dict[str, int] = field(default_factory=dict)  # name -> the count in the official release

    def warn(self, message: str) -> None:
        log.warning(f"warning: {message}")
        self.warnings.append(message)

    def check_count(self, name: str, found: int, expected: int) -> None:
        """Warn (never fail) when a partial copy has fewer/more items than the official release."""
        self.expected[name] = expected
        if found != expected:
            self.warn(f"{self.dataset}: found {found} {name}, the official release has {expected} (partial copy?)")


def option_choice(opts: PrepareOptions, key: str, choices: Iterable[str], default: str) -> str:
    """Importer option ``key`` from ``opts.extra`` (lower-cased), one of ``choices``; else a UsageError."""
    from emotk.errors import UsageError

    choices = list(choices)
    value = str(opts.extra.get(key, default)).strip().lower()
    if value not in choices:
        raise UsageError(f"option {key}={value!r}: expected one of {', '.join(choices)}")
    return value


def option_bool(opts: PrepareOptions, key: str, default: bool) -> bool:
    """Importer option ``key`` as a boolean (true/false, yes/no, 1/0, on/off); else a UsageError."""
    from emotk.errors import UsageError

    value = opts.extra.get(key, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"option {key}={value!r}: expected true or false")


def probe_audio(paths: Iterable[Path], workers: int = 4) -> dict[Path, AudioInfo | AudioError]:
    """Read headers in parallel; values are AudioInfo or the AudioError for that file."""

    def one(p: Path) -> AudioInfo | AudioError:
        try:
            return audio_info(p)
        except AudioError as e:
            return e

    paths = list(paths)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return dict(zip(paths, pool.map(one, paths)))


def audio_fields(info: AudioInfo) -> dict[str, Any]:
    return {"sr": info.sr, "duration": round(info.duration, 3)}


def manifest_path(audio: Path, opts: PrepareOptions, corpus_root: Path) -> str:
    """How an audio path is written into the manifest."""
    audio = Path(os.path.abspath(audio))
    if opts.root_name:
        return "${" + opts.root_name + "}/" + audio.relative_to(os.path.abspath(corpus_root)).as_posix()
    return Path(os.path.relpath(audio, os.path.abspath(opts.out_dir))).as_posix()


def attach_audio(
    result: PrepareResult, items: list[tuple[Path, dict[str, Any]]], opts: PrepareOptions, corpus_root: Path
) -> None:
    """Probe each (audio path, record) pair, add path/sr/duration, append good ones to ``result``."""
    infos = probe_audio([p for p, _ in items], opts.workers)
    for path, rec in items:
        info = infos[path]
        if isinstance(info, AudioError):
            if not opts.skip_bad:
                raise info
            result.warn(f"skipped {rec.get('id', path)}: {info}")
            continue
        result.records.append({**rec, "path": manifest_path(path, opts, corpus_root), **audio_fields(info)})


def write_result(result: PrepareResult, opts: PrepareOptions, overwrite: bool = False) -> dict[str, Any]:
    """Write OUT/manifest.jsonl, OUT/label_map*.json and OUT/prepare.json; return the summary."""
    out = opts.out_dir
    manifest_file = check_writable(out / "manifest.jsonl", overwrite)
    records = sorted(result.records, key=lambda r: r["id"])
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{result.dataset} importer produced duplicate id '{dup}'")
    manifest = Manifest.from_records(records)
    sha = manifest.save(manifest_file)
    label_files = {}
    for lm in result.label_maps:
        name = "label_map.json" if lm.name == result.dataset else f"label_map.{lm.name}.json"
        safe_name(name, "label map name", f"{result.dataset} importer")
        lm.save(out / name)
        label_files[lm.name] = name
    counts: dict[str, dict[str, int]] = {}
    for key in ("emotion", "split", "speaker"):
        values = [str(r[key]) for r in records if r.get(key) is not None]
        if values:
            counts[key] = {v: values.count(v) for v in sorted(set(values))}
    summary = {
        "dataset": result.dataset,
        "manifest": str(manifest_file),
        "manifest_sha256": sha,
        "utterances": len(records),
        "hours": round(sum(float(r.get("duration") or 0) for r in records) / 3600, 3),
        "speakers": len(counts.get("speaker", {})),
        "counts": {k: v for k, v in counts.items() if k != "speaker"},
        "expected": result.expected,
        "label_maps": label_files,
        "warnings": result.warnings,
    }
    atomic_write_json(out / "prepare.json", summary)
    return summary

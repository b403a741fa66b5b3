"""``emotk data validate``: every check a manifest must pass before it is used.

Errors (exit 1): bad JSON lines, schema violations, duplicate ids, missing/unreadable/empty/NaN/too-short
audio, segments outside the file, labels outside the label map, unset ``${ROOT}`` names.
Warnings (exit 0): sample rates other than the target (resampled on load), multi-channel audio
(down-mixed), ``sr``/``duration`` fields that disagree with the file header.
Text-only records (no ``path``, a non-empty ``text``) are valid; they are counted (``text_only``) and have no
audio to check.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emotk.core.audio import SAMPLE_RATE
from emotk.data.audio import MIN_DURATION, audio_info, load_audio
from emotk.data.labels import LabelMap
from emotk.data.manifest import is_text_only, iter_jsonl, record_problems, resolve_audio_path
from emotk.errors import AudioError, DataError


@dataclass
class Issue:
    level: str  # "error" | "warning"
    line: int
    id: str | None
    key: str | None
    message: str

    def format(self, manifest: Path) -> str:
        where = f"{manifest}:{self.line}" if self.line else str(manifest)
        return f"{where}: {self.level}: {self.message}"


@dataclass
class Report:
    manifest: Path
    sha256: str = ""
    utterances: int = 0
    text_only: int = 0  # records without audio (no 'path'; they carry 'text')
    seconds: float = 0.0
    issues: list[Issue] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest": str(self.manifest), "sha256": self.sha256, "ok": self.ok,
            "utterances": self.utterances, "text_only": self.text_only, "hours": round(self.seconds / 3600, 4),
            "errors": len(self.errors), "warnings": len(self.warnings), "labels": self.labels,
            "issues": [i.__dict__ for i in self.issues],
        }


def validate_manifest(
    path: str | Path,
    roots: dict[str, str] | None = None,
    label_map: LabelMap | None = None,
    label_field: str = "emotion",
    check_audio: bool = True,
    decode: bool = True,
    target_sr: int = SAMPLE_RATE,
    min_duration: float = MIN_DURATION,
    workers: int = 4,
    label_hint: str = "add them to the label map (null drops them) or give another with --label-map FILE",
) -> Report:
    """Check a manifest; never raises for data problems (they become issues in the report).

    Labels outside ``label_map`` are one error (at the first such line) listing each label once with its count;
    ``label_hint`` says how to fix them (options of the calling command)."""
    from emotk.core.io import sha256_file

    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path}")
    report = Report(manifest=path, sha256=sha256_file(path))
    seen: dict[str, int] = {}
    audio_jobs: list[tuple[int, dict[str, Any], Path]] = []
    field_for_labels = label_map.field if label_map else label_field

    def add(level: str, line: int, rid: str | None, key: str | None, msg: str) -> None:
        report.issues.append(Issue(level, line, rid, key, msg))

    unknown: dict[str, int] = {}  # label -> records; reported once, in one issue
    first_line: dict[str, int] = {}
    for lineno, rec, err in iter_jsonl(path):
        if err is not None:
            add("error", lineno, None, None, err)
            continue
        problems = record_problems(rec)
        rid = rec.get("id") if isinstance(rec, dict) and isinstance(rec.get("id"), str) else None
        for key, msg in problems:
            add("error", lineno, rid, key, msg)
        if problems:
            continue
        report.utterances += 1
        if rid in seen:
            add("error", lineno, rid, "id", f"duplicate id '{rid}' (first on line {seen[rid]})")
        else:
            seen[rid] = lineno
        label = rec.get(field_for_labels)
        if label is not None:
            report.labels[str(label)] = report.labels.get(str(label), 0) + 1
            if label_map is not None and not label_map.knows(label):
                unknown[str(label)] = unknown.get(str(label), 0) + 1
                first_line.setdefault(str(label), lineno)
        if is_text_only(rec):
            report.text_only += 1
        elif check_audio:
            try:
                audio_path = resolve_audio_path(rec["path"], path.parent, roots)
            except DataError as e:
                add("error", lineno, rid, "path", str(e))
                continue
            audio_jobs.append((lineno, rec, audio_path))

    if report.utterances == 0 and not report.issues:  # an empty file is not a valid manifest of 0 utterances
        add("error", 1, None, None, "the manifest holds no records (an empty file?)")
    if unknown and label_map is not None:
        from emotk.data.labels import unknown_labels_message

        message = unknown_labels_message(unknown, first_line, "", field_for_labels, label_map, label_hint)
        add("error", min(first_line.values()), None, field_for_labels, message.removeprefix(": "))

    def check(job: tuple[int, dict[str, Any], Path]) -> list[Issue]:
        lineno, rec, audio_path = job
        rid = rec["id"]
        out: list[Issue] = []
        try:
            info = audio_info(audio_path)
        except AudioError as e:
            return [Issue("error", lineno, rid, "path", str(e))]
        start, end = rec.get("start"), rec.get("end")
        if start is not None and start >= info.duration:
            return [Issue("error", lineno, rid, "start",
                          f"{audio_path}: segment start {start}s is past the end ({info.duration:.3f}s)")]
        if end is not None and end > info.duration + 0.05:
            return [Issue("error", lineno, rid, "end",
                          f"{audio_path}: segment end {end}s is past the end ({info.duration:.3f}s)")]
        if decode:
            try:
                wav = load_audio(audio_path, sr=None, start=start, end=end, min_duration=min_duration)
            except AudioError as e:
                return [Issue("error", lineno, rid, "path", str(e))]
            if float(abs(wav).max()) == 0.0:
                out.append(Issue("warning", lineno, rid, "path", f"{audio_path}: digital silence"))
        seg = (min(end, info.duration) if end is not None else info.duration) - (start or 0.0)
        if info.channels > 1:
            out.append(Issue("warning", lineno, rid, "path",
                             f"{audio_path}: {info.channels} channels (averaged to mono on load)"))
        if info.sr != target_sr:
            out.append(Issue("warning", lineno, rid, "sr",
                             f"{audio_path}: sample rate {info.sr} Hz (resampled to {target_sr} Hz on load)"))
        if rec.get("sr") is not None and rec["sr"] != info.sr:
            out.append(Issue("warning", lineno, rid, "sr", f"field sr={rec['sr']} but the file is {info.sr} Hz"))
        if (rec.get("duration") is not None and start is None and end is None
                and abs(rec["duration"] - info.duration) > 0.05):
            out.append(Issue("warning", lineno, rid, "duration",
                             f"field duration={rec['duration']} but the file lasts {info.duration:.3f}s"))
        report.seconds += seg
        return out

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for issues in pool.map(check, audio_jobs):
            report.issues.extend(issues)
    report.issues.sort(key=lambda i: (i.line, i.level))
    return report

"""DAIC-WOZ importer (Distress Analysis Interview Corpus, 189 interviews; depression = PHQ-8 >= 10).

Expected layout (the unpacked DAIC-WOZ release; the split CSVs of AVEC 2017 next to the session folders)::

    DAIC-WOZ/
      300_P/300_AUDIO.wav
      300_P/300_TRANSCRIPT.csv          tab-separated: start_time  stop_time  speaker  value
      ...                               (sessions 300-492 without 342, 394, 398, 460)
      train_split_Depression_AVEC2017.csv   Participant_ID,PHQ8_Binary,PHQ8_Score,Gender,...
      dev_split_Depression_AVEC2017.csv
      full_test_split.csv                   Participant_ID,PHQ_Binary,PHQ_Score,Gender
      (test_split_Depression_AVEC2017.csv, without labels, is used when full_test_split.csv is absent)

One record per segment of *participant* speech inside the interview wav (``start``/``end`` seconds,
``duration`` = end - start): transcript rows spoken by the participant are merged with the following
participant rows while no other speaker's row lies between them and the pause is at most ``max_gap``
seconds; each merged stretch is cut into consecutive windows of ``segment_seconds`` (default 10, the
thesis's segment length); a remainder shorter than ``min_seconds`` is dropped (as is a stretch shorter
than ``min_seconds``). ``text`` is the participant's transcript when a segment is a whole stretch (cut
windows carry no text: the transcript has no word times). Windows are clipped to the audio length.

Fields: ``split`` (train/dev/test), ``speaker`` "daic-woz-<pid>", ``emotion`` depressed/not-depressed
from the PHQ-8 binary label (``emotion_raw`` "1"/"0"), ``phq8_score`` (int), ``interview`` (pid).
The split files code gender as 0/1; which number is which sex is not stated in the CSVs, so ``gender``
is written only for textual values or when ``--option gender_coding=1=M,0=F`` (or ``0=M,1=F``) says how
to read the numbers; the raw code is always kept as ``gender_code``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from emotk.data.labels import LabelMap
from emotk.data.prepare.base import PrepareOptions, PrepareResult, audio_fields, manifest_path, probe_audio
from emotk.errors import AudioError, DataError, UsageError

DATASET = "daic-woz"
DESCRIPTION = "DAIC-WOZ (189 clinical interviews; depressed vs not by PHQ-8; participant speech in 10 s segments)"
LAYOUT = """DAIC-WOZ/
  <pid>_P/<pid>_AUDIO.wav
  <pid>_P/<pid>_TRANSCRIPT.csv                (start_time  stop_time  speaker  value, tab-separated)
  train_split_Depression_AVEC2017.csv, dev_split_Depression_AVEC2017.csv, full_test_split.csv"""
OPTIONS: dict[str, str] = {
    "segment_seconds": "length of the participant-speech windows in seconds (default 10)",
    "min_seconds": "shortest window/stretch kept, in seconds (default 1.0)",
    "max_gap": "longest pause (s) between consecutive participant rows that are merged into one stretch (default 2.0)",
    "gender_coding": "how to read numeric Gender codes, e.g. '1=M,0=F' (default: keep only gender_code)",
}

SPLIT_FILES = {
    "train": ("train_split_Depression_AVEC2017.csv",),
    "dev": ("dev_split_Depression_AVEC2017.csv",),
    "test": ("full_test_split.csv", "test_split_Depression_AVEC2017.csv"),
}
EXPECTED = {"train": 107, "dev": 35, "test": 47}
EXPECTED_INTERVIEWS = 189
CLASSES = ["depressed", "not-depressed"]
_PID_DIR = re.compile(r"^(\d+)_P$")


def label_maps() -> list[LabelMap]:
    """Binary depression classes; raw PHQ-8 binary codes "1"/"0" map onto them."""
    return [LabelMap(DATASET, list(CLASSES), {"1": "depressed", "0": "not-depressed"}, DATASET)]


def _number(opts: PrepareOptions, key: str, default: float) -> float:
    value = opts.extra.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"--option {key}={value!r}: expected a number") from None
    if number < 0 or (key == "segment_seconds" and number <= 0):
        raise UsageError(f"--option {key}={value!r}: must be positive")
    return number


def parse_gender_coding(text: str | None) -> dict[str, str]:
    """'1=M,0=F' -> {'1': 'M', '0': 'F'}."""
    if not text:
        return {}
    out = {}
    for part in str(text).split(","):
        code, sep, sex = part.partition("=")
        if not sep or sex.strip().upper() not in ("M", "F"):
            raise UsageError(f"--option gender_coding={text!r}: expected e.g. '1=M,0=F'")
        out[code.strip()] = sex.strip().upper()
    return out


def find_root(root: Path) -> Path:
    """The folder with the <pid>_P session folders and the split CSVs (``root`` or one level below)."""
    root = Path(root)
    cands = [root] + (sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])
    for cand in cands:
        if (cand / SPLIT_FILES["train"][0]).is_file() or (cand / SPLIT_FILES["dev"][0]).is_file():
            return cand
    raise DataError(
        f"{root}: not a DAIC-WOZ folder (no train_split_Depression_AVEC2017.csv / dev_split_Depression_AVEC2017.csv); "
        "expected DAIC-WOZ/{<pid>_P/<pid>_AUDIO.wav, <pid>_P/<pid>_TRANSCRIPT.csv, *_split*.csv}"
    )


def read_split(path: Path) -> dict[str, dict[str, Any]]:
    """One split CSV -> {pid: {binary (str|None), score (int|None), gender_code (str|None)}}."""
    out: dict[str, dict[str, Any]] = {}
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        pid_col = cols.get("participant_id")
        if pid_col is None:
            raise DataError(f"{path}: no Participant_ID column (header: {reader.fieldnames})")
        bin_col = cols.get("phq8_binary") or cols.get("phq_binary")
        score_col = cols.get("phq8_score") or cols.get("phq_score")
        gender_col = cols.get("gender")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            pid = (row.get(pid_col) or "").strip()
            if not pid:
                continue
            try:
                pid = str(int(float(pid)))
                binary = str(int(float(row[bin_col]))) if bin_col and (row.get(bin_col) or "").strip() else None
                score = int(float(row[score_col])) if score_col and (row.get(score_col) or "").strip() else None
            except ValueError:
                raise DataError(f"{where}: Participant_ID / PHQ values must be numbers") from None
            if binary not in (None, "0", "1"):
                raise DataError(f"{where}: PHQ binary label must be 0 or 1, got {binary}")
            gender = (row.get(gender_col) or "").strip() if gender_col else ""
            out[pid] = {"binary": binary, "score": score, "gender_code": gender or None}
    return out


def read_transcript(path: Path) -> tuple[list[tuple[float, float, str, str]], int]:
    """<pid>_TRANSCRIPT.csv -> ([(start, stop, speaker, text)] sorted by start, number of unreadable rows)."""
    rows, bad = [], 0
    text = path.read_text(encoding="utf-8", errors="replace")
    delimiter = "\t" if "\t" in text.split("\n", 1)[0] else ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter, quoting=csv.QUOTE_NONE)
    for i, row in enumerate(reader):
        if not row or not "".join(row).strip():
            continue
        try:
            start, stop = float(row[0]), float(row[1])
        except (ValueError, IndexError):
            if i > 0:  # the first line is the header
                bad += 1
            continue
        if len(row) < 3 or stop <= start:
            bad += 1
            continue
        rows.append((start, stop, row[2].strip(), delimiter.join(row[3:]).strip()))
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows, bad


def participant_segments(
    rows: list[tuple[float, float, str, str]], segment_seconds: float, min_seconds: float, max_gap: float
) -> list[tuple[float, float, str | None]]:
    """Participant stretches cut into windows: [(start, end, text or None)] in seconds, time-ordered."""
    stretches: list[list[Any]] = []  # [start, end, [texts]]
    previous_was_participant = False
    for start, stop, speaker, text in rows:
        if speaker.lower() != "participant":
            previous_was_participant = False
            continue
        if stretches and previous_was_participant and start - stretches[-1][1] <= max_gap:
            stretches[-1][1] = max(stretches[-1][1], stop)
            stretches[-1][2].append(text)
        else:
            stretches.append([start, stop, [text]])
        previous_was_participant = True
    out: list[tuple[float, float, str | None]] = []
    for start, end, texts in stretches:
        length = end - start
        if length < min_seconds:
            continue
        if length <= segment_seconds:
            joined = " ".join(t for t in texts if t)
            out.append((start, end, joined or None))
            continue
        t = start
        while end - t >= min_seconds:
            out.append((t, min(t + segment_seconds, end), None))
            t += segment_seconds
    return out


def prepare(root: Path, opts: PrepareOptions) -> PrepareResult:
    """Scan a DAIC-WOZ release; one record per participant-speech segment, with the daic-woz label map."""
    root = find_root(Path(root))
    seg_s = _number(opts, "segment_seconds", 10.0)
    min_s = _number(opts, "min_seconds", 1.0)
    max_gap = _number(opts, "max_gap", 2.0)
    coding = parse_gender_coding(opts.extra.get("gender_coding"))
    result = PrepareResult(dataset=DATASET, records=[], label_maps=label_maps())

    split_of: dict[str, str] = {}
    meta: dict[str, dict[str, Any]] = {}
    for split, names in SPLIT_FILES.items():
        path = next((root / n for n in names if (root / n).is_file()), None)
        if path is None:
            result.warn(f"{root}: {' / '.join(names)} not found; no '{split}' participants")
            continue
        if split == "test" and path.name != names[0]:
            result.warn(f"{path.name} has no PHQ-8 labels; test records get no emotion (add {names[0]})")
        for pid, info in read_split(path).items():
            if pid in split_of:
                raise DataError(f"{path}: participant {pid} is also in the {split_of[pid]} split")
            split_of[pid], meta[pid] = split, info
    for split in SPLIT_FILES:
        result.check_count(f"{split} participants in the split files",
                           sum(1 for s in split_of.values() if s == split), EXPECTED[split])

    sessions = {m[1]: d for d in sorted(root.iterdir()) if d.is_dir() and (m := _PID_DIR.match(d.name))}
    result.check_count("interviews", len(sessions), EXPECTED_INTERVIEWS)
    for pid in sorted(set(sessions) - set(split_of), key=int):
        result.warn(f"session {pid}_P is in no split file; skipped")
    for pid in sorted(set(split_of) - set(sessions), key=int):
        result.warn(f"participant {pid} ({split_of[pid]}) has no {pid}_P folder")

    pids = sorted(set(sessions) & set(split_of), key=int)
    infos = probe_audio([sessions[p] / f"{p}_AUDIO.wav" for p in pids], opts.workers)
    for pid in pids:
        wav = sessions[pid] / f"{pid}_AUDIO.wav"
        info = infos[wav]
        if isinstance(info, AudioError):
            if not opts.skip_bad:
                raise info
            result.warn(f"skipped interview {pid}: {info}")
            continue
        tfile = sessions[pid] / f"{pid}_TRANSCRIPT.csv"
        if not tfile.is_file():
            result.warn(f"skipped interview {pid}: {tfile} not found")
            continue
        rows, bad = read_transcript(tfile)
        if bad:
            result.warn(f"{tfile}: {bad} unreadable row(s) ignored")
        segments = participant_segments(rows, seg_s, min_s, max_gap)
        m = meta[pid]
        clipped = 0
        for k, (start, end, text) in enumerate(segments):
            if end > info.duration:
                clipped += 1
                end = info.duration
                if end - start < min_s:
                    continue
            rec: dict[str, Any] = {
                "id": f"{DATASET}-{pid}-{k:04d}", "dataset": DATASET, "path": manifest_path(wav, opts, root),
                **audio_fields(info), "start": round(start, 3), "end": round(end, 3),
                "duration": round(end - start, 3), "split": split_of[pid], "speaker": f"{DATASET}-{pid}",
                "interview": pid, "language": "en",
            }
            if m["binary"] is not None:
                rec["emotion"] = "depressed" if m["binary"] == "1" else "not-depressed"
                rec["emotion_raw"] = m["binary"]
            if m["score"] is not None:
                rec["phq8_score"] = m["score"]
            code = m["gender_code"]
            if code is not None:
                rec["gender_code"] = code
                sex = coding.get(code) or {"male": "M", "female": "F"}.get(code.lower())
                if sex:
                    rec["gender"] = sex
            if text:
                rec["text"] = text
            result.records.append(rec)
        if clipped:
            result.warn(f"interview {pid}: {clipped} segment(s) ran past the end of the audio and were clipped")
        if not segments:
            result.warn(f"interview {pid}: no participant speech found in {tfile.name}")
    return result

"""CMU-MOSI importer (93 YouTube opinion videos, 2,199 segments with sentiment scores in [-3, 3]).

Expected layout (the raw CMU-MOSI release; ROOT may be the folder holding ``Raw/`` or ``Raw/`` itself)::

    Raw/
      Audio/WAV_16000/Segmented/<video>_<segment>.wav
      Transcript/Segmented/<video>.annotprocessed      one line per segment: "<segment>_DELIM_<text>"
      Labels/OpinionLevelSentiment.csv                 no header: start,end,video,segment,score

One record per labelled segment: ``video`` (the protocol key), ``segment`` (int; also ``dialogue`` =
"cmu-mosi-<video>" and ``turn`` = segment, so ERC treats each video as a monologue), ``sentiment`` (the
float score), ``emotion`` = "negative" if score < 0 else "positive" (the binary rule of METHODS.md:
[-3, 0) negative, [0, 3] positive) and ``text``. The segment wavs are already cut, so no start/end.
The labels file can be given explicitly with ``--option labels=FILE`` (same CSV format).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from emotk.data.labels import LabelMap
from emotk.data.prepare.base import PrepareOptions, PrepareResult, attach_audio
from emotk.errors import DataError

DATASET = "cmu-mosi"
DESCRIPTION = "CMU-MOSI (93 videos, 2,199 opinion segments; sentiment score in [-3, 3], binary polarity)"
LAYOUT = """Raw/
  Audio/WAV_16000/Segmented/<video>_<segment>.wav
  Transcript/Segmented/<video>.annotprocessed   (<segment>_DELIM_<text>)
  Labels/OpinionLevelSentiment.csv              (start,end,video,segment,score; no header)"""
OPTIONS: dict[str, str] = {"labels": "path of OpinionLevelSentiment.csv (default: Labels/OpinionLevelSentiment.csv)"}

EXPECTED_VIDEOS = 93
EXPECTED_SEGMENTS = 2199
_SEGMENT_LINE = re.compile(r"^\s*(\d+)_(?:DELIM(?:ITER)?_)?(.*)$")


def label_maps() -> list[LabelMap]:
    """Binary polarity classes (negative, positive)."""
    return [LabelMap(DATASET, ["negative", "positive"], {}, DATASET)]


def polarity(score: float) -> str:
    """METHODS.md rule: scores in [-3, 0) are negative, [0, 3] positive."""
    return "negative" if score < 0 else "positive"


def find_root(root: Path) -> Path:
    """The folder holding Audio/, Transcript/, Labels/ (``root``, ``root/Raw`` or ``root/CMU_MOSI_Raw``)."""
    root = Path(root)
    for cand in (root, root / "Raw", root / "CMU_MOSI_Raw"):
        if (cand / "Audio" / "WAV_16000" / "Segmented").is_dir():
            return cand
    raise DataError(
        f"{root}: not a CMU-MOSI raw folder (no Audio/WAV_16000/Segmented); expected Raw/{{Audio/WAV_16000/Segmented/"
        "<video>_<seg>.wav, Transcript/Segmented/<video>.annotprocessed, Labels/OpinionLevelSentiment.csv}"
    )


def read_labels(path: Path) -> list[tuple[str, int, float]]:
    """OpinionLevelSentiment.csv -> [(video, segment, score)]; a header row, if any, is skipped."""
    if not path.is_file():
        raise DataError(f"{path}: CMU-MOSI label file not found (pass --option labels=FILE if it lives elsewhere)")
    out = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        for lineno, row in enumerate(csv.reader(handle), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 5:
                raise DataError(f"{path}:{lineno}: expected 5 columns (start,end,video,segment,score), got {len(row)}")
            try:
                segment, score = int(float(row[3])), float(row[4])
            except ValueError:
                if lineno == 1:  # header
                    continue
                raise DataError(f"{path}:{lineno}: segment/score must be numbers, got {row[3]!r}, {row[4]!r}") from None
            out.append((row[2].strip(), segment, score))
    return out


def read_transcript(path: Path) -> dict[int, str]:
    """<video>.annotprocessed -> {segment: text}."""
    texts = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _SEGMENT_LINE.match(line)
        if m:
            texts[int(m[1])] = m[2].strip()
    return texts


def prepare(root: Path, opts: PrepareOptions) -> PrepareResult:
    """Scan the raw CMU-MOSI release; one record per labelled segment."""
    root = find_root(Path(root))
    default_labels = root / "Labels" / "OpinionLevelSentiment.csv"
    labels_file = Path(opts.extra["labels"]) if opts.extra.get("labels") else default_labels
    labels = read_labels(labels_file)
    result = PrepareResult(dataset=DATASET, records=[], label_maps=label_maps())
    transcripts: dict[str, dict[int, str]] = {}
    no_text: list[str] = []
    items: list[tuple[Path, dict[str, Any]]] = []
    seen: set[str] = set()
    for video, segment, score in sorted(labels, key=lambda x: (x[0], x[1])):
        name = f"{video}_{segment}"
        if name in seen:
            raise DataError(f"{labels_file}: segment {name} is labelled twice")
        seen.add(name)
        if video not in transcripts:
            tfile = root / "Transcript" / "Segmented" / f"{video}.annotprocessed"
            transcripts[video] = read_transcript(tfile) if tfile.is_file() else {}
        rec: dict[str, Any] = {
            "id": f"{DATASET}-{name}", "dataset": DATASET, "video": video, "segment": segment, "language": "en",
            "dialogue": f"{DATASET}-{video}", "turn": segment,  # ERC: a video is a monologue "dialogue"
            "sentiment": score, "emotion": polarity(score),
        }
        if segment in transcripts[video]:
            rec["text"] = transcripts[video][segment]
        else:
            no_text.append(name)
        items.append((root / "Audio" / "WAV_16000" / "Segmented" / f"{name}.wav", rec))
    if no_text:
        result.warn(f"{len(no_text)} segment(s) have no transcript line, e.g. {', '.join(no_text[:3])}")
    attach_audio(result, items, opts, root)
    result.check_count("videos", len({r["video"] for r in result.records}), EXPECTED_VIDEOS)
    result.check_count("segments", len(result.records), EXPECTED_SEGMENTS)
    return result

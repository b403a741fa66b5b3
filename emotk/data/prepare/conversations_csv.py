"""Conversation transcripts in CSV files (EmoryNLP-, DailyDialog-, MELD- or call-centre-style): a text-only manifest.

One CSV file per split, given as importer options relative to ROOT (or absolute)::

    emotk data prepare conversations-csv ROOT -o OUT --option train=train.csv --option valid=dev.csv \\
        --option test=test.csv --option text=Utterance --option speaker=Speaker --option emotion=Emotion \\
        --option dialogue=Dialogue_ID --option turn=Utterance_ID --option dataset=my-calls

Each row is one utterance. Column options name the CSV columns (matched exactly, else case-insensitively;
a missing column is a DataError naming the file, with a did-you-mean over its header): ``text`` (default
``text``), ``dialogue`` (default ``dialogue``), ``speaker`` (default ``speaker``; ``speaker=`` with no value: the
files have no speakers), ``emotion`` (default ``emotion``; ``emotion=``: unlabelled), ``turn`` (optional: without
it a turn is the row's 0-based position among its dialogue's rows in file order), ``sentiment`` (optional).

Records (no ``path``: text-only): ``id`` = ``<dataset>-<split>-<dialogue>-<turn>``, ``dataset``, ``split`` (train /
valid / test), ``dialogue`` = ``<dataset>-<split>-<dialogue>`` (dialogue ids may restart in every file),
``turn``, ``speaker`` = ``<dataset>-<name>``, ``text``, ``emotion`` (lower-cased; ``emotion_raw`` keeps the cell),
``sentiment`` when asked. Rows with an empty text are skipped with a warning; an empty emotion cell is an
unlabelled turn. A non-integer turn or a duplicate (dialogue, turn) is a DataError naming file:line. The label
map lists the emotions found.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from emotk.core.suggest import did_you_mean
from emotk.data.labels import LabelMap
from emotk.data.prepare.base import PrepareOptions, PrepareResult
from emotk.errors import DataError, UsageError

DATASET = "conversations-csv"
DESCRIPTION = "Conversation transcripts in CSV files, one per split (text-only manifest for ERC text models)"
LAYOUT = """ROOT/train.csv, ROOT/dev.csv, ROOT/test.csv (any names: --option train=FILE valid=FILE test=FILE)
  one row per utterance with text, dialogue, speaker, emotion and (optionally) turn columns"""
SPLITS = ("train", "valid", "test")
COLUMN_DEFAULTS = {"text": "text", "dialogue": "dialogue", "speaker": "speaker", "emotion": "emotion",
                   "turn": "", "sentiment": ""}
OPTIONS: dict[str, str] = {
    "train": "CSV file of the training split (relative to ROOT or absolute)",
    "valid": "CSV file of the validation split",
    "test": "CSV file of the test split",
    "text": "column of the utterance text (default: text)",
    "dialogue": "column of the dialogue id (default: dialogue)",
    "speaker": "column of the speaker (default: speaker; empty: no speakers)",
    "emotion": "column of the emotion label (default: emotion; empty: unlabelled)",
    "turn": "column of the turn number within the dialogue (default: none = row order within the dialogue)",
    "sentiment": "column of a sentiment label (default: none)",
    "dataset": "dataset name and id prefix (default: the ROOT folder name)",
}


def dataset_name(opts: PrepareOptions, root: Path) -> str:
    """The ``dataset`` option, else ROOT's folder name, as a lower-case id prefix ('My Calls' -> 'my-calls')."""
    raw = str(opts.extra.get("dataset") or Path(root).resolve().name)
    name = re.sub(r"[^a-z0-9._-]+", "-", raw.strip().lower()).strip("-")
    if not name:
        raise UsageError(f"option dataset={raw!r}: needs at least one letter or digit")
    return name


def _column(header: list[str], option: str, wanted: str, path: Path) -> str:
    """The header entry for option ``option`` (exact, else case-insensitive); DataError with did-you-mean."""
    if wanted in header:
        return wanted
    folded = [h for h in header if h.strip().lower() == wanted.strip().lower()]
    if len(folded) == 1:
        return folded[0]
    hint = did_you_mean(wanted, header)
    if not hint:  # abbreviations: 'Conversation' for 'Conv', 'Utterance' for 'Utterance_Text'
        low = wanted.strip().lower()
        near = [h for h in header if h.strip() and (h.strip().lower() in low or low in h.strip().lower())]
        hint = f" (did you mean '{near[0]}'?)" if len(near) == 1 else ""
    raise DataError(f"{path}: no column '{wanted}' for option {option}{hint}; header: {', '.join(header)} "
                    f"(name the column with --option {option}=COLUMN)")


def read_split(path: Path, split: str, dataset: str, columns: dict[str, str], result: PrepareResult) -> list[dict]:
    """Records of one CSV file (see the module docstring)."""
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    records: list[dict[str, Any]] = []
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: empty file (expected a header row)") from None
        except (csv.Error, UnicodeDecodeError) as e:
            raise DataError(f"{path}:1: cannot parse the header ({e})") from None
        header = [h.strip() for h in header]
        col = {opt: header.index(_column(header, opt, name, path)) for opt, name in columns.items() if name}
        next_turn: dict[str, int] = {}
        seen: dict[tuple[str, int], int] = {}
        empty = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as e:
                raise DataError(f"{path}:{reader.line_num}: cannot parse the row ({e})") from None
            line = reader.line_num
            if not row or not "".join(row).strip():
                continue
            if len(row) < len(header):
                row = row + [""] * (len(header) - len(row))

            def cell(opt: str) -> str:
                return row[col[opt]].strip() if opt in col else ""

            dialogue = cell("dialogue")
            if not dialogue:
                raise DataError(f"{path}:{line}: empty dialogue cell (column '{header[col['dialogue']]}')")
            if "turn" in col:
                try:
                    turn = int(cell("turn"))
                except ValueError:
                    raise DataError(f"{path}:{line}: turn must be an integer, got {cell('turn')!r} (column "
                                    f"'{header[col['turn']]}')") from None
            else:
                turn = next_turn.get(dialogue, 0)
            next_turn[dialogue] = max(next_turn.get(dialogue, 0), turn + 1)
            if (dialogue, turn) in seen:
                raise DataError(f"{path}:{line}: duplicate turn {turn} of dialogue '{dialogue}' (first on line "
                                f"{seen[(dialogue, turn)]})")
            seen[(dialogue, turn)] = line
            text = cell("text")
            if not text:
                empty += 1
                continue
            rec: dict[str, Any] = {"id": f"{dataset}-{split}-{dialogue}-{turn}", "dataset": dataset, "split": split,
                                   "dialogue": f"{dataset}-{split}-{dialogue}", "turn": turn, "text": text}
            if cell("speaker"):
                rec["speaker"] = f"{dataset}-{cell('speaker')}"
            if cell("emotion"):
                rec["emotion"] = cell("emotion").lower()
                rec["emotion_raw"] = row[col["emotion"]]
            if cell("sentiment"):
                rec["sentiment"] = cell("sentiment").lower()
            records.append(rec)
    if empty:
        result.warn(f"{path}: skipped {empty} row(s) with an empty text")
    if not records:
        result.warn(f"{path}: no utterances")
    return records


def prepare(root: Path, opts: PrepareOptions) -> PrepareResult:
    """Read one CSV file per split; one text-only record per row with text."""
    root = Path(root)
    files = {s: opts.extra.get(s) for s in SPLITS if opts.extra.get(s)}
    if not files:
        raise UsageError("conversations-csv needs at least one CSV file: --option train=FILE (and valid=FILE, "
                         "test=FILE)")
    columns = {k: str(opts.extra.get(k, default)).strip() for k, default in COLUMN_DEFAULTS.items()}
    for required in ("text", "dialogue"):
        if not columns[required]:
            raise UsageError(f"option {required}= cannot be empty: name the CSV column that holds the {required}")
    dataset = dataset_name(opts, root)
    result = PrepareResult(dataset=dataset, records=[])
    for split, name in files.items():
        path = Path(name) if Path(name).is_absolute() else root / name
        if not path.is_file():
            raise DataError(f"{path}: CSV file of split '{split}' not found (option {split}={name})")
        result.records.extend(read_split(path, split, dataset, columns, result))
    labels = sorted({r["emotion"] for r in result.records if "emotion" in r})
    if labels:
        result.label_maps.append(LabelMap.from_labels(dataset, labels, dataset=dataset))
    return result

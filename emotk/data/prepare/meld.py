"""MELD importer (Multimodal EmotionLines Dataset: 1,433 Friends dialogues, 13,708 utterances).

Expected layout (the ``MELD.Raw`` folder after unpacking train/dev/test archives; ROOT may also be its parent)::

    MELD.Raw/
      train_sent_emo.csv  dev_sent_emo.csv  test_sent_emo.csv
      train_splits/dia{D}_utt{U}.mp4                   (also accepted: train/train_splits/...)
      dev_splits_complete/dia{D}_utt{U}.mp4            (dev/dev_splits_complete/...)
      output_repeated_splits_test/dia{D}_utt{U}.mp4    (test/output_repeated_splits_test/...)

The CSVs (UTF-8, quoted, typographic characters kept verbatim) drive the records: one per row, with
``split``, ``dialogue`` ("meld-<split>-dia<D>"), ``turn`` (= Utterance_ID), ``speaker`` ("meld-<Name>"),
``emotion`` (MELD's own 7 labels: anger, disgust, fear, joy, neutral, sadness, surprise), ``sentiment``
(negative/neutral/positive) and ``text``. Clips are already cut, so no start/end.

Audio: MELD ships mp4 video. With ``extract_audio=true`` (default) the ``ffmpeg`` program extracts 16 kHz
mono 16-bit wav once into ``OUT/audio/<split>/dia{D}_utt{U}.wav`` (parallel over ``--workers``; resumable:
files whose header is already valid are skipped; each file is written under a temporary name and renamed,
so an interrupted run never leaves a half file). Missing or undecodable clips (e.g. dev dia110_utt7 is
absent from the release) are skipped with a warning. Manifest paths of extracted audio are always relative
to OUT (they are not inside the corpus folder, so ``--root-name`` does not apply to them).

With ``extract_audio=false`` the manifest is transcript-only: ``path`` points at the clip's mp4 (which
need not exist; soundfile cannot decode it, so such manifests serve text-only work such as ERC text
models or LLM labelling), records carry ``"media": "video"`` and no ``sr``/``duration``, and no video
folder is required (the label CSVs alone are enough).

With ``text_only=true`` the records have no ``path`` at all (text-only manifest records: ``emotk data validate``
accepts them, commands that need audio refuse them by name); only the label CSVs are read.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from emotk.core.audio import SAMPLE_RATE
from emotk.core.log import Progress, get_logger
from emotk.data.audio import audio_info
from emotk.data.labels import LabelMap
from emotk.data.prepare.base import PrepareOptions, PrepareResult, audio_fields, manifest_path, option_bool
from emotk.errors import AudioError, DataError, EmotkError

log = get_logger("prepare.meld")

DATASET = "meld"
DESCRIPTION = "MELD (Friends dialogues; 7 emotions + sentiment; 9,989/1,109/2,610 utterances; wav from mp4 via ffmpeg)"
LAYOUT = """MELD.Raw/
  train_sent_emo.csv  dev_sent_emo.csv  test_sent_emo.csv
  train_splits/dia{D}_utt{U}.mp4
  dev_splits_complete/dia{D}_utt{U}.mp4
  output_repeated_splits_test/dia{D}_utt{U}.mp4"""
OPTIONS: dict[str, str] = {
    "extract_audio": "true (default): extract 16 kHz mono wav with ffmpeg into OUT/audio; false: transcript-only "
                     "manifest whose paths point at the mp4 clips",
    "ffmpeg": "path of the ffmpeg program (default: found on PATH)",
    "text_only": "true: a text-only manifest from the label CSVs alone (records without 'path'; for ERC text "
                 "models, text pre-training, LLM labelling); default false",
}

SPLITS = ("train", "dev", "test")
VIDEO_DIRS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
EXPECTED = {"train": 9989, "dev": 1109, "test": 2610}
EXPECTED_DIALOGUES = {"train": 1038, "dev": 114, "test": 280}
EMOTIONS = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
SENTIMENTS = ("negative", "neutral", "positive")
COLUMNS = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID")
FFMPEG_TIMEOUT_S = 300


def label_maps() -> list[LabelMap]:
    """MELD's 7-class label map (identity on its own label names)."""
    return [LabelMap("meld", list(EMOTIONS), {}, DATASET)]




def find_root(root: Path) -> Path:
    """``root`` or its ``MELD.Raw`` child: the folder holding the <split>_sent_emo.csv files."""
    root = Path(root)
    for cand in (root, root / "MELD.Raw"):
        if any((cand / f"{s}_sent_emo.csv").is_file() for s in SPLITS):
            return cand
    raise DataError(
        f"{root}: no MELD label CSVs found; expected MELD.Raw/{{train,dev,test}}_sent_emo.csv with the clips in "
        "train_splits/, dev_splits_complete/, output_repeated_splits_test/"
    )


def video_dir(root: Path, split: str) -> Path | None:
    """The folder holding a split's mp4 clips (top level or under <split>/), or None when absent."""
    name = VIDEO_DIRS[split]
    for cand in (root / name, root / split / name):
        if cand.is_dir():
            return cand
    return None


def read_csv(path: Path, split: str) -> list[dict[str, Any]]:
    """Rows of one MELD CSV as dicts with dialogue/turn ints; DataError naming file:line on bad rows."""
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    rows = []
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} (header: {reader.fieldnames})")
        for row in reader:
            line = reader.line_num
            try:
                dia, utt = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
            except (TypeError, ValueError):
                raise DataError(f"{path}:{line}: Dialogue_ID/Utterance_ID must be integers") from None
            emotion = (row["Emotion"] or "").strip().lower()
            if emotion not in EMOTIONS:
                raise DataError(f"{path}:{line}: unknown emotion '{row['Emotion']}' (known: {', '.join(EMOTIONS)})")
            sentiment = (row["Sentiment"] or "").strip().lower()
            if sentiment not in SENTIMENTS:
                raise DataError(f"{path}:{line}: unknown sentiment '{row['Sentiment']}'")
            rows.append({
                "split": split, "dia": dia, "utt": utt, "speaker": (row["Speaker"] or "").strip(),
                "emotion": emotion, "emotion_raw": row["Emotion"], "sentiment": sentiment,
                "text": (row["Utterance"] or "").strip(),
            })
    return rows


def find_ffmpeg(explicit: str | None = None) -> str:
    """Path of the ffmpeg program; EmotkError with the install command when it is missing."""
    exe = shutil.which(explicit or "ffmpeg")
    if exe is None:
        raise EmotkError(
            f"ffmpeg program not found{f' at {explicit}' if explicit else ' on PATH'}: MELD audio is extracted from "
            "its mp4 clips with ffmpeg (install it, e.g. `apt-get install ffmpeg`), or pass "
            "--option extract_audio=false for a transcript-only manifest"
        )
    return exe


def valid_wav(path: Path) -> bool:
    """True when ``path`` is an already extracted 16 kHz mono file with samples (header check only)."""
    try:
        info = audio_info(path)
    except AudioError:
        return False
    return info.sr == SAMPLE_RATE and info.channels == 1 and info.frames > 0


def extract_wav(ffmpeg: str, src: Path, dst: Path) -> str | None:
    """Extract ``src``'s audio to 16 kHz mono PCM-16 ``dst`` atomically; returns an error message or None."""
    from emotk.core.io import atomic_path

    if not src.is_file():
        return f"{src}: clip not found"
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
           "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "wav"]
    try:
        with atomic_path(dst, suffix=".part.wav") as tmp:
            proc = subprocess.run(cmd + [str(tmp)], capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
                raise _ClipError(f"{src}: ffmpeg failed ({last[:160]})")
            if not valid_wav(tmp):
                raise _ClipError(f"{src}: ffmpeg produced no usable audio (no audio stream?)")
    except _ClipError as e:
        return str(e)
    except subprocess.TimeoutExpired:
        return f"{src}: ffmpeg timed out after {FFMPEG_TIMEOUT_S} s"
    return None


class _ClipError(Exception):
    """One clip could not be converted (reported as a warning, never raised out of the importer)."""


def _remove_stale_parts(folder: Path) -> None:
    """Temporary files left by a killed run (``.dia*_utt*.wav.*.part.wav``)."""
    if folder.is_dir():
        for p in sorted(folder.glob(".*.part.wav")):
            p.unlink(missing_ok=True)


def prepare(root: Path, opts: PrepareOptions) -> PrepareResult:
    """Read the MELD CSVs, extract (or point at) each clip's audio; one record per utterance."""
    root = find_root(Path(root))
    text_only = option_bool(opts, "text_only", False)
    if text_only and "extract_audio" in opts.extra and option_bool(opts, "extract_audio", True):
        from emotk.errors import UsageError

        raise UsageError("options text_only=true and extract_audio=true contradict each other: drop one")
    extract = option_bool(opts, "extract_audio", not text_only)
    result = PrepareResult(dataset=DATASET, records=[], label_maps=label_maps())
    rows_by_split: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        csv_path = root / f"{split}_sent_emo.csv"
        if not csv_path.is_file():
            result.warn(f"{csv_path}: not found; split '{split}' skipped")
            continue
        rows_by_split[split] = read_csv(csv_path, split)
    if extract and rows_by_split and not any(video_dir(root, s) for s in rows_by_split):
        raise DataError(
            f"{root}: no MELD clip folder ({', '.join(VIDEO_DIRS[s] + '/' for s in rows_by_split)}) to extract "
            "audio from; unpack the MELD.Raw archives there, or pass --option text_only=true for a text-only "
            "manifest (or extract_audio=false to point at the mp4 clips)"
        )
    records: list[dict[str, Any]] = []
    missing: list[str] = []  # transcript-only mode: clips absent from an existing clip folder
    jobs: list[tuple[Path, Path, dict[str, Any]]] = []  # (mp4, wav, record)
    for split, rows in rows_by_split.items():
        vdir = video_dir(root, split)
        if vdir is None:
            if extract:
                result.warn(f"{root}: clip folder {VIDEO_DIRS[split]}/ not found; split '{split}' skipped "
                            "(use --option extract_audio=false for a transcript-only manifest)")
                continue
            vdir = root / VIDEO_DIRS[split]
        for row in rows:
            name = f"dia{row['dia']}_utt{row['utt']}"
            rec: dict[str, Any] = {
                "id": f"{DATASET}-{split}-{name}", "dataset": DATASET, "split": split,
                "dialogue": f"{DATASET}-{split}-dia{row['dia']}", "turn": row["utt"],
                "speaker": f"{DATASET}-{row['speaker']}", "language": "en",
                "emotion": row["emotion"], "emotion_raw": row["emotion_raw"], "sentiment": row["sentiment"],
                "text": row["text"],
            }
            if not row["speaker"]:
                del rec["speaker"]
            mp4 = vdir / f"{name}.mp4"
            if text_only:
                if rec["text"]:
                    records.append(rec)
                else:  # a text-only record must carry text
                    result.warn(f"skipped {rec['id']}: empty utterance (a text-only record needs text)")
            elif extract:
                jobs.append((mp4, opts.out_dir / "audio" / split / f"{name}.wav", rec))
            else:
                records.append({**rec, "path": manifest_path(mp4, opts, root), "media": "video"})
                if vdir.is_dir() and not mp4.is_file():
                    missing.append(rec["id"])
    if extract:
        records = _extract_all(jobs, opts, result, opts.extra.get("ffmpeg"))
    elif missing:
        result.warn(f"{len(missing)} clip(s) listed in the CSVs are missing (kept in the transcript-only "
                    f"manifest), e.g. {', '.join(missing[:3])}")
    result.records.extend(records)
    for split in rows_by_split:
        found = [r for r in result.records if r["split"] == split]
        result.check_count(f"{split} utterances", len(found), EXPECTED[split])
        result.check_count(f"{split} dialogues", len({r["dialogue"] for r in found}), EXPECTED_DIALOGUES[split])
    return result


def _extract_all(
    jobs: list[tuple[Path, Path, dict[str, Any]]], opts: PrepareOptions, result: PrepareResult, ffmpeg: str | None
) -> list[dict[str, Any]]:
    """Run ffmpeg for clips not extracted yet (in parallel), then build records from the wav headers."""
    for folder in sorted({wav.parent for _, wav, _ in jobs}):
        _remove_stale_parts(folder)
    errors: dict[Path, str] = {}
    todo = []
    for mp4, wav, _ in jobs:
        if valid_wav(wav):
            continue
        if mp4.is_file():
            todo.append((mp4, wav))
        else:
            errors[wav] = f"{mp4}: clip not found"
    if todo:
        exe = find_ffmpeg(ffmpeg)
        done = len(jobs) - len(todo) - len(errors)
        log.info(f"meld: extracting audio of {len(todo)} clip(s) with {exe} ({done} already extracted)")
        with Progress(len(todo), "extracting MELD audio") as bar, ThreadPoolExecutor(max(1, opts.workers)) as pool:
            for (mp4, wav), err in zip(todo, pool.map(lambda job: extract_wav(exe, *job), todo)):
                bar.advance()
                if err is not None:
                    errors[wav] = err
    records = []
    for mp4, wav, rec in jobs:
        if wav in errors:
            result.warn(f"skipped {rec['id']}: {errors[wav]}")
            continue
        try:
            info = audio_info(wav)
        except AudioError as e:
            result.warn(f"skipped {rec['id']}: {e}")
            continue
        rel = Path(os.path.relpath(os.path.abspath(wav), os.path.abspath(opts.out_dir))).as_posix()
        records.append({**rec, "path": rel, **audio_fields(info)})
    return records

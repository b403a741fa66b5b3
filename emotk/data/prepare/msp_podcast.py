"""MSP-Podcast importer (UTD MSP lab; naturalistic podcast speech, categorical + VAD consensus labels).

Expected layout (an ``MSP-PODCAST-Publish-1.x`` release folder)::

    MSP-PODCAST-Publish-1.x/
      Audios/MSP-PODCAST_0001_0008.wav
      Labels/labels_consensus.csv      FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
                                       (older releases: labels_concensus.csv)
      Partitions.txt                   "Train; MSP-PODCAST_0023_0048.wav"            (optional)
      Speaker_ids.txt                  "MSP-PODCAST_0001_0008.wav; 0001" and "Speaker_0001; Male" (optional)
      Labels/labels.txt                "MSP-PODCAST_0001_0008.wav; N; A:4.8; V:4.0; D:4.6;" (used only
                                       when no labels_consensus.csv exists)
      Transcripts/MSP-PODCAST_0001_0008.txt   (optional)

One record per labelled file. ``emotion_raw`` is the EmoClass code (A, S, H, U, F, D, C, N, O, X);
``emotion`` the canonical name (angry, sad, happy, surprise, fear, disgust, contempt, neutral; O ->
"other"; X = no agreement -> no ``emotion``). The label map ``msp-podcast`` has the 8 primary classes
and drops O/X. ``arousal``/``valence``/``dominance`` come from EmoAct/EmoVal/EmoDom (1-7). ``split`` is
Split_Set (or the Partitions.txt partition) lower-cased: train, development, test1, test2, test3
(releases that call the development set "Validation" are mapped to "development"). The CSV wins where
it and the text files disagree; the text files fill what the CSV lacks. Speakers "Unknown" are left out.
Partition sizes differ between releases, so no official counts are checked.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from emotk.data.labels import LabelMap
from emotk.data.prepare.base import PrepareOptions, PrepareResult, attach_audio, option_bool
from emotk.errors import DataError

DATASET = "msp-podcast"
DESCRIPTION = "MSP-Podcast (naturalistic podcast speech; 8 primary emotions + VAD; official partitions)"
LAYOUT = """MSP-PODCAST-Publish-1.x/
  Audios/<FileName>.wav
  Labels/labels_consensus.csv   (FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set)
  Partitions.txt, Speaker_ids.txt   (optional; "Train; <FileName>" / "<FileName>; <spkid>")
  Transcripts/<name>.txt            (optional)"""
OPTIONS: dict[str, str] = {
    "transcripts": "true (default): read Transcripts/<name>.txt into 'text' when the folder exists; false: skip",
}

CANONICAL: dict[str, str | None] = {
    "A": "angry", "S": "sad", "H": "happy", "U": "surprise", "F": "fear", "D": "disgust", "C": "contempt",
    "N": "neutral", "O": "other", "X": None,
}
PRIMARY = ["angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
SPLIT_NAMES = {"train": "train", "development": "development", "validation": "development",
               "test1": "test1", "test2": "test2", "test3": "test3"}
CSV_NAMES = ("labels_consensus.csv", "labels_concensus.csv")
_LABEL_TXT_RE = re.compile(r"^(MSP-PODCAST_\S+?\.wav);\s*(\w);\s*A:\s*([\d.]+);\s*V:\s*([\d.]+);\s*D:\s*([\d.]+);?")


def label_maps() -> list[LabelMap]:
    """The 8-class primary-emotion map (codes and canonical names; O/X/other dropped)."""
    mapping: dict[str, str | None] = {code: name for code, name in CANONICAL.items() if name in PRIMARY}
    mapping.update({"O": None, "X": None, "other": None})
    return [LabelMap(DATASET, list(PRIMARY), mapping, DATASET)]




def _float(value: str | None, where: str) -> float | None:
    if value is None or not str(value).strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise DataError(f"{where}: expected a number, got {value!r}") from None


def _stem(name: str) -> str:
    name = name.strip()
    return name[:-4] if name.lower().endswith(".wav") else name


def find_root(root: Path) -> Path:
    """The release folder: it holds Audios/ plus Labels/labels_consensus.csv, Labels/labels.txt or Partitions.txt."""
    root = Path(root)
    cands = [root] + sorted(p for p in root.glob("MSP-PODCAST*") if p.is_dir()) if root.is_dir() else [root]
    for cand in cands:
        if (cand / "Audios").is_dir() and (
            any((cand / "Labels" / n).is_file() for n in CSV_NAMES) or (cand / "Labels" / "labels.txt").is_file()
        ):
            return cand
    raise DataError(
        f"{root}: not an MSP-Podcast release (need Audios/ and Labels/labels_consensus.csv or Labels/labels.txt); "
        "expected MSP-PODCAST-Publish-1.x/{Audios/*.wav, Labels/labels_consensus.csv, Partitions.txt, Transcripts/}"
    )


def read_consensus_csv(path: Path) -> dict[str, dict[str, Any]]:
    """labels_consensus.csv -> {stem: {emotion_raw, arousal, valence, dominance, speaker_id, gender, split}}."""
    out: dict[str, dict[str, Any]] = {}
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        if "FileName" not in fields or "EmoClass" not in fields:
            raise DataError(f"{path}: expected columns FileName and EmoClass (header: {fields})")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            stem = _stem(row["FileName"] or "")
            if not stem:
                raise DataError(f"{where}: empty FileName")
            out[stem] = {
                "emotion_raw": (row.get("EmoClass") or "").strip() or None,
                "arousal": _float(row.get("EmoAct"), where), "valence": _float(row.get("EmoVal"), where),
                "dominance": _float(row.get("EmoDom"), where),
                "speaker_id": (row.get("SpkrID") or "").strip() or None,
                "gender": (row.get("Gender") or "").strip() or None,
                "split": (row.get("Split_Set") or "").strip() or None,
            }
    return out


def read_labels_txt(path: Path) -> dict[str, dict[str, Any]]:
    """Consensus lines of Labels/labels.txt (annotator lines below them are ignored)."""
    out: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _LABEL_TXT_RE.match(line.strip())
        if m:
            out[_stem(m[1])] = {"emotion_raw": m[2], "arousal": float(m[3]), "valence": float(m[4]),
                                "dominance": float(m[5])}
    return out


def read_partitions(path: Path) -> dict[str, str]:
    """Partitions.txt -> {stem: partition name as written}."""
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        part, sep, name = line.partition(";")
        if sep and name.strip():
            out[_stem(name)] = part.strip()
    return out


def read_speaker_ids(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Speaker_ids.txt -> ({stem: speaker id}, {speaker id: gender word})."""
    utt2spk, spk2gender = {}, {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        left, sep, right = line.partition(";")
        left, right = left.strip(), right.strip()
        if not sep or not left or not right:
            continue
        if left.startswith("Speaker_"):
            spk2gender[left[len("Speaker_"):]] = right
        elif left.startswith("MSP-PODCAST"):
            utt2spk[_stem(left)] = right
    return utt2spk, spk2gender


def _gender(word: str | None) -> str | None:
    w = (word or "").strip().lower()
    return {"male": "M", "m": "M", "female": "F", "f": "F"}.get(w)


def prepare(root: Path, opts: PrepareOptions) -> PrepareResult:
    """Scan an MSP-Podcast release; one record per labelled utterance, with the msp-podcast label map."""
    root = find_root(Path(root))
    result = PrepareResult(dataset=DATASET, records=[], label_maps=label_maps())
    csv_path = next((root / "Labels" / n for n in CSV_NAMES if (root / "Labels" / n).is_file()), None)
    labels = read_consensus_csv(csv_path) if csv_path else read_labels_txt(root / "Labels" / "labels.txt")
    if not labels:
        raise DataError(f"{csv_path or root / 'Labels' / 'labels.txt'}: no labelled utterances found")
    partitions = read_partitions(root / "Partitions.txt") if (root / "Partitions.txt").is_file() else {}
    utt2spk, spk2gender = ({}, {})
    if (root / "Speaker_ids.txt").is_file():
        utt2spk, spk2gender = read_speaker_ids(root / "Speaker_ids.txt")
    want_text = option_bool(opts, "transcripts", True)
    tdir = root / "Transcripts"
    unknown_codes: dict[str, int] = {}
    unknown_splits: dict[str, int] = {}
    items: list[tuple[Path, dict[str, Any]]] = []
    for stem in sorted(labels):
        lab = labels[stem]
        rec: dict[str, Any] = {"id": f"{DATASET}-{stem}", "dataset": DATASET, "language": "en"}
        raw = lab.get("emotion_raw")
        if raw is not None:
            rec["emotion_raw"] = raw
            if raw in CANONICAL:
                if CANONICAL[raw] is not None:
                    rec["emotion"] = CANONICAL[raw]
            else:
                unknown_codes[raw] = unknown_codes.get(raw, 0) + 1
        for key in ("valence", "arousal", "dominance"):
            if lab.get(key) is not None:
                rec[key] = lab[key]
        spk = lab.get("speaker_id") or utt2spk.get(stem)
        if spk and spk.lower() != "unknown":
            rec["speaker"] = f"{DATASET}-{spk}"
        gender = _gender(lab.get("gender")) or (_gender(spk2gender.get(spk)) if spk else None)
        if gender:
            rec["gender"] = gender
        split_raw = lab.get("split") or partitions.get(stem)
        if split_raw:
            split = SPLIT_NAMES.get(split_raw.strip().lower())
            if split is None:
                unknown_splits[split_raw] = unknown_splits.get(split_raw, 0) + 1
            else:
                rec["split"] = split
        if want_text and tdir.is_dir():
            tfile = tdir / f"{stem}.txt"
            if tfile.is_file():
                text = tfile.read_text(encoding="utf-8", errors="replace").strip()
                if text:
                    rec["text"] = text
        items.append((root / "Audios" / f"{stem}.wav", rec))
    for code, n in sorted(unknown_codes.items()):
        result.warn(f"{n} utterance(s) with unknown EmoClass '{code}' keep emotion_raw only")
    for name, n in sorted(unknown_splits.items()):
        result.warn(f"{n} utterance(s) with unknown partition '{name}' have no split")
    attach_audio(result, items, opts, root)
    return result

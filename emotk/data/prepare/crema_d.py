"""CREMA-D importer: the Crowd-sourced Emotional Multimodal Actors Dataset (Cao et al., 2014).

Clips ``AudioWAV/1001_DFA_ANG_XX.wav``: actor (1001..1091), sentence code (12 sentences), emotion
(ANG, DIS, FEA, HAP, NEU, SAD) and level (LO, MD, HI, XX = unspecified). ``VideoDemographics.csv``
(ActorID, Age, Sex, Race, Ethnicity) gives the actors' sex. 7,442 clips from 91 actors; the release's
``1076_MTI_SAD_XX.wav`` is empty and is skipped with a warning.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from emotk.data.audio import audio_info
from emotk.data.labels import LabelMap
from emotk.data.prepare.base import PrepareOptions, PrepareResult, attach_audio
from emotk.errors import AudioError, DataError

DATASET = "crema-d"
DESCRIPTION = "CREMA-D acted English speech (7,442 clips, 91 actors, 12 sentences, 6 emotions)"
LAYOUT = (
    "ROOT/AudioWAV/1001_DFA_ANG_XX.wav ... and ROOT/VideoDemographics.csv\n"
    "(ROOT/AudioMP3/*.mp3 is used when AudioWAV is absent)"
)
OPTIONS: dict[str, str] = {}

EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
SEX = {"male": "M", "female": "F"}
KNOWN_EMPTY = {"1076_MTI_SAD_XX"}  # empty in the official release
EXPECTED_CLIPS, EXPECTED_ACTORS = 7442, 91
DEMOGRAPHICS = "VideoDemographics.csv"
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def label_maps() -> list[LabelMap]:
    """The committed label map ``crema-d`` (6 classes); raw = the emotion code of the file name."""
    return [LabelMap(name=DATASET, classes=sorted(EMOTIONS.values()), map=dict(EMOTIONS), dataset=DATASET)]


def parse_name(stem: str) -> dict[str, Any] | None:
    """``1001_DFA_ANG_XX`` -> record fields (no path/audio/gender); None when not a CREMA-D clip name."""
    m = _NAME.match(stem)
    if not m:
        return None
    actor, sentence, emo, level = m.groups()
    if sentence not in SENTENCES or emo not in EMOTIONS or level not in LEVELS:
        return None
    return {
        "id": f"{DATASET}-{stem}",
        "dataset": DATASET,
        "speaker": f"{DATASET}-{actor}",
        "language": "en",
        "emotion": EMOTIONS[emo],
        "emotion_raw": emo,
        "intensity": LEVELS[level],
        "sentence": sentence,
        "text": SENTENCES[sentence],
    }


def read_demographics(path: Path) -> dict[str, str]:
    """VideoDemographics.csv -> {actor id: 'M'/'F'}; DataError naming the file/line for a malformed table."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            if "ActorID" not in header or "Sex" not in header:
                raise DataError(f"{path}:1: expected columns ActorID and Sex, found {', '.join(header) or 'none'}")
            genders = {}
            for lineno, row in enumerate(reader, 2):
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                actor, sex = row.get("ActorID", ""), row.get("Sex", "").lower()
                if not actor:
                    continue
                if sex not in SEX:
                    raise DataError(f"{path}:{lineno}: Sex must be Male or Female, got {row.get('Sex')!r}")
                genders[actor] = SEX[sex]
            return genders
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid UTF-8 text") from None


def _is_empty(path: Path) -> bool:
    """True when the file has no readable audio samples (header-only or zero bytes)."""
    try:
        return audio_info(path).frames == 0
    except AudioError:
        return True


def prepare(root: Path, opts: PrepareOptions) -> PrepareResult:
    """Scan AudioWAV (or AudioMP3) and read VideoDemographics.csv (see LAYOUT); return records with headers."""
    root = Path(root)
    result = PrepareResult(dataset=DATASET, records=[], label_maps=label_maps())
    if not root.is_dir():
        raise DataError(f"{root}: CREMA-D folder not found; expected layout:\n{LAYOUT}")
    if (root / "AudioWAV").is_dir():
        audio_dir, suffix = root / "AudioWAV", ".wav"
    elif (root / "AudioMP3").is_dir():
        audio_dir, suffix = root / "AudioMP3", ".mp3"
        result.warn(f"{root}: no AudioWAV folder, using the MP3 clips of AudioMP3")
    else:
        raise DataError(f"{root}: no AudioWAV (or AudioMP3) folder; expected CREMA-D layout:\n{LAYOUT}")

    genders: dict[str, str] = {}
    demographics = root / DEMOGRAPHICS
    if demographics.is_file():
        genders = read_demographics(demographics)
    else:
        result.warn(f"{demographics} not found; records get no gender")

    items, bad_names, known_empty = [], [], []
    for path in sorted(p for p in audio_dir.iterdir() if p.is_file() and p.suffix.lower() == suffix):
        rec = parse_name(path.stem)
        if rec is None:
            bad_names.append(path.name)
            continue
        actor = path.stem[:4]
        if actor in genders:
            rec["gender"] = genders[actor]
        if path.stem in KNOWN_EMPTY and _is_empty(path):
            known_empty.append(path.name)
            continue
        items.append((path, rec))
    if bad_names:
        result.warn(f"ignored {len(bad_names)} files whose names are not CREMA-D clip names (e.g. {bad_names[0]})")
    for name in known_empty:
        result.warn(f"skipped {name}: empty in the CREMA-D release (known issue)")
    if genders:
        missing = sorted({r["speaker"] for _, r in items if "gender" not in r})
        if missing:
            result.warn(f"{len(missing)} actors are not in {DEMOGRAPHICS} (no gender), e.g. {missing[0]}")
    if not items and not known_empty:
        raise DataError(f"{audio_dir}: no CREMA-D clips (like 1001_DFA_ANG_XX{suffix}) found")
    result.check_count("clips", len(items) + len(known_empty), EXPECTED_CLIPS)
    result.check_count("actors", len({r["speaker"] for _, r in items}), EXPECTED_ACTORS)
    attach_audio(result, items, opts, root)
    return result

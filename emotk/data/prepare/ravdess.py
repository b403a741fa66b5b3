"""RAVDESS importer: the Ryerson Audio-Visual Database of Emotional Speech and Song (audio-only parts).

File names are seven two-digit fields ``MM-VV-EE-II-SS-RR-AA``: modality (03 = audio-only), vocal channel
(01 speech, 02 song), emotion (01..08), intensity (01 normal, 02 strong), statement (1/2), repetition (1/2),
actor (01..24; odd = male). Speech records get dataset ``ravdess`` (1,440 files, 24 actors, 8 emotions), song
records ``ravdess-song`` (1,012 files, 23 singers — actor 18 has no song — 6 emotions).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from emotk.data.labels import LabelMap
from emotk.data.prepare.base import PrepareOptions, PrepareResult, attach_audio, option_choice
from emotk.errors import DataError

DATASET = "ravdess"
SONG_DATASET = "ravdess-song"
DESCRIPTION = "RAVDESS audio-only speech (1,440 files, 8 emotions) and song (1,012 files, 6 emotions), 24 actors"
LAYOUT = (
    "ROOT/Audio_Speech_Actors_01-24/Actor_01/03-01-01-01-01-01-01.wav ... Actor_24/...\n"
    "ROOT/Audio_Song_Actors_01-24/Actor_01/03-02-01-01-01-01-01.wav ...\n"
    "(or ROOT/Actor_01/... directly; .wav or .flac)"
)
OPTIONS = {"part": "speech, song or both (default both)"}

EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}
SONG_EMOTIONS = ("01", "02", "03", "04", "05", "06")  # the song part has no disgust / surprised
INTENSITY = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
CHANNELS = {"01": "speech", "02": "song"}
EXPECTED = {"speech": (1440, 24), "song": (1012, 23)}

AUDIO_SUFFIXES = (".wav", ".flac")  # order = preference when both exist for one name
_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_ACTOR_DIR = re.compile(r"^actor_(\d{2})$", re.IGNORECASE)
_PART_DIR = re.compile(r"^audio_(speech|song)_actors_01-24$", re.IGNORECASE)


def label_maps() -> list[LabelMap]:
    """The committed label maps: ``ravdess`` (8 classes) and ``ravdess-song`` (6); raw = emotion code."""
    speech = LabelMap(name=DATASET, classes=sorted(EMOTIONS.values()), map=dict(EMOTIONS), dataset=DATASET)
    song_map = {code: EMOTIONS[code] for code in SONG_EMOTIONS}
    song = LabelMap(name=SONG_DATASET, classes=sorted(song_map.values()), map=song_map, dataset=SONG_DATASET)
    return [speech, song]


def parse_name(stem: str) -> dict[str, Any] | None:
    """``03-01-06-01-02-01-12`` -> record fields (without path/audio fields); None when not a valid RAVDESS name."""
    m = _NAME.match(stem)
    if not m:
        return None
    _modality, channel, emo, inten, stmt, rep, actor = m.groups()
    if channel not in CHANNELS or emo not in EMOTIONS or inten not in INTENSITY or stmt not in STATEMENTS:
        return None
    if rep not in ("01", "02") or not 1 <= int(actor) <= 24:
        return None
    if channel == "02" and emo not in SONG_EMOTIONS:
        return None
    if emo == "01" and inten != "01":  # neutral has only normal intensity
        return None
    return {
        "id": f"{DATASET}-{stem}",
        "dataset": DATASET if channel == "01" else SONG_DATASET,
        "speaker": f"{DATASET}-{actor}",
        "gender": "M" if int(actor) % 2 else "F",
        "language": "en",
        "emotion": EMOTIONS[emo],
        "emotion_raw": emo,
        "intensity": INTENSITY[inten],
        "text": STATEMENTS[stmt],
        "statement": int(stmt),
        "repetition": int(rep),
        "vocal_channel": CHANNELS[channel],
    }


def _actor_dirs(root: Path) -> list[Path]:
    """Actor_XX folders under the official part folders first, then directly under ROOT (priority order)."""
    found: list[Path] = []
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    for part in (p for p in subdirs if _PART_DIR.match(p.name)):
        found += sorted(p for p in part.iterdir() if p.is_dir() and _ACTOR_DIR.match(p.name))
    found += [p for p in subdirs if _ACTOR_DIR.match(p.name)]
    return found


def prepare(root: Path, opts: PrepareOptions) -> PrepareResult:
    """Scan ROOT (see LAYOUT) and return speech and/or song records (``part`` option) with audio headers."""
    part = option_choice(opts, "part", ("speech", "song", "both"), "both")
    parts = ("speech", "song") if part == "both" else (part,)
    result = PrepareResult(dataset=SONG_DATASET if part == "song" else DATASET, records=[])
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: RAVDESS folder not found; expected layout:\n{LAYOUT}")
    actor_dirs = _actor_dirs(root)
    if not actor_dirs:
        raise DataError(f"{root}: no Actor_XX folders found; expected RAVDESS layout:\n{LAYOUT}")

    chosen: dict[str, tuple[Path, dict[str, Any]]] = {}
    duplicates, bad_names, wrong_folder = [], [], []
    for actor_dir in actor_dirs:
        folder_actor = _ACTOR_DIR.match(actor_dir.name).group(1)
        files = [p for p in actor_dir.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]
        files.sort(key=lambda p: (p.stem, AUDIO_SUFFIXES.index(p.suffix.lower()), p.name))
        for path in files:
            rec = parse_name(path.stem)
            if rec is None:
                bad_names.append(path.name)
                continue
            if CHANNELS[path.stem[3:5]] not in parts:
                continue
            if rec["id"] in chosen:
                duplicates.append(str(path.relative_to(root)))
                continue
            if path.stem[-2:] != folder_actor:
                wrong_folder.append(str(path.relative_to(root)))
            chosen[rec["id"]] = (path, rec)

    if bad_names:
        result.warn(f"ignored {len(bad_names)} files whose names are not RAVDESS audio names (e.g. {bad_names[0]})")
    if duplicates:
        result.warn(f"ignored {len(duplicates)} second copies of files already found (e.g. {duplicates[0]})")
    if wrong_folder:
        result.warn(f"{len(wrong_folder)} files sit in another actor's folder (e.g. {wrong_folder[0]}); "
                    "the actor is taken from the file name")
    if not chosen:
        raise DataError(f"{root}: no RAVDESS {part} audio files found; expected layout:\n{LAYOUT}")

    items = [chosen[k] for k in sorted(chosen)]
    for name in parts:
        recs = [r for _, r in items if r["vocal_channel"] == name]
        if not recs and part == "both":
            result.warn(f"no RAVDESS {name} files found (pass --option part=... to import one part only)")
            continue
        files, speakers = EXPECTED[name]
        result.check_count(f"{name} files", len(recs), files)
        result.check_count(f"{name} actors", len({r['speaker'] for r in recs}), speakers)
    wanted = {DATASET if name == "speech" else SONG_DATASET for name in parts}
    result.label_maps = [lm for lm in label_maps() if lm.name in wanted]
    attach_audio(result, items, opts, root)
    return result

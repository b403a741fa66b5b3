"""CaFE importer: the Canadian French Emotional speech database (Université de Sherbrooke).

Official naming (CaFE Readme.txt): ``AA-E-I-S`` = actor (01..12; odd = man, even = woman), emotion letter
(C colère, D dégoût, J joie, N neutre, P peur, S surprise, T tristesse), intensity (1 faible, 2 fort) and
sentence (1..6). Neutral files have no intensity field (``AA-N-S``). Files sit in one folder per emotion,
the non-neutral ones split into ``Faible``/``Fort``. 12 speakers x (6 emotions x 2 intensities x 6 sentences
+ 6 neutral) = 936 files, distributed at 48 kHz (``CaFE_48k``, WAV) and at 192 kHz (``CaFE_192k_1``/``_2``, AIFF).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

from emotk.data.labels import LabelMap
from emotk.data.prepare.base import PrepareOptions, PrepareResult, attach_audio
from emotk.errors import DataError

DATASET = "cafe"
DESCRIPTION = "CaFE Canadian French emotional speech (936 files, 12 speakers, 7 emotions, 2 intensities)"
LAYOUT = (
    "ROOT/Colère/Faible/01-C-1-1.wav, ROOT/Colère/Fort/01-C-2-1.wav, ... ROOT/Neutre/01-N-1.wav\n"
    "(emotion folders Colère, Dégoût, Joie, Neutre, Peur, Surprise, Tristesse; they may also sit one level down,\n"
    " e.g. ROOT/CaFE_48k/Colère/... or ROOT/CaFE_192k_1/... + ROOT/CaFE_192k_2/...; .wav, .aiff or .flac)"
)
OPTIONS: dict[str, str] = {}

EMOTIONS = {"C": "angry", "D": "disgust", "J": "happy", "N": "neutral", "P": "fear", "S": "surprise", "T": "sad"}
# Emotion folder names, accent-stripped and lower-cased (zip tools sometimes mangle the accents).
FOLDERS = {"colere": "C", "degout": "D", "joie": "J", "neutre": "N", "peur": "P", "surprise": "S", "tristesse": "T"}
INTENSITY = {"1": "low", "2": "high"}  # Faible / Fort
INTENSITY_FOLDERS = {"faible": "1", "fort": "2"}
SENTENCES = {
    "1": "Un cheval fou dans mon jardin",
    "2": "Deux ânes aigris au pelage brun",
    "3": "Trois cygnes aveugles au bord du lac",
    "4": "Quatre vieilles truies éléphantesques",
    "5": "Cinq pumas fiers et passionnés",
    "6": "Six ours aimants domestiqués",
}
EXPECTED_FILES, EXPECTED_SPEAKERS = 936, 12
AUDIO_SUFFIXES = (".wav", ".aiff", ".aif", ".flac")  # order = preference when one name exists twice
_NAME = re.compile(r"^(\d{2})-([CDJNPST])-(?:([12])-)?(\d{1,2})$")


def label_maps() -> list[LabelMap]:
    """The committed label map ``cafe`` (7 classes); raw = the emotion letter of the file name."""
    return [LabelMap(name=DATASET, classes=sorted(EMOTIONS.values()), map=dict(EMOTIONS), dataset=DATASET)]


def _plain(name: str) -> str:
    """Accent-free, lower-case folder name: 'Colère' / 'Cole\u0300re' -> 'colere'."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def parse_name(stem: str) -> dict[str, Any] | None:
    """``01-C-1-1`` / ``03-N-2`` -> record fields (no path/audio fields); None when not a valid CaFE name."""
    m = _NAME.match(stem)
    if not m:
        return None
    actor, letter, inten, sentence = m.groups()
    sentence = str(int(sentence))
    if not 1 <= int(actor) <= 99 or sentence not in SENTENCES:
        return None
    if (letter == "N") != (inten is None):  # neutral has no intensity; every other emotion has one
        return None
    rec: dict[str, Any] = {
        "id": f"{DATASET}-{stem}",
        "dataset": DATASET,
        "speaker": f"{DATASET}-{actor}",
        "gender": "M" if int(actor) % 2 else "F",
        "language": "fr",
        "emotion": EMOTIONS[letter],
        "emotion_raw": letter,
        "sentence": sentence,
        "text": SENTENCES[sentence],
    }
    if inten is not None:
        rec["intensity"] = INTENSITY[inten]
    return rec


def _emotion_dirs(root: Path) -> list[tuple[Path, str]]:
    """(folder, emotion letter) for emotion folders in ROOT or one level below (e.g. CaFE_48k/)."""
    found = []
    bases = [root] + sorted(p for p in root.iterdir() if p.is_dir() and _plain(p.name) not in FOLDERS)
    for base in bases:
        for sub in sorted(p for p in base.iterdir() if p.is_dir()):
            letter = FOLDERS.get(_plain(sub.name))
            if letter:
                found.append((sub, letter))
    return found


def prepare(root: Path, opts: PrepareOptions) -> PrepareResult:
    """Scan the CaFE emotion folders under ROOT (see LAYOUT); return records with audio headers."""
    root = Path(root)
    result = PrepareResult(dataset=DATASET, records=[], label_maps=label_maps())
    if not root.is_dir():
        raise DataError(f"{root}: CaFE folder not found; expected layout:\n{LAYOUT}")
    folders = _emotion_dirs(root)
    if not folders:
        raise DataError(f"{root}: no CaFE emotion folders (Colère, Dégoût, ...) found; expected layout:\n{LAYOUT}")

    candidates: list[tuple[str, int, str, Path, dict[str, Any], str]] = []
    bad_names, duplicates, mismatched = [], [], []
    for folder, letter in folders:
        for path in (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES):
            rec = parse_name(path.stem)
            rel = path.relative_to(root).as_posix()
            if rec is None:
                bad_names.append(rel)
                continue
            rank = AUDIO_SUFFIXES.index(path.suffix.lower())
            candidates.append((rec["id"], rank, rel, path, rec, letter))
    bad_names.sort()
    chosen: dict[str, tuple[Path, dict[str, Any]]] = {}
    for utt_id, _rank, rel, path, rec, letter in sorted(candidates, key=lambda c: c[:3]):
        if utt_id in chosen:  # the same utterance in another version (48 kHz WAV preferred over 192 kHz AIFF)
            duplicates.append(rel)
            continue
        inten_folder = INTENSITY_FOLDERS.get(path.parent.name.lower())
        if rec["emotion_raw"] != letter or (
            inten_folder is not None and rec.get("intensity") != INTENSITY[inten_folder]
        ):
            mismatched.append(rel)
        chosen[utt_id] = (path, rec)

    if bad_names:
        result.warn(f"ignored {len(bad_names)} files whose names are not CaFE names AA-E-I-S (e.g. {bad_names[0]})")
    if duplicates:
        result.warn(f"ignored {len(duplicates)} second copies of files already found, e.g. another sample-rate "
                    f"version (e.g. {duplicates[0]})")
    if mismatched:
        result.warn(f"{len(mismatched)} files sit in a folder that disagrees with their name (e.g. {mismatched[0]}); "
                    "labels are taken from the file name")
    if not chosen:
        raise DataError(f"{root}: no CaFE audio files found; expected layout:\n{LAYOUT}")
    items = [chosen[k] for k in sorted(chosen)]
    result.check_count("files", len(items), EXPECTED_FILES)
    result.check_count("speakers", len({r["speaker"] for _, r in items}), EXPECTED_SPEAKERS)
    attach_audio(result, items, opts, root)
    return result

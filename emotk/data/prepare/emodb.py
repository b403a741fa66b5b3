"""EmoDB importer: the Berlin Database of Emotional Speech (Burkhardt et al., 2005).

File names ``03a01Fa.wav``: speaker (2 digits), text code (3 characters), emotion letter of the German word
(W Ärger/Wut, L Langeweile, E Ekel, A Angst, F Freude, T Trauer, N neutral) and a version letter.
535 files from 10 speakers (5 female, 5 male), 16 kHz; the release puts them in ``wav/``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from emotk.data.labels import LabelMap
from emotk.data.prepare.base import PrepareOptions, PrepareResult, attach_audio
from emotk.errors import DataError

DATASET = "emodb"
DESCRIPTION = "Berlin EmoDB German acted speech (535 files, 10 speakers, 7 emotions)"
LAYOUT = "ROOT/wav/03a01Fa.wav ... (the release's wav/ folder; or the .wav files directly in ROOT)"
OPTIONS: dict[str, str] = {}

EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}
# Speaker genders as documented with the database.
GENDERS = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M", "12": "M", "13": "F", "14": "F", "15": "M", "16": "F"}
# The ten sentences (text codes) as documented with the database.
TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
EXPECTED_FILES, EXPECTED_SPEAKERS = 535, 10
_NAME = re.compile(r"^(\d{2})([ab]\d{2})([WLEAFTN])([a-z])$")


def label_maps() -> list[LabelMap]:
    """The committed label map ``emodb`` (7 classes); raw = the German emotion letter of the file name."""
    return [LabelMap(name=DATASET, classes=sorted(EMOTIONS.values()), map=dict(EMOTIONS), dataset=DATASET)]


def parse_name(stem: str) -> dict[str, Any] | None:
    """``03a01Fa`` -> record fields (no path/audio fields); None when not an EmoDB name."""
    m = _NAME.match(stem)
    if not m:
        return None
    speaker, text_code, letter, version = m.groups()
    rec: dict[str, Any] = {
        "id": f"{DATASET}-{stem}",
        "dataset": DATASET,
        "speaker": f"{DATASET}-{speaker}",
        "language": "de",
        "emotion": EMOTIONS[letter],
        "emotion_raw": letter,
        "sentence": text_code,
        "version": version,
    }
    if speaker in GENDERS:
        rec["gender"] = GENDERS[speaker]
    if text_code in TEXTS:
        rec["text"] = TEXTS[text_code]
    return rec


def _wav_dir(root: Path) -> Path | None:
    """The folder holding the EmoDB wav files: ROOT/wav, ROOT, or ROOT/<one folder>/wav."""
    candidates = [root / "wav", root] + sorted(p / "wav" for p in root.iterdir() if p.is_dir())
    for folder in candidates:
        if folder.is_dir() and any(_NAME.match(p.stem) for p in folder.glob("*.wav")):
            return folder
    return None


def prepare(root: Path, opts: PrepareOptions) -> PrepareResult:
    """Scan EmoDB's wav folder (see LAYOUT); return records with audio headers."""
    root = Path(root)
    result = PrepareResult(dataset=DATASET, records=[], label_maps=label_maps())
    if not root.is_dir():
        raise DataError(f"{root}: EmoDB folder not found; expected layout:\n{LAYOUT}")
    folder = _wav_dir(root)
    if folder is None:
        raise DataError(f"{root}: no EmoDB wav files (like 03a01Fa.wav) found; expected layout:\n{LAYOUT}")
    items, bad_names = [], []
    for path in sorted(folder.glob("*.wav")):
        rec = parse_name(path.stem)
        if rec is None:
            bad_names.append(path.name)
            continue
        items.append((path, rec))
    if bad_names:
        result.warn(f"ignored {len(bad_names)} .wav files whose names are not EmoDB names (e.g. {bad_names[0]})")
    unknown = sorted({r["speaker"] for _, r in items if "gender" not in r})
    if unknown:
        result.warn(f"speakers not in the EmoDB documentation (no gender): {', '.join(unknown)}")
    unknown_texts = sorted({r["sentence"] for _, r in items if "text" not in r})
    if unknown_texts:
        result.warn(f"text codes not in the EmoDB documentation (no text): {', '.join(unknown_texts)}")
    result.check_count("files", len(items), EXPECTED_FILES)
    result.check_count("speakers", len({r["speaker"] for _, r in items}), EXPECTED_SPEAKERS)
    attach_audio(result, items, opts, root)
    return result

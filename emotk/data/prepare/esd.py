"""ESD importer: the Emotional Speech Dataset (Zhou et al., ICASSP 2021).

Layout: ``<spk>/<Emotion>/<spk>_<nnnnnn>.wav`` (some releases add ``train``/``evaluation``/``test`` folders under
each emotion) plus ``<spk>/<spk>.txt`` with ``utt_id<TAB>text<TAB>emotion`` lines. Speakers 0001–0010 are
Mandarin, 0011–0020 English; each speaker has 5 emotions x 350 utterances, numbered in 350-utterance blocks
(1–350 neutral, 351–700 angry, 701–1050 happy, 1051–1400 sad, 1401–1750 surprise).

Protocol fields: ``esd_index`` = position in the block (1..350) and ``split`` by the rule of METHODS.md
(1–20 valid, 21–50 test, 51–350 train), which is also what the official split folders hold.
The transcript files use different encodings per speaker (UTF-8, UTF-16, GB2312, Latin-1); they are detected.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from emotk.data.labels import LabelMap
from emotk.data.prepare.base import PrepareOptions, PrepareResult, attach_audio, option_choice
from emotk.errors import DataError

DATASET = "esd"
DESCRIPTION = "ESD emotional speech, 10 English + 10 Mandarin speakers x 5 emotions x 350 utterances"
LAYOUT = (
    "ROOT/0011/0011.txt, ROOT/0011/Neutral/0011_000001.wav ... ROOT/0011/Surprise/0011_001750.wav\n"
    "(emotion folders Neutral, Angry, Happy, Sad, Surprise, optionally with train/evaluation/test subfolders;\n"
    " the speaker folders may sit one or two levels down, e.g. ROOT/Emotion Speech Dataset/0011/...)"
)
OPTIONS = {"language": "en (speakers 0011-0020, default), zh (0001-0010) or all"}

BLOCK = 350
BLOCK_ORDER = ("neutral", "angry", "happy", "sad", "surprise")  # emotion of file numbers 1-350, 351-700, ...
EMOTION_FOLDERS = {"Neutral": "neutral", "Angry": "angry", "Happy": "happy", "Sad": "sad", "Surprise": "surprise"}
SPLIT_FOLDERS = {"train": "train", "evaluation": "valid", "test": "test"}
# Speaker genders from the ESD ReadMe.
GENDERS = {
    "0001": "F", "0002": "F", "0003": "F", "0004": "M", "0005": "M",
    "0006": "M", "0007": "F", "0008": "M", "0009": "F", "0010": "M",
    "0011": "M", "0012": "M", "0013": "M", "0014": "M", "0015": "F",
    "0016": "F", "0017": "F", "0018": "F", "0019": "F", "0020": "M",
}
# Emotion words of the transcript files' third column (English and Mandarin speakers).
_EMOTION_WORDS = {w.lower() for w in EMOTION_FOLDERS} | {"中立", "生气", "快乐", "伤心", "惊喜"}
_UTT = re.compile(r"^(\d{4})_(\d{6})$")
_SPEAKER_DIR = re.compile(r"^\d{4}$")


def label_maps() -> list[LabelMap]:
    """The committed label map ``esd`` (5 classes); raw = the emotion folder name."""
    return [LabelMap(name=DATASET, classes=sorted(BLOCK_ORDER), map=dict(EMOTION_FOLDERS), dataset=DATASET)]


def language_of(speaker: str) -> str:
    """'0011' -> 'en', '0001' -> 'zh'."""
    return "zh" if int(speaker) <= 10 else "en"


def split_of(esd_index: int) -> str:
    """Position in the 350-utterance emotion block (1..350) -> 'valid' (1-20), 'test' (21-50) or 'train'."""
    if not 1 <= esd_index <= BLOCK:
        raise ValueError(f"ESD block index must be in 1..{BLOCK}, got {esd_index}")
    return "valid" if esd_index <= 20 else "test" if esd_index <= 50 else "train"


def _decode(data: bytes, chinese: bool) -> str:
    """Transcript bytes -> text: BOM / UTF-16 first, then UTF-8, then GB18030 (Mandarin) or CP1252/Latin-1."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data and data.count(b"\x00") > len(data) // 4:  # UTF-16 without a byte-order mark
        return data.decode("utf-16-le" if data[1:2] == b"\x00" else "utf-16-be", errors="replace")
    for encoding in ("utf-8", "gb18030") if chinese else ("utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def read_transcript(path: Path, speaker: str) -> tuple[dict[str, str], list[int]]:
    """``<spk>.txt`` -> ({utt_id: text}, [line numbers that could not be parsed]).

    Lines are ``utt_id<TAB>text<TAB>emotion``; a few lines of the release use spaces instead of tabs, so
    a line without three tab-separated fields is split on whitespace and a trailing emotion word dropped.
    """
    text = _decode(path.read_bytes(), chinese=language_of(speaker) == "zh")
    texts: dict[str, str] = {}
    bad: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip().lstrip("\ufeff")
        if not line:
            continue
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) >= 3:
            utt, sentence = fields[0], " ".join(f for f in fields[1:-1] if f)
        else:
            tokens = line.split()
            utt = tokens[0]
            rest = tokens[1:]
            if rest and rest[-1].lower() in _EMOTION_WORDS:
                rest = rest[:-1]
            sentence = " ".join(rest)
        if not _UTT.match(utt) or not sentence:
            bad.append(lineno)
            continue
        texts[utt] = sentence
    return texts, bad


def _speaker_dirs(root: Path) -> list[Path]:
    """Speaker folders 0001..0020 in ROOT or up to two levels below (the first level that has any)."""
    level = [root]
    for _depth in range(3):
        found = sorted(p for d in level for p in d.iterdir() if p.is_dir() and _SPEAKER_DIR.match(p.name)
                       and 1 <= int(p.name) <= 20)
        if found:
            return found
        level = sorted(p for d in level for p in d.iterdir() if p.is_dir())
    return []


def prepare(root: Path, opts: PrepareOptions) -> PrepareResult:
    """Scan ESD (see LAYOUT) for the speakers of the ``language`` option; return records with audio headers."""
    language = option_choice(opts, "language", ("en", "zh", "all"), "en")
    root = Path(root)
    result = PrepareResult(dataset=DATASET, records=[], label_maps=label_maps())
    if not root.is_dir():
        raise DataError(f"{root}: ESD folder not found; expected layout:\n{LAYOUT}")
    speakers = [d for d in _speaker_dirs(root) if language in ("all", language_of(d.name))]
    if not speakers:
        raise DataError(f"{root}: no ESD speaker folders for language={language} found; expected layout:\n{LAYOUT}")

    items: list[tuple[Path, dict[str, Any]]] = []
    seen: set[str] = set()
    bad_names, misplaced, block_mismatch, split_mismatch, no_text = [], [], [], [], []
    for spk_dir in speakers:
        spk = spk_dir.name
        transcript = spk_dir / f"{spk}.txt"
        texts: dict[str, str] = {}
        if transcript.is_file():
            texts, bad_lines = read_transcript(transcript, spk)
            if bad_lines:
                result.warn(f"{transcript}: {len(bad_lines)} lines could not be parsed (first: line {bad_lines[0]})")
        else:
            result.warn(f"{transcript}: transcript file not found; speaker {spk} gets no text")
        emotion_dirs = sorted(p for p in spk_dir.iterdir() if p.is_dir() and p.name.capitalize() in EMOTION_FOLDERS)
        if not emotion_dirs:
            result.warn(f"{spk_dir}: no emotion folders (Neutral, Angry, Happy, Sad, Surprise)")
        for emo_dir in emotion_dirs:
            raw = emo_dir.name.capitalize()
            emotion = EMOTION_FOLDERS[raw]
            for path in sorted(emo_dir.rglob("*.wav")):
                rel = path.relative_to(root).as_posix()
                m = _UTT.match(path.stem)
                if not m:
                    bad_names.append(rel)
                    continue
                if m.group(1) != spk:
                    misplaced.append(rel)
                    continue
                if path.stem in seen:
                    bad_names.append(rel)
                    continue
                seen.add(path.stem)
                number = int(m.group(2))
                esd_index = (number - 1) % BLOCK + 1
                block = (number - 1) // BLOCK
                if block >= len(BLOCK_ORDER) or BLOCK_ORDER[block] != emotion:
                    block_mismatch.append(rel)
                split = split_of(esd_index)
                folder_split = SPLIT_FOLDERS.get(path.parent.name.lower())
                if folder_split is not None and folder_split != split:
                    split_mismatch.append(rel)
                rec: dict[str, Any] = {
                    "id": f"{DATASET}-{path.stem}",
                    "dataset": DATASET,
                    "speaker": f"{DATASET}-{spk}",
                    "gender": GENDERS[spk],
                    "language": language_of(spk),
                    "emotion": emotion,
                    "emotion_raw": raw,
                    "esd_index": esd_index,
                    "split": split,
                }
                if path.stem in texts:
                    rec["text"] = texts[path.stem]
                else:
                    no_text.append(path.stem)
                items.append((path, rec))

    if bad_names:
        result.warn(f"ignored {len(bad_names)} .wav files that are not (first copies of) ESD names "
                    f"<spk>_<nnnnnn> (e.g. {bad_names[0]})")
    if misplaced:
        result.warn(f"ignored {len(misplaced)} files in another speaker's folder (e.g. {misplaced[0]})")
    if block_mismatch:
        result.warn(f"{len(block_mismatch)} files are numbered outside their emotion's 350-utterance block "
                    f"(e.g. {block_mismatch[0]}); the emotion is taken from the folder")
    if split_mismatch:
        result.warn(f"{len(split_mismatch)} files sit in a split folder that disagrees with the 1-20/21-50/51-350 "
                    f"rule (e.g. {split_mismatch[0]}); the rule is used")
    if no_text:
        result.warn(f"{len(no_text)} utterances have no transcript line (e.g. {no_text[0]})")
    if not items:
        raise DataError(f"{root}: no ESD audio files found; expected layout:\n{LAYOUT}")
    n_speakers = 20 if language == "all" else 10
    result.check_count("utterances", len(items), n_speakers * len(BLOCK_ORDER) * BLOCK)
    result.check_count("speakers", len({r["speaker"] for _, r in items}), n_speakers)
    items.sort(key=lambda item: item[1]["id"])
    attach_audio(result, items, opts, root)
    return result

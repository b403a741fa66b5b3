"""TIMIT importer: the DARPA TIMIT Acoustic-Phonetic Continuous Speech Corpus (LDC93S1).

Layout ``TIMIT/{TRAIN,TEST}/DR1..DR8/<speaker>/<utterance>.WAV`` + ``.TXT`` (the speaker folder is the sex letter
M/F, the speaker's initials and a digit, e.g. FCJF0). Audio is 16 kHz NIST SPHERE, which soundfile reads
(shorten-compressed SPHERE is not readable and gives a clear error). 630 speakers x 10 sentences = 6,300
utterances: 2 dialect sentences SA1/SA2 read by every speaker, 5 SX and 3 SI sentences. TIMIT is read,
neutral speech; emotk uses it as a source of unseen neutral speakers, so every record has emotion "neutral".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from emotk.data.prepare.base import PrepareOptions, PrepareResult, attach_audio, option_bool
from emotk.errors import DataError

DATASET = "timit"
DESCRIPTION = "TIMIT read English speech (6,300 utterances, 630 speakers, 8 dialect regions), neutral"
LAYOUT = (
    "ROOT/TRAIN/DR1/FCJF0/SA1.WAV + SA1.TXT ... ROOT/TEST/DR8/...\n"
    "(lower-case names and an extra level such as ROOT/data/TRAIN or ROOT/timit/train also work)"
)
OPTIONS = {"include_sa": "keep the two SA dialect sentences that all speakers read (default true)"}

EXPECTED_SPEAKERS = 630
SENTENCES_PER_SPEAKER = {"SA": 2, "SI": 3, "SX": 5}
_DIALECT = re.compile(r"^DR[1-8]$", re.IGNORECASE)
_SPEAKER = re.compile(r"^[MF][A-Z]{3}\d$", re.IGNORECASE)
_AUDIO = re.compile(r"^(S[AIX]\d+)\.wav$", re.IGNORECASE)
_CONVERTED = re.compile(r"^(S[AIX]\d+)\.wav\.wav$", re.IGNORECASE)  # RIFF copies some distributions add
_TEXT = re.compile(r"^(S[AIX]\d+)\.txt$", re.IGNORECASE)


def _split_dirs(root: Path) -> list[tuple[str, Path]]:
    """[('train', dir), ('test', dir)] found in ROOT or up to two levels below."""
    level = [root]
    for _depth in range(3):
        for base in level:
            splits = [(p.name.lower(), p) for p in sorted(base.iterdir())
                      if p.is_dir() and p.name.lower() in ("train", "test")]
            if splits:
                return splits
        level = sorted(p for d in level for p in d.iterdir() if p.is_dir())
    return []


def read_text(path: Path) -> str | None:
    """A TIMIT .TXT line ``0 46797 She had your dark suit ...`` -> the sentence (None when malformed)."""
    try:
        line = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    parts = line.split(maxsplit=2)
    if len(parts) < 3 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return parts[2].strip()


def _check_sphere(path: Path) -> None:
    """Shorten-compressed SPHERE files cannot be decoded by soundfile: say so once, clearly."""
    with open(path, "rb") as f:
        header = f.read(1024)
    if header.startswith(b"NIST_1A") and b"shorten" in header:
        raise DataError(
            f"{path}: TIMIT audio is shorten-compressed NIST SPHERE, which soundfile cannot read; "
            "decompress the corpus first (e.g. `sph2pipe -f wav IN OUT` for every file, keeping the names)"
        )


def prepare(root: Path, opts: PrepareOptions) -> PrepareResult:
    """Scan TIMIT (see LAYOUT); return one neutral record per utterance with text, dialect region and split."""
    include_sa = option_bool(opts, "include_sa", True)
    root = Path(root)
    result = PrepareResult(dataset=DATASET, records=[])
    if not root.is_dir():
        raise DataError(f"{root}: TIMIT folder not found; expected layout:\n{LAYOUT}")
    splits = _split_dirs(root)
    if not splits:
        raise DataError(f"{root}: no TRAIN/TEST folders found; expected TIMIT layout:\n{LAYOUT}")

    items: list[tuple[Path, dict[str, Any]]] = []
    no_text: list[str] = []
    for split, split_dir in splits:
        for dr in sorted(p for p in split_dir.iterdir() if p.is_dir() and _DIALECT.match(p.name)):
            for spk_dir in sorted(p for p in dr.iterdir() if p.is_dir() and _SPEAKER.match(p.name)):
                speaker = spk_dir.name.upper()
                audio: dict[str, Path] = {}
                converted: dict[str, Path] = {}
                texts: dict[str, Path] = {}
                for f in sorted(spk_dir.iterdir()):
                    for pattern, table in ((_AUDIO, audio), (_CONVERTED, converted), (_TEXT, texts)):
                        m = pattern.match(f.name)
                        if m and f.is_file():
                            table.setdefault(m.group(1).upper(), f)
                for utt in sorted(set(audio) | set(converted)):
                    if utt.startswith("SA") and not include_sa:
                        continue
                    rec: dict[str, Any] = {
                        "id": f"{DATASET}-{speaker}_{utt}",
                        "dataset": DATASET,
                        "speaker": f"{DATASET}-{speaker}",
                        "gender": speaker[0],
                        "language": "en",
                        "emotion": "neutral",
                        "dialect": dr.name.upper(),
                        "sentence": utt,
                        "sentence_type": utt[:2],
                        "split": split,
                    }
                    text = read_text(texts[utt]) if utt in texts else None
                    if text:
                        rec["text"] = text
                    else:
                        no_text.append(rec["id"])
                    items.append((audio.get(utt) or converted[utt], rec))

    if not items:
        raise DataError(f"{root}: no TIMIT utterances (DRn/<speaker>/SA1.WAV ...) found; expected layout:\n{LAYOUT}")
    if no_text:
        result.warn(f"{len(no_text)} utterances have no readable .TXT transcript (e.g. {no_text[0]})")
    _check_sphere(items[0][0])
    per_speaker = sum(n for kind, n in SENTENCES_PER_SPEAKER.items() if include_sa or kind != "SA")
    result.check_count("utterances", len(items), EXPECTED_SPEAKERS * per_speaker)
    result.check_count("speakers", len({r["speaker"] for _, r in items}), EXPECTED_SPEAKERS)
    attach_audio(result, items, opts, root)
    if not result.records:
        raise DataError(f"{root}: none of the {len(items)} TIMIT audio files could be read "
                        f"({result.warnings[-1] if result.warnings else 'unknown reason'})")
    return result

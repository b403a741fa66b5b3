"""IEMOCAP importer (USC SAIL, 5 dyadic sessions, 10,039 labelled turns).

Expected layout (the official ``IEMOCAP_full_release`` folder; ROOT may also be its parent)::

    IEMOCAP_full_release/
      Session1/ .. Session5/
        sentences/wav/<dialog>/<utterance>.wav        e.g. Ses01F_impro01/Ses01F_impro01_F000.wav
        dialog/EmoEvaluation/<dialog>.txt   "[6.2901 - 8.2357]\\tSes01F_impro01_F000\\tneu\\t[2.5000, 2.5000, 2.5000]"
        dialog/transcriptions/<dialog>.txt            "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."

One record per line of an EmoEvaluation file (the consensus label; the per-annotator lines below it
are ignored). The speaker is the session plus the gender letter of the *speaking* actor, taken from the
last "_" token of the utterance name (``Ses01F_impro01_M000`` -> ``iemocap-Ses01M``, gender ``M``).
``turn`` is the 0-based rank of the utterance's start time inside its dialogue, computed over all
labelled utterances (so it is stable when some audio files are missing). ``emotion`` is the canonical
label; ``xxx`` (no majority) keeps ``emotion_raw`` only. Valence/arousal/dominance are the
consensus scores (1-5) in the file's "[V, A, D]" order.

Label maps: ``iemocap-4`` (angry, happy = hap + exc, neutral, sad: 5,531 utterances) and ``iemocap-6``
(angry, excited, frustrated, happy, neutral, sad: 7,380 utterances with these consensus labels; the
7,433 often quoted for 6-class ERC comes from the DialogueRNN feature files, which label 53 more
turns "hap").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from emotk.data.labels import LabelMap
from emotk.data.prepare.base import PrepareOptions, PrepareResult, attach_audio
from emotk.errors import DataError

DATASET = "iemocap"
DESCRIPTION = "IEMOCAP (5 sessions, 10,039 utterances; categorical + VAD labels, transcripts, dialogues)"
LAYOUT = """IEMOCAP_full_release/
  Session1..Session5/
    sentences/wav/<dialog>/<utterance>.wav
    dialog/EmoEvaluation/<dialog>.txt      ([start - end] utterance emotion [V, A, D])
    dialog/transcriptions/<dialog>.txt     (utterance [start-end]: text)"""
OPTIONS: dict[str, str] = {}

EXPECTED_UTTERANCES = 10039
EXPECTED_SESSIONS = 5
EXPECTED_DIALOGUES = 151
EXPECTED_4CLASS = 5531
EXPECTED_6CLASS = 7380

# EmoEvaluation code -> canonical emotion (xxx = no majority: no canonical label)
CANONICAL: dict[str, str | None] = {
    "ang": "angry", "hap": "happy", "exc": "excited", "sad": "sad", "neu": "neutral",
    "fru": "frustrated", "sur": "surprise", "fea": "fear", "dis": "disgust", "oth": "other", "xxx": None,
}

_EVAL_RE = re.compile(
    r"^\[\s*(?P<start>\d+(?:\.\d*)?)\s*-\s*(?P<end>\d+(?:\.\d*)?)\s*\]"
    r"\s+(?P<utt>\S+)\s+(?P<emo>\S+)\s+\[(?P<vad>[^\]]*)\]"
)
_TRANS_RE = re.compile(r"^(?P<utt>Ses\S+)\s+\[[^\]]*\]:\s?(?P<text>.*)$")


def label_maps() -> list[LabelMap]:
    """The two IEMOCAP label sets. Keys cover both the raw codes and the canonical names."""
    four = {"ang": "angry", "hap": "happy", "exc": "happy", "excited": "happy", "sad": "sad", "neu": "neutral"}
    six = {"ang": "angry", "hap": "happy", "exc": "excited", "fru": "frustrated", "sad": "sad", "neu": "neutral"}
    dropped4 = ["fru", "frustrated", "sur", "surprise", "fea", "fear", "dis", "disgust", "oth", "other", "xxx"]
    dropped6 = ["sur", "surprise", "fea", "fear", "dis", "disgust", "oth", "other", "xxx"]
    return [
        LabelMap("iemocap-4", ["angry", "happy", "neutral", "sad"], {**four, **dict.fromkeys(dropped4)}, DATASET),
        LabelMap("iemocap-6", ["angry", "excited", "frustrated", "happy", "neutral", "sad"],
                 {**six, **dict.fromkeys(dropped6)}, DATASET),
    ]


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _listing(folder: Path, suffix: str) -> list[Path]:
    """Sorted files with ``suffix`` in ``folder`` (skips macOS '._' resource forks)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == suffix and not p.name.startswith("._"))


def find_root(root: Path) -> Path:
    """``root`` itself or its ``IEMOCAP_full_release`` child; DataError (with the layout) otherwise."""
    root = Path(root)
    for cand in (root, root / "IEMOCAP_full_release"):
        if any((cand / f"Session{i}" / "dialog" / "EmoEvaluation").is_dir() for i in range(1, 6)):
            return cand
    raise DataError(
        f"{root}: not an IEMOCAP folder (no Session<N>/dialog/EmoEvaluation); expected IEMOCAP_full_release/"
        "Session1..5/{sentences/wav/<dialog>/<utt>.wav, dialog/EmoEvaluation/<dialog>.txt, dialog/transcriptions/}"
    )


def parse_evaluation(path: Path) -> list[dict[str, Any]]:
    """Consensus lines of one EmoEvaluation file -> [{utt, start, end, emotion_raw, valence, arousal, dominance}]."""
    out = []
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.startswith("["):
            continue
        m = _EVAL_RE.match(line.strip())
        if not m:
            raise DataError(f"{path}:{lineno}: cannot parse EmoEvaluation line {line.strip()[:80]!r}")
        try:
            vad = [float(v) for v in m["vad"].split(",")]
        except ValueError:
            raise DataError(f"{path}:{lineno}: bad [V, A, D] values {m['vad']!r}") from None
        if len(vad) != 3:
            raise DataError(f"{path}:{lineno}: expected 3 values in [V, A, D], got {len(vad)}")
        out.append({
            "utt": m["utt"], "start": float(m["start"]), "end": float(m["end"]), "emotion_raw": m["emo"],
            "valence": vad[0], "arousal": vad[1], "dominance": vad[2],
        })
    return out


def parse_transcription(path: Path) -> dict[str, str]:
    """utterance name -> text (lines that are not 'Ses... [t0-t1]: text' are ignored)."""
    texts = {}
    for line in _read_text(path).splitlines():
        m = _TRANS_RE.match(line.strip())
        if m:
            texts[m["utt"]] = m["text"].strip()
    return texts


def prepare(root: Path, opts: PrepareOptions) -> PrepareResult:
    """Scan an IEMOCAP release; returns one record per labelled utterance plus the iemocap-4/-6 label maps."""
    root = find_root(Path(root))
    result = PrepareResult(dataset=DATASET, records=[], label_maps=label_maps())
    sessions = [i for i in range(1, 6) if (root / f"Session{i}" / "dialog" / "EmoEvaluation").is_dir()]
    items: list[tuple[Path, dict[str, Any]]] = []
    dialogues = 0
    for i in sessions:
        sdir = root / f"Session{i}"
        for eval_file in _listing(sdir / "dialog" / "EmoEvaluation", ".txt"):
            dialog = eval_file.stem
            entries = parse_evaluation(eval_file)
            if not entries:
                continue
            dialogues += 1
            trans_file = sdir / "dialog" / "transcriptions" / f"{dialog}.txt"
            texts = parse_transcription(trans_file) if trans_file.is_file() else {}
            if not trans_file.is_file():
                result.warn(f"{trans_file}: transcription file missing; records of {dialog} have no text")
            order = sorted(entries, key=lambda e: (e["start"], e["utt"]))
            for turn, e in enumerate(order):
                utt = e["utt"]
                spk_letter = utt.rsplit("_", 1)[-1][:1]
                if not utt.startswith(dialog) or spk_letter not in ("F", "M"):
                    raise DataError(f"{eval_file}: unexpected utterance name '{utt}' in dialogue {dialog}")
                raw = e["emotion_raw"]
                if raw not in CANONICAL:
                    known = ", ".join(CANONICAL)
                    raise DataError(f"{eval_file}: unknown emotion code '{raw}' for {utt} (known: {known})")
                rec: dict[str, Any] = {
                    "id": f"{DATASET}-{utt}", "dataset": DATASET,
                    "speaker": f"{DATASET}-{utt[:5]}{spk_letter}", "gender": spk_letter, "language": "en",
                    "session": utt[:5], "dialogue": f"{DATASET}-{dialog}", "turn": turn,
                    "recording": "improvised" if "_impro" in dialog else "scripted",
                    "emotion_raw": raw,
                    "valence": e["valence"], "arousal": e["arousal"], "dominance": e["dominance"],
                }
                if CANONICAL[raw] is not None:
                    rec["emotion"] = CANONICAL[raw]
                if utt in texts:
                    rec["text"] = texts[utt]
                items.append((sdir / "sentences" / "wav" / dialog / f"{utt}.wav", rec))
    attach_audio(result, items, opts, root)
    result.check_count("sessions", len(sessions), EXPECTED_SESSIONS)
    result.check_count("dialogues", dialogues, EXPECTED_DIALOGUES)
    result.check_count("utterances", len(result.records), EXPECTED_UTTERANCES)
    for lm, expected in zip(result.label_maps, (EXPECTED_4CLASS, EXPECTED_6CLASS)):
        n = sum(1 for r in result.records if lm.convert(r["emotion_raw"]) is not None)
        result.check_count(f"{lm.name} utterances", n, expected)
    return result

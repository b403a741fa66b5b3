"""MSP-IMPROV importer (UTD MSP lab; 6 dyadic sessions, 12 actors, 8,438 speaking turns).

Expected layout (the release folder; audio under ``Audio/`` or directly under the root)::

    MSP-IMPROV/
      Evalution.txt                           consensus labels (the release spells it that way)
      Audio/session1/S01A/S/MSP-IMPROV-S01A-F01-S-FM01.wav
            session<N>/<sentence+target emotion>/<R|S|T|P>/MSP-IMPROV-<S..>-<speaker>-<type>-<pair+turn>.wav

Each label block of Evalution.txt starts with the consensus line, e.g.
``UTD-IMPROV-S01A-F01-S-FM01.avi; N; A:3.000000; V:3.500000; D:3.000000; N:3.000000;`` (category
A/H/S/N, then arousal, valence, dominance and naturalness, 1-5); the per-evaluator lines below it are
ignored. The clip name's UTD prefix is the wav's MSP prefix.

Fields: ``session`` "session1".."session6" (from the speaker number), ``speaker`` "msp-improv-F01"
(F01..F06, M01..M06), ``gender``, ``emotion`` (angry/happy/sad/neutral; "O" -> other, "X" -> none),
``emotion_raw``, ``valence``/``arousal``/``dominance``, ``naturalness``, ``scenario`` (e.g. "S01A":
sentence 01 elicited with target emotion A) and ``recording`` (the R/S/T/P type letter of the name:
R = read target sentence, S = target sentence inside the improvisation, T = other improvised turns,
P = natural interaction between takes, after Busso et al. 2017).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from emotk.data.labels import LabelMap
from emotk.data.prepare.base import PrepareOptions, PrepareResult, attach_audio
from emotk.errors import DataError

DATASET = "msp-improv"
DESCRIPTION = "MSP-IMPROV (12 actors, 6 sessions, 8,438 turns; 4 emotions + valence/arousal/dominance)"
LAYOUT = """MSP-IMPROV/
  Evalution.txt        (UTD-IMPROV-S01A-F01-S-FM01.avi; N; A:3.0; V:3.5; D:3.0; N:3.0;)
  Audio/session<N>/<S01A>/<R|S|T|P>/MSP-IMPROV-S01A-F01-S-FM01.wav"""
OPTIONS: dict[str, str] = {"labels": "path of the consensus label file (default: Evalution.txt in the root)"}

EXPECTED_UTTERANCES = 8438
EXPECTED_SPEAKERS = 12
CANONICAL: dict[str, str | None] = {"A": "angry", "H": "happy", "S": "sad", "N": "neutral", "O": "other", "X": None}
LABEL_NAMES = ("Evalution.txt", "Evaluation.txt")
_NAME_RE = re.compile(
    r"^(?:MSP|UTD)-IMPROV-(?P<scenario>S\d{2}[A-Z])-(?P<spk>[FM]\d{2})-(?P<type>[A-Z])-(?P<turn>[A-Z0-9]+)$"
)
_VALUE_RE = re.compile(r"^\s*([AVDN])\s*:\s*([-+]?\d+(?:\.\d*)?)\s*$")


def label_maps() -> list[LabelMap]:
    """The 4-class categorical map (codes and canonical names; O/X/other dropped)."""
    mapping: dict[str, str | None] = {"A": "angry", "H": "happy", "S": "sad", "N": "neutral"}
    mapping.update({"O": None, "X": None, "other": None})
    return [LabelMap(DATASET, ["angry", "happy", "neutral", "sad"], mapping, DATASET)]


def find_root(root: Path) -> tuple[Path, Path]:
    """(corpus root, audio folder holding session1..6); DataError with the layout otherwise."""
    root = Path(root)
    cands = [root] + (sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])
    for cand in cands:
        for audio in (cand / "Audio", cand):
            if any((audio / f"session{i}").is_dir() for i in range(1, 7)):
                return cand, audio
    raise DataError(
        f"{root}: not an MSP-IMPROV folder (no session1..session6); expected MSP-IMPROV/{{Evalution.txt, "
        "Audio/session<N>/<S01A>/<R|S|T|P>/MSP-IMPROV-S01A-F01-S-FM01.wav}"
    )


def find_labels(root: Path, explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise DataError(f"{path}: MSP-IMPROV label file not found")
        return path
    for name in LABEL_NAMES:
        for cand in (root / name, *sorted(root.glob(f"*/{name}"))):
            if cand.is_file():
                return cand
    raise DataError(f"{root}: Evalution.txt (the consensus label file) not found; pass --option labels=FILE")


def parse_name(name: str) -> dict[str, str] | None:
    """'MSP-IMPROV-S01A-F01-S-FM01' -> {scenario, spk, type, turn}; None if it does not fit the scheme."""
    m = _NAME_RE.match(name)
    return m.groupdict() if m else None


def read_evaluation(path: Path) -> list[dict[str, Any]]:
    """Consensus lines of Evalution.txt -> [{name (MSP-...), emotion_raw, arousal, valence, dominance, naturalness}]."""
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        fields = [f.strip() for f in line.strip().split(";")]
        if len(fields) < 2 or not re.match(r"^(?:UTD|MSP)-IMPROV-", fields[0]):
            continue
        clip = fields[0].rsplit(".", 1)[0] if fields[0].lower().endswith((".avi", ".wav")) else fields[0]
        name = "MSP" + clip[3:]
        if parse_name(name) is None:
            raise DataError(f"{path}:{lineno}: unexpected clip name '{fields[0]}'")
        entry: dict[str, Any] = {"name": name, "emotion_raw": fields[1], "line": lineno}
        for f in fields[2:]:
            if not f:
                continue
            m = _VALUE_RE.match(f)
            if not m:
                raise DataError(f"{path}:{lineno}: cannot parse value {f!r} (expected e.g. 'A:3.0')")
            key = {"A": "arousal", "V": "valence", "D": "dominance", "N": "naturalness"}[m[1]]
            entry[key] = float(m[2])
        out.append(entry)
    return out


def prepare(root: Path, opts: PrepareOptions) -> PrepareResult:
    """Scan an MSP-IMPROV release; one record per consensus-labelled turn, with the msp-improv label map."""
    root, audio_root = find_root(Path(root))
    labels_file = find_labels(root, opts.extra.get("labels"))
    entries = read_evaluation(labels_file)
    if not entries:
        raise DataError(f"{labels_file}: no consensus label lines found")
    result = PrepareResult(dataset=DATASET, records=[], label_maps=label_maps())
    seen: dict[str, int] = {}
    unknown: dict[str, int] = {}
    items: list[tuple[Path, dict[str, Any]]] = []
    for e in sorted(entries, key=lambda x: x["name"]):
        name = e["name"]
        if name in seen:
            raise DataError(f"{labels_file}:{e['line']}: {name} is labelled twice (first on line {seen[name]})")
        seen[name] = e["line"]
        parts = parse_name(name)
        assert parts is not None  # checked in read_evaluation
        spk = parts["spk"]
        session = f"session{int(spk[1:])}"
        raw = e["emotion_raw"]
        rec: dict[str, Any] = {
            "id": f"{DATASET}-{name}", "dataset": DATASET, "speaker": f"{DATASET}-{spk}", "gender": spk[0],
            "session": session, "language": "en", "emotion_raw": raw,
            "scenario": parts["scenario"], "recording": parts["type"],
        }
        if raw in CANONICAL:
            if CANONICAL[raw] is not None:
                rec["emotion"] = CANONICAL[raw]
        else:
            unknown[raw] = unknown.get(raw, 0) + 1
        for key in ("valence", "arousal", "dominance", "naturalness"):
            if key in e:
                rec[key] = e[key]
        items.append((audio_root / session / parts["scenario"] / parts["type"] / f"{name}.wav", rec))
    for code, n in sorted(unknown.items()):
        result.warn(f"{n} turn(s) with unknown category '{code}' keep emotion_raw only")
    attach_audio(result, items, opts, root)
    result.check_count("utterances", len(result.records), EXPECTED_UTTERANCES)
    result.check_count("speakers", len({r["speaker"] for r in result.records}), EXPECTED_SPEAKERS)
    return result

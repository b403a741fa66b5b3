"""Rebuild the committed emotion-style-transfer pair files under data_manifests/<dataset>/est/ (byte-identical).

Usage (from the repository root)::

    python data_manifests/make_est_pairs.py            # rewrite the committed files of every corpus found
    python data_manifests/make_est_pairs.py --check    # exit 1 if a committed file differs from what this builds
    python data_manifests/make_est_pairs.py --out DIR  # write the tree under DIR instead

Corpora (pair rules and file format: emotk/eval/pairs.py):

* ``ravdess``: the four parallel settings SSST/SSDT/DSST/DSDT from ``../shared/data/ravdess/manifest.jsonl``
  (next to the repository; ``--ravdess FILE`` to point elsewhere) restricted to the held-out actors
  ravdess-21..24: neutral sources, the 7 other emotions as references, text = the statement, 2 texts per actor,
  takes = normal intensity first, then the lowest id (repetition 1); and the any-to-any A2A pairs of the
  thesis's 4x4 emotion matrices over neutral/angry/happy/sad. Skipped, without error, when the manifest is absent.
* ``esd``: the four parallel settings of the thesis (1,200 / 1,160 / 10,800 / 10,440 pairs) built from ESD's
  fixed naming alone, no audio needed: English speakers 0011-0020, files ``<spk>_<nnnnnn>`` numbered in
  350-utterance emotion blocks, test split = block positions 21-50 (emotk/data/prepare/esd.py). ESD is
  parallel by block position (``0011_000001`` neutral and ``0011_000351`` angry read the same sentence, for every
  speaker), so texts are matched by ``esd_index``; the pair ``*_text`` fields therefore hold that index. The
  importer run on a copy of ESD gives the same ids (tests/test_est_pairs.py); build the same pairs from your
  manifest with ``PairOptions(text_field="esd_index")``. Also A2A over the 4 non-neutral emotions (the thesis's
  any-to-any 4x4: angry/happy/sad/surprise), 30 texts per speaker.

Each folder also gets ``index.json``: per file its sha256, pair count and build report.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run from a checkout without installing emotk
    sys.path.insert(0, str(HERE.parent))

from emotk.core.io import atomic_write_json  # noqa: E402
from emotk.data.manifest import Manifest  # noqa: E402
from emotk.data.prepare import esd  # noqa: E402
from emotk.eval.pairs import ANY_TO_ANY, PARALLEL, PairOptions, PairSet, build_pairs, write_pairs  # noqa: E402

SHARED_RAVDESS = HERE.parent.parent / "shared" / "data" / "ravdess" / "manifest.jsonl"
RAVDESS_HELD_OUT = tuple(f"ravdess-{i:02d}" for i in range(21, 25))
RAVDESS_OPTIONS = PairOptions(speakers=RAVDESS_HELD_OUT, sources_per_speaker=2, a2a_texts_per_speaker=2,
                              a2a_emotions=("neutral", "angry", "happy", "sad"))
ESD_OPTIONS = PairOptions(text_field="esd_index", a2a_emotions=("angry", "happy", "sad", "surprise"))
ESD_ENGLISH = tuple(f"{i:04d}" for i in range(11, 21))
CORPORA = ("ravdess", "esd")
DESCRIPTIONS = {
    "ravdess": ("RAVDESS speech, held-out actors ravdess-21..24: neutral sources x the 7 other emotions; text = "
                "statement (2 per actor); takes: intensity normal, then lowest id; A2A: neutral/angry/happy/sad "
                "any-to-any. Built from the emotk RAVDESS "
                "manifest (source_manifest_sha256 in each header)."),
    "esd": ("ESD English speakers 0011-0020, test split (block positions 21-50), neutral sources x angry/happy/sad/"
            "surprise (A2A: any-to-any over angry/happy/sad/surprise); texts matched by esd_index "
            "(ESD is parallel by block position). Built from ESD's file "
            "naming rule, not from a copy of the corpus: the header's manifest hashes are those of that "
            "generated id list (ids, speakers, emotions, esd_index, split, layout-relative paths)."),
}


def esd_layout_manifest(speakers: tuple[str, ...] = ESD_ENGLISH) -> Manifest:
    """Every record ESD's naming implies (ids, speaker, emotion, esd_index, split like the importer; no audio)."""
    folders = {emotion: folder for folder, emotion in esd.EMOTION_FOLDERS.items()}
    records = []
    for spk in speakers:
        for block, emotion in enumerate(esd.BLOCK_ORDER):
            for index in range(1, esd.BLOCK + 1):
                stem = f"{spk}_{block * esd.BLOCK + index:06d}"
                records.append({"id": f"{esd.DATASET}-{stem}", "path": f"{spk}/{folders[emotion]}/{stem}.wav",
                                "dataset": esd.DATASET, "speaker": f"{esd.DATASET}-{spk}", "emotion": emotion,
                                "esd_index": index, "split": esd.split_of(index)})
    return Manifest.from_records(records)


def build_corpus(name: str, ravdess: Path = SHARED_RAVDESS) -> dict[str, PairSet] | None:
    """{setting: PairSet} of one corpus; None when its input is not available here."""
    if name == "ravdess":
        if not Path(ravdess).is_file():
            return None
        manifest, options = Manifest.load(ravdess), RAVDESS_OPTIONS
    elif name == "esd":
        manifest, options = esd_layout_manifest(), ESD_OPTIONS
    else:
        raise ValueError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    return {setting: build_pairs(setting, manifest, options=options) for setting in (*PARALLEL, ANY_TO_ANY)}


def write_corpus(root: Path, name: str, pairsets: dict[str, PairSet]) -> list[Path]:
    """Write ``root/<name>/est/<SETTING>.jsonl`` + ``index.json``; returns the written paths."""
    folder = Path(root) / name / "est"
    files: dict[str, Any] = {}
    paths = []
    for setting, pairset in pairsets.items():
        info = write_pairs(pairset, folder / f"{setting}.jsonl")
        paths.append(Path(info["path"]))
        files[f"{setting}.jsonl"] = {"sha256": info["sha256"], "count": info["count"], "report": pairset.report}
    index = folder / "index.json"
    atomic_write_json(index, {"dataset": name, "description": DESCRIPTIONS[name], "files": files})
    return [*paths, index]


def write_all(root: Path, ravdess: Path = SHARED_RAVDESS, corpora: tuple[str, ...] = CORPORA
              ) -> tuple[list[Path], list[str]]:
    """Write every corpus of ``corpora`` that can be built; returns (written paths, names of skipped corpora)."""
    written, skipped = [], []
    for name in corpora:
        pairsets = build_corpus(name, ravdess)
        if pairsets is None:
            skipped.append(name)
            continue
        written.extend(write_corpus(root, name, pairsets))
    return written, skipped


def check(root: Path, ravdess: Path = SHARED_RAVDESS, corpora: tuple[str, ...] = CORPORA
          ) -> tuple[list[str], list[str]]:
    """(committed files under ``root`` that differ from or lack a rebuild, skipped corpora)."""
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh_paths, skipped = write_all(Path(tmp), ravdess, corpora)
        for fresh in fresh_paths:
            committed = Path(root) / fresh.relative_to(tmp)
            if not committed.is_file() or committed.read_bytes() != fresh.read_bytes():
                bad.append(str(committed))
    return bad, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="root folder (default: data_manifests/)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file differs")
    parser.add_argument("--ravdess", type=Path, default=SHARED_RAVDESS, help="RAVDESS manifest.jsonl")
    parser.add_argument("--corpus", action="append", choices=CORPORA,
                        help="only this corpus (repeatable; default: all)")
    args = parser.parse_args(argv)
    corpora = tuple(args.corpus) if args.corpus else CORPORA
    if args.check:
        bad, skipped = check(args.out, args.ravdess, corpora)
        for name in skipped:
            print(f"skipped {name}: input not found", file=sys.stderr)
        for path in bad:
            print(f"differs: {path}", file=sys.stderr)
        return 1 if bad else 0
    written, skipped = write_all(args.out, args.ravdess, corpora)
    for name in skipped:
        print(f"skipped {name}: input not found", file=sys.stderr)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Source/reference pairs for the seven emotion-style-transfer settings of thesis Table 5.1 (METHODS.md §6).

Settings and thesis counts (ESD = 10 English speakers, test split = block positions 21-50, 5 emotions)::

    SSST 1,200   same speaker, same text      300 neutral sources x same speaker x same text x 4 emotions
    SSDT 1,160   same speaker, different text  10 sources (1 per speaker) x same speaker x 29 other texts x 4
    DSST 10,800  different speaker, same text 300 sources x 9 other speakers x same text x 4
    DSDT 10,440  different speaker and text    10 sources x 9 other speakers x 29 other texts x 4
    UTE  1,000   unseen emotion      10 ESD neutral sources x (50 CREMA-D fear + 50 disgust)
    USS    800   unseen speaker      100 TIMIT sources x 8 ESD references (2 per non-neutral emotion)
    USUE 2,000   unseen both         100 TIMIT sources x (10 CREMA-D fear + 10 disgust)

Record selection (both manifests, before any rule): ``split`` "auto" keeps only ``split == "test"`` records when
the manifest has any, else every record ("all"/None: every record; another name: exactly that split).
``speakers`` allow-lists source speakers (and reference speakers of the parallel settings, which use one corpus);
``reference_speakers`` allow-lists reference speakers explicitly. Records without a speaker or an emotion are
ignored (counted in the report).

Parallel settings (SSST, SSDT, DSST, DSDT; any corpus with speaker / emotion / text fields: ESD, RAVDESS, the demo
corpus). Sources are neutral (``neutral`` label), references carry the reference emotions (default: every
non-neutral emotion of the references, sorted). The *text key* of a record is its ``text_field`` value; strings
are compared after case-folding, dropping punctuation and collapsing spaces (``normalize_text``), so transcripts
that differ only in punctuation still match; other values (ESD ``esd_index``, demo ``sentence``) compare as JSON.

* Takes: several records with the same (speaker, emotion, text key) - RAVDESS has 2 repetitions x 2 intensities -
  are one *take*; the chosen record is the one whose ``take_preference`` field has the preferred value (default
  intensity "normal"), then the lowest id.
* Candidate texts of a speaker: the text keys of its neutral takes, ordered by the chosen take's id, first
  ``sources_per_speaker`` of them (ESD: ids ``..._000021``..``_000050`` in file order). The sources of SSST/DSST
  are all candidates; SSDT/DSDT use each speaker's first ``ssdt_/dsdt_sources_per_speaker`` candidates.
* SSST: source x (same speaker, same text, each emotion). SSDT: source x (same speaker, each other candidate text
  of that speaker, each emotion). DSST: source x (each other reference speaker, same text, each emotion). DSDT:
  source x (each other reference speaker, each of *that* speaker's candidate texts other than the source's, each
  emotion). Loop order = that nesting (speakers sorted, texts in candidate order, emotions in option order).
* A reference that does not exist is skipped and counted (``missing_references``); nothing is padded.

Unseen settings (UTE, USS, USUE) draw seeded samples. Sources: neutral records, without
``exclude_sentence_types`` (TIMIT ``sentence_type`` "SA": the two dialect sentences every speaker reads), so
TIMIT sources are SI/SX sentences of the test split. With ``one_source_per_speaker`` and at least as many
speakers as wanted sources, ``numpy.random.default_rng([seed, 0])`` chooses the speakers (``Generator.choice``
without replacement over the sorted speaker names) and then, speaker by speaker in sorted order, one of its
utterances (over its sorted ids); otherwise the same generator chooses utterances over all sorted ids.
References: for each reference emotion in option order, ``default_rng([seed, 1])`` chooses the wanted number
over the sorted ids of that emotion's records (CREMA-D: any intensity; its labels are "fear" and "disgust").
Chosen items are listed sorted by id; when fewer exist than wanted, all are taken and the report says so.
Pair order: source (sorted id) x emotion (option order) x reference (sorted id).

Any-to-any (``A2A``, the thesis's 4x4 emotion matrices; no thesis count): one parallel corpus, same speaker and
same text, every ordered pair of different emotions among ``a2a_emotions`` (default: every emotion of the corpus,
sorted). For each source speaker, the first ``a2a_texts_per_speaker`` candidate texts (as above) are used; for
each such text and source emotion a, the take of (speaker, a, text) is the source and the take of (speaker, b,
text) the reference, for every b != a. Loop order: speaker, text, source emotion, reference emotion.

Pair ids are ``<SETTING>-<nnnnnn>`` (1-based, build order). Each :class:`PairSet` carries a ``report`` with the
count, the thesis count, ``complete`` (count == thesis count and nothing missing) and, when not complete, ``why``.

Pair files (:func:`write_pairs`): JSONL, line 1 a header ``{"format": "emotk.est_pairs", "version": 1,
"setting", "count", "options", "source_manifest_sha256", "reference_manifest_sha256", "report"}``, then one pair
a line; every line key-sorted compact JSON ending in "\\n", so rebuilding gives byte-identical files.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from emotk.core.io import atomic_write_bytes, canonical_json, sha256_bytes
from emotk.core.names import safe_name
from emotk.data.manifest import Manifest, iter_jsonl
from emotk.errors import DataError, UsageError

SETTINGS = ("SSST", "SSDT", "DSST", "DSDT", "UTE", "USS", "USUE", "A2A")
PARALLEL = ("SSST", "SSDT", "DSST", "DSDT")
UNSEEN = ("UTE", "USS", "USUE")
ANY_TO_ANY = "A2A"
# A2A has no count in the thesis (its any-to-any matrices are figures): None
THESIS_COUNTS = {"SSST": 1200, "SSDT": 1160, "DSST": 10800, "DSDT": 10440, "UTE": 1000, "USS": 800, "USUE": 2000,
                 "A2A": None}
# Corpora of the thesis per setting: (sources, references).
THESIS_CORPORA = {"SSST": ("ESD", "ESD"), "SSDT": ("ESD", "ESD"), "DSST": ("ESD", "ESD"), "DSDT": ("ESD", "ESD"),
                  "UTE": ("ESD", "CREMA-D"), "USS": ("TIMIT", "ESD"), "USUE": ("TIMIT", "CREMA-D"),
                  "A2A": ("ESD", "ESD")}
# ESD English test split: 10 speakers x 30 texts x 4 non-neutral emotions.
THESIS_SHAPE = {"speakers": 10, "texts": 30, "emotions": 4}
UNSEEN_EMOTIONS = ("fear", "disgust")  # CREMA-D label names (emotk.data.prepare.crema_d.EMOTIONS)
FORMAT = "emotk.est_pairs"
VERSION = 1
PAIR_KEYS = ("id", "setting", "source", "reference", "source_speaker", "reference_speaker", "source_emotion",
             "reference_emotion", "source_text", "reference_text", "source_dataset", "reference_dataset")
HEADER_KEYS = ("format", "version", "setting", "count", "options", "source_manifest_sha256",
               "reference_manifest_sha256", "report")
_PUNCT = re.compile(r"[^\w\s]")
_MAX_LISTED = 5  # speakers named one by one in a report reason before "and N more"


@dataclass
class PairOptions:
    """How pairs are chosen (see the module docstring for every rule); recorded in each pair file's header."""

    text_field: str = "text"
    neutral: str = "neutral"
    # None: every non-neutral emotion of the references (parallel settings, USS); UTE/USUE: fear, disgust
    reference_emotions: tuple[str, ...] | None = None
    sources_per_speaker: int = 30
    ssdt_sources_per_speaker: int = 1
    dsdt_sources_per_speaker: int = 1
    split: str | None = "auto"
    seed: int = 0
    ute_sources: int = 10
    ute_references_per_emotion: int = 50
    uss_sources: int = 100
    uss_references_per_emotion: int = 2
    usue_sources: int = 100
    usue_references_per_emotion: int = 10
    speakers: tuple[str, ...] | None = None
    reference_speakers: tuple[str, ...] | None = None
    take_preference: tuple[str, str] | None = ("intensity", "normal")
    normalize_text: bool = True
    exclude_sentence_types: tuple[str, ...] = ("SA",)
    one_source_per_speaker: bool = True
    a2a_emotions: tuple[str, ...] | None = None  # None: every emotion of the corpus
    a2a_texts_per_speaker: int = 30

    def __post_init__(self) -> None:
        for name in ("reference_emotions", "speakers", "reference_speakers", "take_preference",
                     "exclude_sentence_types", "a2a_emotions"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise UsageError(f"PairOptions.{name}: expected a list of strings, got the string {value!r}")
            if value is not None:
                setattr(self, name, tuple(str(v) for v in value))
        if self.take_preference is not None and len(self.take_preference) != 2:
            raise UsageError(f"PairOptions.take_preference: expected (field, value), got {self.take_preference!r}")
        for name in ("sources_per_speaker", "ssdt_sources_per_speaker", "dsdt_sources_per_speaker", "ute_sources",
                     "ute_references_per_emotion", "uss_sources", "uss_references_per_emotion", "usue_sources",
                     "usue_references_per_emotion", "a2a_texts_per_speaker"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"PairOptions.{name}: expected a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UsageError(f"PairOptions.seed: expected a non-negative integer, got {self.seed!r}")
        if not self.text_field or not self.neutral:
            raise UsageError("PairOptions.text_field and PairOptions.neutral must be non-empty")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (tuples become lists) - the ``options`` object of a pair-file header."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class PairSet:
    """The pairs of one setting: ``pairs`` (dicts with :data:`PAIR_KEYS`), ``report`` and provenance."""

    setting: str
    pairs: list[dict[str, Any]]
    report: dict[str, Any]
    options: PairOptions = field(default_factory=PairOptions)
    source_manifest_sha256: str | None = None
    reference_manifest_sha256: str | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def header(self) -> dict[str, Any]:
        """The first line of the pair file."""
        return {"format": FORMAT, "version": VERSION, "setting": self.setting, "count": len(self.pairs),
                "options": self.options.to_dict(), "source_manifest_sha256": self.source_manifest_sha256,
                "reference_manifest_sha256": self.reference_manifest_sha256, "report": self.report}


# ---- record selection ----------------------------------------------------------------------------------------------
@dataclass
class _Pool:
    """Records of one role after split/speaker filtering."""

    records: list[dict[str, Any]]
    split: str | None
    ignored: int
    unknown_speakers: list[str]


def _as_manifest(obj: Manifest | Iterable[dict[str, Any]], role: str) -> Manifest:
    if isinstance(obj, Manifest):
        return obj
    if obj is None:
        raise UsageError(f"build_pairs: no {role} manifest given")
    return Manifest.from_records(obj)


def _pool(manifest: Manifest, opts: PairOptions, speakers: tuple[str, ...] | None) -> _Pool:
    """Filter a manifest by split and speaker allow-list; records without speaker/emotion are counted as ignored."""
    where = str(manifest.path) if manifest.path else "manifest"
    for i, rec in enumerate(manifest.records):
        if not isinstance(rec, dict) or not isinstance(rec.get("id"), str) or not rec["id"]:
            raise DataError(f"{where}:{manifest.lineno(i)}: key 'id': every record needs a non-empty string id")
    records = list(manifest.records)
    split = opts.split
    if split == "auto":
        split = "test" if any(r.get("split") == "test" for r in records) else None
    elif split == "all":
        split = None
    if split is not None:
        records = [r for r in records if r.get("split") == split]
    unknown: list[str] = []
    if speakers is not None:
        present = {r.get("speaker") for r in records}
        unknown = sorted(s for s in speakers if s not in present)
        allowed = set(speakers)
        records = [r for r in records if r.get("speaker") in allowed]
    usable = [r for r in records if isinstance(r.get("speaker"), str) and isinstance(r.get("emotion"), str)]
    return _Pool(sorted(usable, key=lambda r: r["id"]), split, len(records) - len(usable), unknown)


def text_key(value: Any, normalize: bool = True) -> str | None:
    """A record's ``text_field`` value -> the key texts are matched by (None when absent/empty).

    Strings: case-folded, punctuation dropped, spaces collapsed (when ``normalize``); other values: their JSON.
    """
    if value is None:
        return None
    if isinstance(value, str):
        key = " ".join(_PUNCT.sub(" ", value.casefold()).split()) if normalize else value.strip()
        return key or None
    return canonical_json(value)


def _take_rank(rec: dict[str, Any], preference: tuple[str, str] | None) -> tuple[int, str]:
    preferred = preference is not None and str(rec.get(preference[0])) == preference[1]
    return (0 if preferred else 1, rec["id"])


def _takes(records: list[dict[str, Any]], opts: PairOptions) -> tuple[dict[tuple[str, str, str], dict], int, int]:
    """{(speaker, emotion, text key): chosen record}, number of records without a text key, takes collapsed."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    no_text = 0
    for rec in records:
        key = text_key(rec.get(opts.text_field), opts.normalize_text)
        if key is None:
            no_text += 1
            continue
        groups.setdefault((rec["speaker"], rec["emotion"], key), []).append(rec)
    chosen = {k: min(v, key=lambda r: _take_rank(r, opts.take_preference)) for k, v in groups.items()}
    return chosen, no_text, sum(len(v) - 1 for v in groups.values())


def _candidates(takes: dict[tuple[str, str, str], dict], neutral: str) -> dict[str, list[tuple[str, dict]]]:
    """speaker -> [(text key, chosen neutral record)] ordered by record id: all of them (the caller truncates)."""
    out: dict[str, list[tuple[str, dict]]] = {}
    for (speaker, emotion, key), rec in takes.items():
        if emotion == neutral:
            out.setdefault(speaker, []).append((key, rec))
    return {s: sorted(v, key=lambda kr: kr[1]["id"]) for s, v in sorted(out.items())}


def _pair(setting: str, src: dict[str, Any], ref: dict[str, Any], text_field: str) -> dict[str, Any]:
    return {"setting": setting, "source": src["id"], "reference": ref["id"],
            "source_speaker": src.get("speaker"), "reference_speaker": ref.get("speaker"),
            "source_emotion": src.get("emotion"), "reference_emotion": ref.get("emotion"),
            "source_text": src.get(text_field), "reference_text": ref.get(text_field),
            "source_dataset": src.get("dataset"), "reference_dataset": ref.get("dataset")}


def _list_speakers(items: list[str]) -> str:
    head = ", ".join(items[:_MAX_LISTED])
    return head + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def _span(values: list[int]) -> str:
    return str(values[0]) if values[0] == values[-1] else f"{values[0]}-{values[-1]}"


def _split_word(split: str | None) -> str:
    return f" {split}" if split else ""


# ---- the parallel settings -----------------------------------------------------------------------------------------
def _parallel(setting: str, src_pool: _Pool, ref_pool: _Pool, same: bool, opts: PairOptions
              ) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    src_takes, src_no_text, src_dups = _takes(src_pool.records, opts)
    ref_takes, ref_no_text, ref_dups = (src_takes, src_no_text, src_dups) if same else _takes(ref_pool.records, opts)
    n = opts.sources_per_speaker
    all_cands = _candidates(src_takes, opts.neutral)
    cands = {s: v[:n] for s, v in all_cands.items()}
    other_cands = dict(cands)  # the candidate texts of reference speakers (for "other text" settings)
    if not same:
        for s, v in _candidates(ref_takes, opts.neutral).items():
            other_cands.setdefault(s, v[:n])
    if opts.reference_emotions is not None:
        emotions = list(opts.reference_emotions)
    else:
        emotions = sorted({e for (_, e, _) in ref_takes if e != opts.neutral})
    ref_speakers = sorted({s for (s, e, _) in ref_takes if e in emotions})
    src_speakers = sorted(cands)

    per_source = {"SSST": n, "DSST": n, "SSDT": opts.ssdt_sources_per_speaker,
                  "DSDT": opts.dsdt_sources_per_speaker}[setting]
    pairs: list[dict[str, Any]] = []
    missing: list[tuple[str, str, Any]] = []
    used_sources: set[str] = set()

    def add(src: dict, speaker: str, key: str, emotion: str, shown_text: Any) -> None:
        ref = ref_takes.get((speaker, emotion, key))
        if ref is None:
            missing.append((speaker, emotion, shown_text))
            return
        used_sources.add(src["id"])
        pairs.append(_pair(setting, src, ref, opts.text_field))

    no_cand_refs: set[str] = set()
    for s in src_speakers:
        for key, src in cands[s][:per_source]:
            if setting == "SSST":
                for e in emotions:
                    add(src, s, key, e, src.get(opts.text_field))
            elif setting == "SSDT":
                for okey, orec in cands[s]:
                    if okey != key:
                        for e in emotions:
                            add(src, s, okey, e, orec.get(opts.text_field))
            elif setting == "DSST":
                for r in ref_speakers:
                    if r != s:
                        for e in emotions:
                            add(src, r, key, e, src.get(opts.text_field))
            else:  # DSDT
                for r in ref_speakers:
                    if r == s:
                        continue
                    if r not in other_cands:
                        no_cand_refs.add(r)
                    for okey, orec in other_cands.get(r, []):
                        if okey != key:
                            for e in emotions:
                                add(src, r, okey, e, orec.get(opts.text_field))

    reasons: list[str] = []
    split = _split_word(src_pool.split)
    short = [f"{s} has {len(cands[s])} of {n}" for s in src_speakers if len(cands[s]) < n]
    if short:
        reasons.append(f"speaker {_list_speakers(short)} neutral{split} texts")
    if setting in ("SSDT", "DSDT"):
        k = per_source
        few = [s for s in src_speakers if len(cands[s]) < k]
        if few:
            reasons.append(f"speaker {_list_speakers(few)} has fewer than {k} neutral{split} source texts")
    if no_cand_refs:
        reasons.append(f"reference speaker {_list_speakers(sorted(no_cand_refs))} has no neutral{split} texts, "
                       "so its other texts are unknown")
    if missing:
        s0, e0, t0 = missing[0]
        reasons.append(f"{len(missing)} references missing (first: speaker {s0}, emotion {e0}, "
                       f"{opts.text_field} {t0!r})")
    unknown = sorted(set(src_pool.unknown_speakers) | set(ref_pool.unknown_speakers))
    if unknown:
        reasons.append(f"allow-listed speaker {_list_speakers(unknown)} not in the manifest")
    if opts.reference_emotions is not None:
        absent = [e for e in emotions if not any(k[1] == e for k in ref_takes)]
        if absent:
            reasons.append(f"reference emotion {', '.join(absent)} not in the references")

    texts = sorted(len(v) for v in cands.values()) or [0]
    report = {
        "source_speakers": len(src_speakers),
        "reference_speakers": len(ref_speakers),
        "texts_per_speaker": texts[0],  # the smallest number of candidate texts of a source speaker
        "reference_emotions": emotions,
        "sources": len(used_sources),
        "missing_references": len(missing),
        "ignored_records": src_pool.ignored + src_no_text + (0 if same else ref_pool.ignored + ref_no_text),
        "duplicate_takes": src_dups + (0 if same else ref_dups),
    }
    if len(pairs) != THESIS_COUNTS[setting] or reasons:
        shape = THESIS_SHAPE
        reasons.append(
            f"corpus shape: {len(src_speakers)} speakers, {_span(texts)} neutral{split} texts per "
            f"speaker, {len(emotions)} reference emotions (thesis: ESD {shape['speakers']} speakers, "
            f"{shape['texts']} test texts, {shape['emotions']} emotions)")
    return pairs, report, reasons


# ---- any-to-any --------------------------------------------------------------------------------------------------
def _any_to_any(pool: _Pool, opts: PairOptions) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    takes, no_text, dups = _takes(pool.records, opts)
    n = opts.a2a_texts_per_speaker
    cands = {s: v[:n] for s, v in _candidates(takes, opts.neutral).items()}
    emotions = list(opts.a2a_emotions) if opts.a2a_emotions is not None else sorted({e for (_, e, _) in takes})
    pairs: list[dict[str, Any]] = []
    missing = 0
    sources: set[str] = set()
    for s in sorted(cands):
        for key, _ in cands[s]:
            for a in emotions:
                src = takes.get((s, a, key))
                if src is None:
                    missing += len(emotions) - 1
                    continue
                for b in emotions:
                    if b == a:
                        continue
                    ref = takes.get((s, b, key))
                    if ref is None:
                        missing += 1
                        continue
                    sources.add(src["id"])
                    pairs.append(_pair(ANY_TO_ANY, src, ref, opts.text_field))
    reasons: list[str] = []
    if len(emotions) < 2:
        reasons.append(f"any-to-any needs at least 2 emotions, the corpus has {len(emotions)}")
    if missing:
        reasons.append(f"{missing} (source, reference) takes missing")
    absent = [e for e in emotions if not any(k[1] == e for k in takes)]
    if absent:
        reasons.append(f"emotion {', '.join(absent)} not in the corpus")
    if pool.unknown_speakers:
        reasons.append(f"allow-listed speaker {_list_speakers(pool.unknown_speakers)} not in the manifest")
    texts = sorted(len(v) for v in cands.values()) or [0]
    report = {"source_speakers": len(cands), "reference_speakers": len(cands), "texts_per_speaker": texts[0],
              "reference_emotions": emotions, "sources": len(sources), "missing_references": missing,
              "ignored_records": pool.ignored + no_text, "duplicate_takes": dups}
    return pairs, report, reasons


# ---- the unseen settings -------------------------------------------------------------------------------------------
def _choose(items: list[str], n: int, rng: Any) -> list[str]:
    """``n`` of the sorted ``items`` without replacement (all when there are not more than ``n``), sorted."""
    if len(items) <= n:
        return list(items)
    return sorted(items[i] for i in rng.choice(len(items), size=n, replace=False))


def _unseen(setting: str, src_pool: _Pool, ref_pool: _Pool, opts: PairOptions
            ) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    import numpy as np

    n_src = {"UTE": opts.ute_sources, "USS": opts.uss_sources, "USUE": opts.usue_sources}[setting]
    n_ref = {"UTE": opts.ute_references_per_emotion, "USS": opts.uss_references_per_emotion,
             "USUE": opts.usue_references_per_emotion}[setting]
    excluded = set(opts.exclude_sentence_types)
    candidates = [r for r in src_pool.records
                  if r["emotion"] == opts.neutral and str(r.get("sentence_type", "")) not in excluded]
    by_id = {r["id"]: r for r in candidates}
    rng = np.random.default_rng([opts.seed, 0])
    speakers = sorted({r["speaker"] for r in candidates})
    if opts.one_source_per_speaker and len(speakers) >= n_src:
        chosen = []
        for spk in _choose(speakers, n_src, rng):
            ids = [r["id"] for r in candidates if r["speaker"] == spk]
            chosen.append(ids[int(rng.integers(len(ids)))])
        sources = [by_id[i] for i in sorted(chosen)]
    else:
        sources = [by_id[i] for i in _choose(sorted(by_id), n_src, rng)]

    if opts.reference_emotions is not None:
        emotions = list(opts.reference_emotions)
    elif setting == "USS":
        emotions = sorted({r["emotion"] for r in ref_pool.records if r["emotion"] != opts.neutral})
    else:
        emotions = list(UNSEEN_EMOTIONS)
    ref_rng = np.random.default_rng([opts.seed, 1])
    refs: dict[str, list[dict[str, Any]]] = {}
    ref_by_id = {r["id"]: r for r in ref_pool.records}
    for e in emotions:
        ids = sorted(r["id"] for r in ref_pool.records if r["emotion"] == e)
        refs[e] = [ref_by_id[i] for i in _choose(ids, n_ref, ref_rng)]

    pairs = [_pair(setting, src, ref, opts.text_field) for src in sources for e in emotions for ref in refs[e]]
    src_corpus, ref_corpus = THESIS_CORPORA[setting]
    reasons: list[str] = []
    if len(sources) < n_src:
        reasons.append(f"{len(sources)} of {n_src} neutral{_split_word(src_pool.split)} source utterances "
                       f"available ({src_corpus}-like sources)")
    short = [f"{len(refs[e])} of {n_ref} '{e}'" for e in emotions if len(refs[e]) < n_ref]
    if short:
        reasons.append(f"only {', '.join(short)} references available ({ref_corpus}-like references)")
    unknown = sorted(set(src_pool.unknown_speakers) | set(ref_pool.unknown_speakers))
    if unknown:
        reasons.append(f"allow-listed speaker {_list_speakers(unknown)} not in the manifest")
    if len(pairs) != THESIS_COUNTS[setting]:
        reasons.append(f"options/corpus give {n_src} sources x {len(emotions)} emotions x {n_ref} references "
                       f"(thesis: {THESIS_COUNTS[setting]} pairs)")
    report = {
        "source_speakers": len({r["speaker"] for r in sources}),
        "reference_speakers": len({r["speaker"] for e in emotions for r in refs[e]}),
        "reference_emotions": emotions,
        "sources": len(sources),
        "references": sum(len(v) for v in refs.values()),
        "missing_references": sum(max(0, n_ref - len(refs[e])) for e in emotions),
        "ignored_records": src_pool.ignored + ref_pool.ignored,
    }
    return pairs, report, reasons


# ---- public API ----------------------------------------------------------------------------------------------------
def build_pairs(setting: str, sources: Manifest | Iterable[dict[str, Any]],
                references: Manifest | Iterable[dict[str, Any]] | None = None,
                options: PairOptions | None = None) -> PairSet:
    """Pairs of one setting (rules in the module docstring).

    ``sources``/``references`` are Manifests (or record lists): parallel settings use one corpus (``references``
    defaults to ``sources``); UTE needs ESD-like sources + CREMA-D-like references, USS TIMIT-like + ESD-like,
    USUE TIMIT-like + CREMA-D-like. Returns a :class:`PairSet` whose ``report`` says how many pairs were built,
    the thesis count, whether it was reached (``complete``) and, if not, ``why``. Never pads.
    """
    name = str(setting).upper()
    if name not in SETTINGS:
        raise UsageError(f"unknown EST setting {setting!r}; expected one of {', '.join(SETTINGS)}")
    opts = options if options is not None else PairOptions()
    src_manifest = _as_manifest(sources, "sources")
    if references is None:
        if name not in PARALLEL and name != ANY_TO_ANY:
            src_corpus, ref_corpus = THESIS_CORPORA[name]
            raise UsageError(f"setting {name} needs a references manifest ({src_corpus} sources x {ref_corpus} "
                             "references)")
        ref_manifest, same = src_manifest, True
    else:
        ref_manifest = _as_manifest(references, "references")
        same = ref_manifest is src_manifest
    src_pool = _pool(src_manifest, opts, opts.speakers)
    ref_speakers = opts.reference_speakers
    if ref_speakers is None and (name in PARALLEL or name == ANY_TO_ANY):
        ref_speakers = opts.speakers
    if same and ref_speakers == opts.speakers:
        ref_pool = src_pool
    else:
        ref_pool = _pool(ref_manifest, opts, ref_speakers)
        same = False
    if name in PARALLEL:
        pairs, details, reasons = _parallel(name, src_pool, ref_pool, same, opts)
    elif name == ANY_TO_ANY:
        if not same:
            raise UsageError("setting A2A uses one parallel corpus: give no separate references manifest")
        pairs, details, reasons = _any_to_any(src_pool, opts)
    else:
        pairs, details, reasons = _unseen(name, src_pool, ref_pool, opts)
    pairs = [{"id": f"{name}-{i:06d}", **pair} for i, pair in enumerate(pairs, 1)]
    thesis = THESIS_COUNTS[name]
    complete = (thesis is None or len(pairs) == thesis) and not reasons
    report = {"setting": name, "pairs": len(pairs), "thesis_count": thesis, "complete": complete,
              "split": {"sources": src_pool.split, "references": ref_pool.split}, **details,
              "why": None if complete else "; ".join(reasons)}
    src_sha = src_manifest.sha256
    ref_sha = src_sha if ref_manifest is src_manifest else ref_manifest.sha256
    return PairSet(setting=name, pairs=pairs, report=report, options=opts,
                   source_manifest_sha256=src_sha, reference_manifest_sha256=ref_sha)


def pairs_text(pairset: PairSet) -> str:
    """The exact text of a pair file: header line + one key-sorted compact JSON pair per line, "\\n" endings."""
    lines = [canonical_json(pairset.header())]
    lines.extend(canonical_json(p) for p in pairset.pairs)
    return "\n".join(lines) + "\n"


def write_pairs(pairset: PairSet, path: str | os.PathLike) -> dict[str, Any]:
    """Write a pair file atomically (format in the module docstring); returns {"path", "sha256", "count"}."""
    data = pairs_text(pairset).encode("utf-8")
    atomic_write_bytes(path, data)
    return {"path": str(path), "sha256": sha256_bytes(data), "count": len(pairset.pairs)}


def read_pairs(path: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a pair file -> (header, pairs in file order).

    DataError (one line, ``file:line: key ...``) for a missing file, bad JSON, a wrong header, a missing key, an
    unknown or mismatched setting, a duplicate pair id, or a pair count that differs from the header's ``count``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pairs file not found: {path}")
    header: dict[str, Any] | None = None
    pairs: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for lineno, obj, err in iter_jsonl(path):
        if err is not None:
            raise DataError(f"{path}:{lineno}: {err}")
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        if header is None:
            header = _check_header(path, lineno, obj)
            continue
        for key in PAIR_KEYS:
            if key not in obj:
                raise DataError(f"{path}:{lineno}: key '{key}' is missing")
        for key in ("id", "source", "reference"):
            if not isinstance(obj[key], str) or not obj[key]:
                raise DataError(f"{path}:{lineno}: key '{key}' must be a non-empty string, got {obj[key]!r}")
        safe_name(obj["id"], "key 'id':", f"{path}:{lineno}")  # <id>.wav, <id>.json: one path component
        if obj["setting"] != header["setting"]:
            raise DataError(f"{path}:{lineno}: key 'setting': {obj['setting']!r} differs from the header's "
                            f"{header['setting']!r}")
        if obj["id"] in seen:
            raise DataError(f"{path}:{lineno}: key 'id': duplicate pair id '{obj['id']}' (first on line "
                            f"{seen[obj['id']]})")
        seen[obj["id"]] = lineno
        pairs.append(obj)
    if header is None:
        raise DataError(f"{path}: empty pairs file (expected a {FORMAT} header line)")
    if header["count"] != len(pairs):
        raise DataError(f"{path}:1: key 'count': the header says {header['count']} pairs, the file holds "
                        f"{len(pairs)}")
    return header, pairs


def _check_header(path: Path, lineno: int, obj: dict[str, Any]) -> dict[str, Any]:
    if obj.get("format") != FORMAT:
        raise DataError(f"{path}:{lineno}: key 'format': expected {FORMAT!r} (an EST pair file header), "
                        f"got {obj.get('format')!r}")
    if obj.get("version") != VERSION:
        raise DataError(f"{path}:{lineno}: key 'version': unsupported pair-file version {obj.get('version')!r} "
                        f"(this emotk reads {VERSION})")
    for key in HEADER_KEYS:
        if key not in obj:
            raise DataError(f"{path}:{lineno}: key '{key}' is missing from the header")
    if obj["setting"] not in SETTINGS:
        raise DataError(f"{path}:{lineno}: key 'setting': unknown setting {obj['setting']!r} (expected one of "
                        f"{', '.join(SETTINGS)})")
    count = obj["count"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise DataError(f"{path}:{lineno}: key 'count': expected a non-negative integer, got {count!r}")
    return obj


def spread(items: Iterable[Any], n: int | None) -> list[Any]:
    """``n`` evenly spaced items (first and last included) in their order; all of them for None or n >= len,
    none for n <= 0. Used to cap pair lists (``--limit``) without favouring their start."""
    import numpy as np

    items = list(items)
    if n is None or n >= len(items):
        return items
    if n <= 0:
        return []
    idx = np.unique(np.rint(np.linspace(0, len(items) - 1, n)).astype(int))
    return [items[i] for i in idx]


def audio_index(manifests: Manifest | Iterable[Manifest]) -> dict[str, tuple[Manifest, dict[str, Any]]]:
    """id -> (manifest, record) over several manifests (e.g. ``--data`` and ``--references``). An id listed by
    more than one manifest must point at the same audio: otherwise DataError naming the id and both paths."""
    if isinstance(manifests, Manifest):
        manifests = [manifests]
    where: dict[str, tuple[Manifest, dict[str, Any]]] = {}
    for manifest in manifests:
        for rec in manifest.records:
            prior = where.setdefault(rec["id"], (manifest, rec))
            if prior[1] is not rec:
                a, b = prior[0].resolve_path(prior[1]), manifest.resolve_path(rec)
                if a != b:
                    raise DataError(f"{manifest.path or 'manifest'}: id '{rec['id']}' has two different audio paths "
                                    f"({a} and {b})")
    return where


def pairs_to_transfer_jsonl(pairs: Iterable[dict[str, Any]], manifests: Manifest | Iterable[Manifest],
                            path: str | os.PathLike) -> dict[str, Any]:
    """Write ``{"id", "src", "ref"}`` lines (absolute audio paths) for ``emotk transfer --pairs``.

    ``pairs``: pair dicts (from :func:`build_pairs` or :func:`read_pairs`); ``manifests``: the manifest(s) holding
    their source and reference ids (paths resolved with ``Manifest.resolve_path``). Returns {"path", "sha256",
    "count"}; DataError naming the pair id and key when an id is in no manifest.
    """
    where = audio_index(manifests)
    lines = []
    for pair in pairs:
        row = {"id": pair["id"]}
        for key, out in (("source", "src"), ("reference", "ref")):
            if pair[key] not in where:
                raise DataError(f"pair {pair['id']}: key '{key}': id '{pair[key]}' is in none of the manifests")
            manifest, rec = where[pair[key]]
            row[out] = os.path.abspath(manifest.resolve_path(rec))
        lines.append(canonical_json(row) + "\n")
    data = "".join(lines).encode("utf-8")
    atomic_write_bytes(path, data)
    return {"path": str(path), "sha256": sha256_bytes(data), "count": len(lines)}


def summary(pairset: PairSet) -> str:
    """One line for logs: ``SSST: 1200 pairs (thesis 1200, complete)`` or ``... (thesis N: why)``."""
    r = pairset.report
    tail = "complete" if r["complete"] else str(r["why"])
    thesis = "no thesis count" if r["thesis_count"] is None else f"thesis {r['thesis_count']}"
    return f"{pairset.setting}: {r['pairs']} pairs ({thesis}, {tail})"


__all__ = ["SETTINGS", "PARALLEL", "UNSEEN", "ANY_TO_ANY", "THESIS_COUNTS", "PairOptions", "PairSet", "build_pairs",
           "text_key", "pairs_text", "write_pairs", "read_pairs", "pairs_to_transfer_jsonl", "summary", "spread",
           "audio_index"]

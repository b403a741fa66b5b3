"""``emotk data label``'s core: run a labeller over a manifest, resumably, and write the labelled manifest.

Every finished item is recorded in a journal (:class:`emotk.core.journal.Journal`, kind ``label``) next to the
output, ``<out>.progress.jsonl`` (one shard: ``<out>.progress.shard-i-of-N.jsonl``), whose header holds the
labeller's identity, the transcript field, the hash of the ids and the shard: ``--resume`` continues it and never
asks twice for a finished item (items that got no answer are asked again). Answers are also kept in an on-disk
response cache keyed by ``sha256(model + prompt + text)`` shared between runs and shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Callable

from emotk.core.log import get_logger
from emotk.core.shard import Shard, select, shard_name
from emotk.data.label import ERROR_FIELD, LABEL_FIELD, RAW_FIELD, SENTIMENT_CLASSES
from emotk.data.label.backends import Answer, FatalLabelError, Labeller, OpenAICompatibleLabeller, normalize_answer
from emotk.errors import EmotkError, OutputExistsError, UsageError

log = get_logger("label")

JOURNAL_KIND = "label"
PROGRESS_STEM = ".progress"
DEFAULT_CACHE_NAME = ".emotk-llm-cache.jsonl"


# ---- the response cache --------------------------------------------------------------------------------------------
def cache_key(model: str, prompt: str, text: str) -> str:
    """sha256 hex of model + prompt + text (separated by a unit separator) — the response-cache key."""
    return hashlib.sha256("\x1f".join((model, prompt, text)).encode("utf-8")).hexdigest()


class ResponseCache:
    """Append-only JSONL cache ``{"key", "model", "answer"}``; a later line for the same key wins.

    Safe to share between runs and shards (each line is written with one append); unreadable lines (a
    crash in the middle of a write) are ignored.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.entries: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.path.is_file():
            with open(self.path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        obj = json.loads(line)
                        self.entries[str(obj["key"])] = str(obj["answer"])
                    except (ValueError, KeyError, TypeError):
                        continue

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def put(self, key: str, model: str, answer: str) -> None:
        with self._lock:
            self.entries[key] = answer
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"key": key, "model": model, "answer": answer}, ensure_ascii=False) + "\n")


# ---- labelling a manifest ------------------------------------------------------------------------------------------
def progress_path(out: str | os.PathLike, shard: Shard | None = None) -> Path:
    """The journal of output ``out``: ``<out>.progress.jsonl``, or ``<out>.progress.shard-i-of-N.jsonl`` for one
    shard (:func:`emotk.core.shard.shard_name`)."""
    out = Path(out)
    return out.with_name(shard_name(out.name + PROGRESS_STEM, shard))


def _record_text(rec: dict[str, Any], field: str, where: str) -> str:
    from emotk.features.text import record_text

    return record_text(rec, field, where)


def _portable_path(rec: dict[str, Any], base: Path, out_dir: Path) -> dict[str, Any]:
    """Keep a record's audio path valid when the output manifest lives in another folder than the input."""
    path = rec.get("path")
    if not isinstance(path, str) or path.startswith("${") or Path(path).is_absolute():
        return rec
    if base.resolve() == out_dir.resolve():
        return rec
    return {**rec, "path": str((base / path).resolve())}


def label_manifest(manifest: Any, out: str | os.PathLike, labeller: Labeller, field: str = "asr_text",
                   resume: bool = True, shard: Shard | None = None, overwrite: bool = False,
                   batch_size: int = 16, cache: bool = True, cache_path: str | os.PathLike | None = None,
                   max_consecutive_failures: int = 50,
                   on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Label every record's transcript and write the manifest with ``sentiment_llm`` added.

    Args:
        manifest: a :class:`~emotk.data.manifest.Manifest` or a manifest path.
        out: output manifest (JSONL). Every record of the (shard's) input is written, in input order, with
            ``sentiment_llm`` (negative | neutral | positive | null), ``sentiment_llm_raw`` (the answer as given)
            and, for items that got no answer, ``sentiment_llm_error``. Relative audio paths are made absolute
            when ``out`` lives in another folder.
        labeller: a :class:`Labeller`. field: ``asr_text`` (thesis), ``text`` or ``auto``.
        resume: continue the journal :func:`progress_path` (its finished entries are kept; items that failed
            are asked again); it must have been written with the same labeller, field, ids and shard. Without
            resume, an existing ``out`` or journal needs ``overwrite`` (which starts again).
        shard: ``(i, N)``: label only the ids at positions ``j % N == i`` of the sorted ids (None: all).
        batch_size: items per labeller call. cache / cache_path: the response cache (default
            ``<out folder>/.emotk-llm-cache.jsonl``) — answers for the same model, prompt and text are reused.
        max_consecutive_failures: stop (progress kept; rerun with resume) after this many items in a row got no
            answer — an endpoint that is down should not burn through a whole corpus.
        on_progress: called with the number of items finished after each batch.

    Returns a summary: counts per label, ``unparseable`` (answers naming no class), ``failed`` (no answer),
    ``empty_text``, ``resumed`` (taken from the journal), ``cache_hits``, ``requests``, hashes and paths.
    Raises DataError for records without the text field (before any request), :class:`FatalLabelError` for
    failures that would repeat for every item.
    """
    from emotk.core.io import sha256_json
    from emotk.core.journal import Journal
    from emotk.data.manifest import Manifest

    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    out = Path(out)
    where = str(m.path) if m.path else "manifest"
    if field not in ("asr_text", "text", "auto"):
        raise UsageError(f"--field must be asr_text, text or auto, got {field!r}")
    if out.exists() and not (resume or overwrite):
        raise OutputExistsError(f"{out} already exists; pass --resume to continue or --overwrite to replace it")
    if m.path is not None and out.resolve() == Path(m.path).resolve():
        raise UsageError(f"{out}: the output must not be the input manifest")
    wanted = set(select(sorted(m.ids), shard))
    selected = [(k, r) for k, r in enumerate(m.records) if r["id"] in wanted]
    texts: dict[str, str] = {}
    for k, rec in selected:
        texts[rec["id"]] = _record_text(rec, field, f"{where}:{m.lineno(k)}")

    identity = {"labeller": labeller.identity(), "field": field, "ids_sha256": sha256_json(sorted(texts)),
                "shard": f"{shard[0]}/{shard[1]}" if shard else None}
    prog = progress_path(out, shard)
    journal = Journal.open(prog, JOURNAL_KIND, identity, resume=resume and not overwrite, overwrite=overwrite)
    done: dict[str, dict[str, Any]] = {}
    for entry in journal.records:  # a later entry for the same id wins; failed items are asked again
        if "id" in entry and not entry.get("error") and str(entry["id"]) in texts:
            done[str(entry["id"])] = entry
    resumed = len(done)
    store = None
    if cache and labeller.cacheable:
        store = ResponseCache(cache_path or out.parent / DEFAULT_CACHE_NAME)

    todo = [rec["id"] for _k, rec in selected if rec["id"] not in done]
    stats = {"cache_hits": 0, "empty_text": 0}
    requests_before = labeller.requests
    consecutive = 0
    if todo:
        log.info("label: %d item(s) to label with %s %s (%d already done)", len(todo), labeller.kind,
                 labeller.model_id, resumed)
    with journal:
        for s in range(0, len(todo), max(1, batch_size)):
            batch = todo[s: s + max(1, batch_size)]
            entries: dict[str, dict[str, Any]] = {}
            ask: list[tuple[str, str]] = []
            for uid in batch:
                text = texts[uid]
                if not text.strip():
                    stats["empty_text"] += 1
                    entries[uid] = {"id": uid, "label": None, "raw": None, "note": "empty text"}
                    continue
                hit = store.get(cache_key(labeller.model_id, labeller.prompt, text)) if store else None
                if hit is not None:
                    stats["cache_hits"] += 1
                    entries[uid] = {"id": uid, "label": normalize_answer(hit), "raw": hit, "cached": True}
                else:
                    ask.append((uid, text))
            if ask:
                try:
                    answers = labeller.answer(ask)
                except FatalLabelError:
                    raise
                except Exception as e:  # a long run never dies on one bad batch; the items are retried on resume
                    log.warning("label: a batch of %d failed (%s: %s)", len(ask), type(e).__name__, e)
                    answers = [Answer(None, f"{type(e).__name__}: {e}") for _ in ask]
                if len(answers) != len(ask):
                    raise EmotkError(f"labeller {labeller.kind} returned {len(answers)} answers for {len(ask)} items")
                for (uid, text), ans in zip(ask, answers):
                    if ans.error is not None or ans.raw is None:
                        entries[uid] = {"id": uid, "label": None, "raw": None, "error": ans.error or "no answer"}
                        continue
                    entries[uid] = {"id": uid, "label": normalize_answer(ans.raw), "raw": ans.raw}
                    if store is not None:
                        store.put(cache_key(labeller.model_id, labeller.prompt, text), labeller.model_id, ans.raw)
            journal.extend(entries[uid] for uid in batch)  # the batch is finished: fsynced before going on
            for uid in batch:
                entry = entries[uid]
                done[uid] = entry
                consecutive = consecutive + 1 if entry.get("error") else 0
            if on_progress is not None:
                on_progress(len(batch))
            if max_consecutive_failures and consecutive >= max_consecutive_failures:
                last = next(e["error"] for e in reversed(list(entries.values())) if e.get("error"))
                raise EmotkError(f"label: {consecutive} items in a row got no answer (last: {last}); progress is "
                                 f"kept in {prog} — fix the cause and rerun with --resume")

    base = m.base_dir
    records, counts = [], {c: 0 for c in SENTIMENT_CLASSES}
    unparseable, failed = [], []
    for _k, rec in selected:
        entry = done[rec["id"]]
        new = _portable_path(dict(rec), base, out.parent)
        new[LABEL_FIELD] = entry.get("label")
        new[RAW_FIELD] = entry.get("raw")
        new.pop(ERROR_FIELD, None)
        if entry.get("error"):
            new[ERROR_FIELD] = entry["error"]
            failed.append(rec["id"])
        elif entry.get("label") in counts:
            counts[entry["label"]] += 1
        elif entry.get("raw") is not None:
            unparseable.append(rec["id"])
        records.append(new)
    out_sha = Manifest.from_records(records).save(out)
    summary = {
        "manifest": str(m.path) if m.path else None, "manifest_sha256": m.sha256,
        "output": str(out), "output_sha256": out_sha, "progress": str(prog),
        "cache": str(store.path) if store is not None else None,
        "labeller": labeller.identity(), "field": field, "shard": identity["shard"],
        "records": len(records), "labels": counts, "labelled": sum(counts.values()),
        "unparseable": len(unparseable), "failed": len(failed), "empty_text": sum(
            1 for _k, r in selected if done[r["id"]].get("note") == "empty text"),
        "resumed": resumed, "cache_hits": stats["cache_hits"], "requests": labeller.requests - requests_before,
        "unparseable_examples": [{"id": uid, "raw": done[uid].get("raw")} for uid in unparseable[:5]],
        "failed_ids": failed[:20],
    }
    if isinstance(labeller, OpenAICompatibleLabeller):
        summary["retries"] = labeller.retries
    if failed:
        log.warning("label: %d item(s) got no answer (listed in %s as %s); rerun with --resume to retry them",
                    len(failed), out, ERROR_FIELD)
    return summary

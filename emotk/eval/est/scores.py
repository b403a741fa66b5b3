"""The per-pair scores of an EST run: one journal per shard (:mod:`emotk.core.journal`, kind ``est-scores``)
named ``OUT/scores/scores[.shard-i-of-N].jsonl`` (:func:`emotk.core.shard.shard_name`), one record per scored
(system, noise, pair); and the aggregation of those records into the results table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from emotk.errors import UsageError
from emotk.eval.est.plan import planned_keys, score_key
from emotk.eval.pairs import ANY_TO_ANY

SCORE_FORMAT = "emotk.est_score"
SCORES_KIND = "est-scores"
SCORES_STEM = "scores"


def scores_path(out_dir: Path, shard: tuple[int, int] | None) -> Path:
    """``OUT/scores/scores.jsonl`` for the whole run, ``scores.shard-i-of-N.jsonl`` for one shard."""
    from emotk.core.shard import shard_name

    return Path(out_dir) / "scores" / shard_name(SCORES_STEM, shard)


def check_scores(out_dir: Path, shard: tuple[int, int] | None, resume: bool) -> None:
    """UsageError when this shard's scores journal exists and ``resume`` is not given."""
    path = scores_path(out_dir, shard)
    if path.exists() and not resume:
        raise UsageError(f"{path} exists: continue this shard with --resume (or start over with --overwrite)")


def open_scores(out_dir: Path, shard: tuple[int, int] | None, resume: bool) -> Any:
    """The scores journal of this shard, to append to (see :func:`check_scores`; when resumed, a line cut by a
    kill is cut off: its score is redone)."""
    from emotk.core.journal import Journal

    check_scores(out_dir, shard, resume)
    return Journal.open(scores_path(out_dir, shard), SCORES_KIND, {"format": SCORE_FORMAT}, resume=True)


def read_scores(out_dir: Path) -> dict[str, dict[str, Any]]:
    """{score key: record} of every shard's scores journal under ``out_dir/scores`` (a line cut by a kill is
    ignored; a later line for the same key wins)."""
    from emotk.core.journal import read_journal
    from emotk.core.shard import shard_files

    found: dict[str, dict[str, Any]] = {}
    for path in shard_files(Path(out_dir) / "scores", SCORES_STEM):
        _, records = read_journal(path, SCORES_KIND)
        for rec in records:
            if rec.get("format") == SCORE_FORMAT and "key" in rec:
                found[rec["key"]] = rec
    return found


def _aggregate(records: Sequence[Mapping[str, Any]], normalize: bool) -> dict[str, Any]:
    """Per-pair records of one (system, noise, setting) -> the metrics entry of the results (WER/CER in %)."""
    from emotk.eval.measures import paired_pearson, wer_cer

    ok = [r for r in records if r.get("status") == "ok"]
    entry: dict[str, Any] = {"n": len(ok), "n_failed": len(records) - len(ok)}
    if not ok:
        return {**entry, "emo_sim": None, "spk_sim": None, "wer": None, "cer": None, "rate_pcc": None}
    entry["emo_sim"] = float(np.mean([r["emo_sim"] for r in ok]))
    entry["emo_sim_source"] = float(np.mean([r["emo_sim_source"] for r in ok]))
    entry["spk_sim"] = float(np.mean([r["spk_sim"] for r in ok]))
    rates = wer_cer([r["transcript"] for r in ok], [r["hypothesis"] for r in ok], normalize=normalize)
    entry["wer"], entry["cer"] = (None, None) if rates["wer"] is None else (100.0 * rates["wer"], 100.0 * rates["cer"])
    r, n = paired_pearson([x["rate_reference"] for x in ok], [x["rate_converted"] for x in ok])
    entry["rate_pcc"], entry["rate_pairs"] = r, n
    return entry


def build_results(plan: Mapping[str, Any], scores: Mapping[str, Mapping[str, Any]], provenance: Mapping[str, Any],
                  normalize: bool = True) -> dict[str, Any]:
    """The results dict of :mod:`emotk.eval.report` from the planned keys that have a scores line."""
    from emotk.eval.measures import emotion_matrix

    keys = planned_keys(plan)
    setting_of = {pid: s for s, v in plan["settings"].items() for pid in v["selected"]}
    groups: dict[tuple[str, float | None, str], list[Mapping[str, Any]]] = {}
    for system, snr, pid in keys:
        rec = scores.get(score_key(system, snr, pid))
        if rec is not None:
            groups.setdefault((system, snr, setting_of[pid]), []).append(rec)
    systems: dict[str, dict[str, Any]] = {}
    noise: dict[str, dict[str, Any]] = {}
    for (system, snr, setting), recs in groups.items():
        section, label = (systems, system) if snr is None else (noise, f"{system}@{float(snr):g}dB")
        section.setdefault(label, {})[setting] = _aggregate(recs, normalize)
    matrices = {}
    if ANY_TO_ANY in plan["settings"]:
        ok = {system: [r for r in groups.get((system, None, ANY_TO_ANY), []) if r.get("status") == "ok"]
              for system in plan["systems"]}
        # one label set for every system's matrix: the emotions of all systems' scored pairs
        seen = {r[k] for recs in ok.values() for r in recs for k in ("source_emotion", "reference_emotion")}
        labels = sorted(seen, key=lambda e: (e != "neutral", e))
        for system, recs in ok.items():
            if not recs:
                continue
            rows, cols = [r["source_emotion"] for r in recs], [r["reference_emotion"] for r in recs]
            _, vs_ref = emotion_matrix(rows, cols, [r["emo_sim"] for r in recs], labels)
            _, vs_src = emotion_matrix(rows, cols, [r["emo_sim_source"] for r in recs], labels)
            matrices[system] = {"labels": labels, "vs_reference": vs_ref.tolist(), "vs_source": vs_src.tolist()}
    done = sum(score_key(*k) in scores for k in keys)
    prov = {**provenance, "coverage": {"scored": done, "planned": len(keys), "complete": done == len(keys)}}
    out: dict[str, Any] = {"provenance": prov, "systems": systems}
    if noise:
        out["noise"] = noise
    if matrices:
        out["matrices"] = matrices
    return out

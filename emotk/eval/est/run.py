"""``run_est``: set up (or join) the run folder, plan, score this shard's pairs, rebuild the report."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from emotk.core.audio import SAMPLE_RATE
from emotk.errors import AudioError, DataError, UsageError
from emotk.eval.est.cache import Corpus
from emotk.eval.est.config import EstConfig
from emotk.eval.est.plan import load_manifests, make_plan, prepare_pairs, score_key
from emotk.eval.est.provenance import bundle_info, provenance
from emotk.eval.est.scorer import Scorer, make_scorer
from emotk.eval.est.scores import SCORE_FORMAT, build_results, check_scores, open_scores, read_scores
from emotk.eval.est.systems import System, parse_models, parse_systems
from emotk.eval.systems import TransferSystem

log = logging.getLogger("emotk.eval")



def run_est(resolved: Any, out_dir: str | os.PathLike, *, models: Sequence[str | os.PathLike] = (),
            pair_files: Sequence[str | os.PathLike] = (), data: Sequence[str | os.PathLike] = (),
            references: Sequence[str | os.PathLike] = (), roots: dict[str, str] | None = None,
            shard: tuple[int, int] | None = None, resume: bool = False, overwrite: bool = False,
            report_only: bool = False, argv: list[str] | None = None, progress_every: int = 10,
            on_pair: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run (or continue, or only report) an EST evaluation into ``out_dir``; returns a JSON-ready summary.

    resolved: a :class:`emotk.core.config.Resolved` of :class:`EstConfig`. models: ``[NAME=]BUNDLE_DIR`` values.
    pair_files: pair files (``emotk.est_pairs``), else pairs are built from ``data`` (sources) and ``references``
    (unseen settings). data / references: manifests holding the pair ids (audio paths). shard ``(i, N)`` (None:
    all pairs); resume: keep what is scored; report_only: no scoring, rebuild the report from the scores there.
    on_pair: called with the number of pairs finished in this process (tests use it to interrupt a run).
    Returns {"out_dir", "scored" (this process), "skipped_done", "failed", "coverage", "report": paths, "table"}.
    """
    from emotk.core.runs import RunDir
    from emotk.eval.report import render_markdown, write_est_report

    cfg: EstConfig = resolved.config
    out = Path(out_dir)
    i, n = shard or (0, 1)
    if not report_only and not data:
        raise UsageError("--data: give the manifest(s) holding the pairs' audio (the pairs are built from them, or "
                         "read from --pairs FILE)")
    model_dirs = parse_models(models)
    model_info = {name: bundle_info(path) for name, path in model_dirs.items()}
    systems = parse_systems(cfg.systems, model_dirs)
    sources, refs = load_manifests(data, roots), load_manifests(references, roots)
    inputs = {f"model:{k}": v["sha256"] for k, v in model_info.items()}
    # keyed by the manifest's absolute path: two --data files may share a name (every corpus has a manifest.jsonl)
    inputs.update({f"data:{Path(m.path).absolute()}": m.sha256 for m in sources})
    inputs.update({f"references:{Path(m.path).absolute()}": m.sha256 for m in refs})
    if report_only:
        run = RunDir.open(out)
    else:
        if n > 1 and overwrite:
            raise UsageError("--overwrite with --shard would delete the other shards' work: start the shards in an "
                             "empty folder, or continue them with --resume")
        # shards share one run folder: the first creates it, the others join it (same config hash required)
        if n > 1:
            _wait_for_run_json(out)
        run = RunDir.create(out, resolved, overwrite=overwrite, resume=resume or n > 1, inputs=inputs, argv=argv)
        run.attach_log()
        old = run.meta.get("inputs") or {}
        changed = sorted(k for k in set(old) | set(inputs) if old.get(k) != inputs.get(k))
        if changed:
            raise UsageError(f"{out}: this run folder was started with other inputs ({changed[0]} differs); use the "
                             "same --model/--data or a new -o folder")
    plan_path = out / "plan.json"
    if report_only:
        if not plan_path.is_file():
            raise DataError(f"{out}: no plan.json (not an `emotk evaluate est` run folder)")
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
    else:
        pairsets = prepare_pairs(cfg, out, pair_files, sources, refs)
        plan = make_plan(cfg, pairsets, systems, model_info)
        if plan_path.is_file():
            if json.loads(plan_path.read_text(encoding="utf-8")) != json.loads(json.dumps(plan)):
                raise UsageError(f"{plan_path}: the evaluation plan differs from this command's (settings, limit, "
                                 "systems or noise changed); use the same config or a new -o folder")
        else:
            from emotk.core.io import atomic_write_json

            atomic_write_json(plan_path, plan)
    counts = {"scored": 0, "skipped_done": 0, "failed": 0}
    backends: dict[str, str] = {}
    if not report_only:
        counts, backends = _score(cfg, resolved, out, plan, pairsets, systems, model_dirs, sources + refs,
                                  (i, n), resume, progress_every, on_pair)
        if backends:
            run.update(backends=backends)
    backends = backends or run.meta.get("backends") or {}
    prov = provenance(run, plan, backends)
    # the run's own settings (a --report-only call resolves only the default config)
    normalize = bool(((run.meta.get("config") or {}).get("measures") or {}).get("normalize_text",
                                                                                 cfg.measures.normalize_text))
    results = build_results(plan, read_scores(out), prov, normalize)
    paths = write_est_report(results, out / "report")
    cov = results["provenance"]["coverage"]
    if not cov["complete"]:
        log.info("report covers %d of %d planned (system, noise, pair) scores; run the other shards or --resume",
                 cov["scored"], cov["planned"])
    return {"out_dir": str(out), **counts, "coverage": cov,
            "report": {k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in paths.items()},
            "table": render_markdown(results)}


def _score(cfg: EstConfig, resolved: Any, out: Path, plan: Mapping[str, Any], pairsets: Mapping[str, Any],
           systems: Sequence[System], model_dirs: Mapping[str, Path], manifests: Sequence[Any],
           shard: tuple[int, int], resume: bool, progress_every: int,
           on_pair: Callable[[int], None] | None) -> tuple[dict[str, int], dict[str, str]]:
    from emotk.core.runtime import apply_threads, device_name
    from emotk.core.shard import select
    from emotk.eval.est.systems import load_systems
    from emotk.eval.measures import NoiseBank

    device = device_name(resolved.runtime.device)
    apply_threads(resolved.runtime.threads)
    by_id = {p["id"]: (s, p) for s, v in pairsets.items() for p in v["pairs"]}
    order = [pid for s in plan["settings"] for pid in plan["settings"][s]["selected"]]
    mine = select(order, shard)
    check_scores(out, shard, resume)  # before any work: an existing shard needs --resume
    done = read_scores(out) if resume else {}
    jobs = {pid: [(sys, snr) for sys in systems for snr in plan["noise"]
                  if snr is None or sys.name in plan["noise_systems"]] for pid in mine}
    counts = {"scored": 0, "skipped_done": 0, "failed": 0}
    todo: dict[str, list[tuple[System, float | None]]] = {}
    for pid, items in jobs.items():
        # failed scores are tried again (the new line replaces the old one: read_scores keeps a key's last line)
        left = [(sys, snr) for sys, snr in items
                if done.get(score_key(sys.name, snr, pid), {}).get("status") != "ok"]
        counts["skipped_done"] += len(items) - len(left)
        if left:
            todo[pid] = left
    if not todo:
        log.info("est: nothing left to score in shard %d/%d", *shard)
        return counts, {}
    scorer = make_scorer(cfg, model_dirs, device)
    converters = load_systems(systems, model_dirs, cfg, device)
    bank = NoiseBank(cfg.noise.folder or None, cfg.noise.color, cfg.noise.seed) if cfg.noise.snr_db else None
    backends = {**scorer.backends, **({"noise": bank.name} if bank else {})}
    corpus = Corpus(manifests)
    for pid in todo:  # every id must resolve before any work starts
        corpus.record(by_id[pid][1]["source"], pid, "source")
        corpus.record(by_id[pid][1]["reference"], pid, "reference")
    total = sum(len(v) for v in todo.values())
    t0 = time.perf_counter()
    log.info("est: %d pairs (%d scores) to do in shard %d/%d", len(todo), total, *shard)
    with open_scores(out, shard, resume) as journal:
        for finished, (pid, items) in enumerate(todo.items(), 1):
            setting, pair = by_id[pid]
            for system, snr in items:
                rec = _score_one(cfg, out, scorer, corpus, converters[system.name], bank, system, snr, setting, pair)
                if rec["status"] != "ok":
                    counts["failed"] += 1
                journal.append(rec)  # fsynced: a kill never loses a finished score
                counts["scored"] += 1
            if on_pair is not None:
                on_pair(finished)
            if progress_every and finished % progress_every == 0:
                rate = (time.perf_counter() - t0) / counts["scored"]
                log.info("est: %d/%d pairs (%.2f s a score, about %.0f s left)", finished, len(todo), rate,
                         rate * (total - counts["scored"]))
    return counts, backends


SHARD_START_WAIT_S = 60.0


def _wait_for_run_json(out: Path, timeout: float = SHARD_START_WAIT_S) -> None:
    """Shards of a SLURM array start together: a folder that is not empty but has no run.json yet is being set
    up by another shard; wait (up to ``timeout`` s) for its run.json instead of refusing the folder."""
    deadline = time.monotonic() + timeout
    while (out.is_dir() and any(out.iterdir()) and not (out / "run.json").exists()
           and time.monotonic() < deadline):
        time.sleep(0.5)


def _score_one(cfg: EstConfig, out: Path, scorer: Scorer, corpus: Corpus, converter: TransferSystem, bank: Any,
               system: System, snr: float | None, setting: str, pair: Mapping[str, Any]) -> dict[str, Any]:
    """Convert one pair with one system (at one noise level) and measure it -> the scores line (status ok|error)."""
    from emotk.data.audio import save_audio
    from emotk.models.zest.infer import check_input

    pid = pair["id"]
    src_rec = corpus.record(pair["source"], pid, "source")
    rec: dict[str, Any] = {"format": SCORE_FORMAT, "key": score_key(system.name, snr, pid), "system": system.name,
                           "noise_db": snr, "setting": setting, "pair": pid, "source": pair["source"],
                           "reference": pair["reference"], "source_emotion": pair["source_emotion"],
                           "reference_emotion": pair["reference_emotion"]}
    t0 = time.perf_counter()
    try:
        src = check_input(corpus.audio(pair["source"]), f"source {pair['source']}")
        ref = check_input(corpus.audio(pair["reference"]), f"reference {pair['reference']}")
        noisy = src if snr is None else bank.add(src, snr, key=pid)
        transcript = src_rec.get(cfg.measures.transcript_field)
        if isinstance(transcript, str) and transcript.strip():
            origin = "manifest"
        else:
            transcript, origin = scorer.asr_of(pair["source"], src)["text"], "asr"
        # a system's own caches serve every pair that shares a source or reference (noisy sources: one per SNR)
        wav, info = converter.convert(noisy, ref)
        wav = check_input(wav, f"{system.name} output for pair {pid}")
        rec.update(status="ok", **scorer.score(wav, pair["source"], src, pair["reference"], ref, transcript),
                   transcript_from=origin, seconds_out=round(wav.size / SAMPLE_RATE, 3), **info)
        if cfg.save_audio:
            name = f"{pid}.wav" if snr is None else f"{pid}@{float(snr):g}dB.wav"
            save_audio(out / "audio" / system.name.replace(":", "_") / name, wav, SAMPLE_RATE)
    except (AudioError, DataError) as e:
        rec.update(status="error", error=str(e))
        log.warning("est: %s %s: %s", system.name, pid, e)
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return rec

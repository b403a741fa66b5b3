"""``emotk evaluate``: the thesis's evaluation protocols. Thin: options -> one core call (emotk.eval), result on stdout.

    emotk evaluate est --model BUNDLE --pairs data_manifests/ravdess/est/SSST.jsonl --data M.jsonl -o OUT
    emotk evaluate est --setting USUE --data timit.jsonl --references crema-d.jsonl --model BUNDLE [--limit N]
                       [--shard i/N] [--resume] [-c evaluate/est] [--set noise.snr_db=[20,10]]
    emotk evaluate est --report-only -o OUT          (rebuild the report from every shard's scores)
    emotk evaluate ser RUN_DIR... -o OUT             (mean ± std tables of SER runs; erc likewise)
    emotk evaluate zest-analysis --model BUNDLE --data M.jsonl [--speaker S]... [--limit N]
                                                     (S2S-ZEST F0 / duration predictions vs parallel speech)
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from emotk.cli.common import ConfigOpt, OverwriteOpt, RootOpt, SetOpt, emit

app = typer.Typer(
    help="Evaluation protocols: emotion-style-transfer settings SSST..USUE (est), SER/ERC run tables (ser, erc), "
         "S2S-ZEST analysis models on parallel speech (zest-analysis).",
    no_args_is_help=True,
)

TASK = "evaluate.est"


@app.command("est")
def est(
    model: Optional[List[str]] = typer.Option(None, "--model", "-m",
        help="S2S-ZEST bundle [NAME=]DIR (repeatable: one system each; default name s2s-zest)."),
    setting: Optional[List[str]] = typer.Option(None, "--setting", "-s",
        help="SSST, SSDT, DSST, DSDT, UTE, USS, USUE or A2A (repeatable; default: those of --pairs, or SSST..DSDT)."),
    pairs: Optional[List[Path]] = typer.Option(None, "--pairs",
        help="Pair file (emotk.est_pairs, e.g. data_manifests/ravdess/est/SSST.jsonl; repeatable)."),
    data: Optional[List[Path]] = typer.Option(None, "--data", "-d",
        help="Manifest of the sources (and of the parallel settings' references); repeatable."),
    references: Optional[List[Path]] = typer.Option(None, "--references",
        help="Manifest of the references of UTE/USS/USUE (e.g. CREMA-D, ESD)."),
    out: Path = typer.Option(Path("emotk-est"), "--out", "-o", help="Evaluation folder (pairs, scores, report)."),
    config: Optional[str] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    limit: Optional[int] = typer.Option(None, "--limit", help="At most N pairs per setting, evenly spaced (0 = all)."),
    shard: Optional[str] = typer.Option(None, "--shard",
        help="Score shard i/N of the pairs (SLURM arrays; same -o for all shards)."),
    resume: bool = typer.Option(False, "--resume", help="Continue: keep every (system, noise, pair) already scored."),
    report_only: bool = typer.Option(False, "--report-only", help="Only rebuild OUT/report from the scores in OUT."),
    overwrite: bool = OverwriteOpt,
    root: Optional[List[str]] = RootOpt,
) -> None:
    """Convert every pair with each system (models, world-baseline, copy-source) and score Emo-Sim, WER, Spk-Sim and
    word-rate PCC; write OUT/report (Table 5.2 layout: results.json/.csv, table.md, plots)."""
    from emotk.cli.common import parse_roots
    from emotk.cli.common import resolve_config as resolve
    from emotk.core.shard import parse_shard
    from emotk.eval.est import EstConfig, run_est
    from emotk.recipes import configs_dir, find_config

    sets = list(set_ or [])
    if setting:
        sets.append(f"settings=[{','.join(s.upper() for s in setting)}]")
    if limit is not None:
        sets.append(f"limit={limit}")
    default = configs_dir() / "evaluate" / "est.yaml"
    file = find_config(config) if config else (default if default.is_file() else None)
    resolved = resolve(EstConfig, TASK, file, sets)
    result = run_est(resolved, out, models=model or [], pair_files=pairs or [], data=data or [],
                     references=references or [], roots=parse_roots(root), shard=parse_shard(shard), resume=resume,
                     overwrite=overwrite, report_only=report_only)
    emit(result, lambda r: typer.echo(
        f"{r['table'].rstrip()}\n\nscored {r['scored']} ({r['failed']} failed, {r['skipped_done']} already done); "
        f"report covers {r['coverage']['scored']}/{r['coverage']['planned']}: {r['report']['markdown']}"))


def _aggregate(task: str, runs: List[Path], out: Optional[Path], split: str, label: Optional[List[str]],
               overwrite: bool) -> None:
    from emotk.core.io import check_writable
    from emotk.eval.aggregate import aggregate_runs, render_aggregate_markdown, write_aggregate_report

    if out is not None:
        check_writable(out / "table.md", overwrite)
    table = aggregate_runs(runs, task, split=split, labels=label)
    paths = write_aggregate_report(table, out) if out is not None else {}
    emit({**table, "report": {k: str(v) for k, v in paths.items()}},
         lambda t: typer.echo(render_aggregate_markdown(t).rstrip()
                              + (f"\n\nreport: {paths['markdown']}" if paths else "")))


@app.command("ser")
def ser(
    runs: List[Path] = typer.Argument(..., help="Output folders of `emotk ser train` (or single run folders)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write results.json/.csv and table.md here."),
    split: str = typer.Option("test", "--split", help="Which split's metrics (test or valid)."),
    label: Optional[List[str]] = typer.Option(None, "--label", help="Row label per run folder (repeatable, in order)."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """One table of SER runs: mean ± std of every metric over each folder's (fold, seed) runs."""
    _aggregate("ser", runs, out, split, label, overwrite)


@app.command("erc")
def erc(
    runs: List[Path] = typer.Argument(..., help="Output folders of ERC training runs (same layout as SER runs)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write results.json/.csv and table.md here."),
    split: str = typer.Option("test", "--split", help="Which split's metrics (test or valid)."),
    label: Optional[List[str]] = typer.Option(None, "--label", help="Row label per run folder (repeatable, in order)."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """One table of ERC runs: mean ± std of every metric over each folder's (fold, seed) runs."""
    _aggregate("erc", runs, out, split, label, overwrite)


@app.command("zest-analysis")
def zest_analysis(
    model: Path = typer.Option(..., "--model", "-m", help="S2S-ZEST model bundle folder (emotk transfer bundle)."),
    data: Path = typer.Option(..., "--data", "-d", help="Manifest with parallel takes (speaker, emotion, text)."),
    speaker: Optional[List[str]] = typer.Option(None, "--speaker", help="Evaluate these speakers only (repeatable)."),
    text_field: str = typer.Option("text", "--text-field", help="Manifest field naming the sentence."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most N pairs, evenly spaced (0 = all)."),
    voiced_threshold: float = typer.Option(60.0, "--voiced-threshold",
                                           help="Predicted F0 above this (Hz) counts as voiced (0: F0 > 0)."),
    root: Optional[List[str]] = RootOpt,
) -> None:
    """Compare a bundle's predicted F0 and durations with what the speaker did (neutral source -> emotional take of
    the same speaker and sentence; DTW-aligned), against the copy-the-source baseline and the reconstruction."""
    from emotk.cli.common import parse_roots
    from emotk.core.context import options
    from emotk.core.runtime import device_name
    from emotk.eval.zest_analysis import evaluate_manifest
    from emotk.recipes import load_attr, task_spec

    bundle = load_attr(task_spec("transfer.zest").load_export)(model, device=device_name(options.device or "cpu"))
    result = evaluate_manifest(bundle, data, speakers=speaker or None, text_field=text_field, limit=limit,
                               voiced_threshold=voiced_threshold, roots=parse_roots(root))
    emit(result, lambda r: typer.echo("\n".join(
        [f"{r['pairs']} pairs ({r['sources']} sources), emotion accuracy {r['emotion_accuracy']}"]
        + [f"{m}: " + ", ".join(f"{k} {v}" for k, v in h.items()) for m, h in r["headline"].items()])))

"""``emotk erc``: emotion recognition in conversations -- HCAM (embed, train, evaluate, predict).

Thin: options -> one core call. ``train`` takes its entry point from the task table (:mod:`emotk.recipes`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from emotk.cli.common import ConfigOpt, OverwriteOpt, RootOpt, SetOpt, emit, metric_rows, table

app = typer.Typer(
    help="Emotion recognition in conversations: HCAM stages over frozen utterance vectors (text, speech, fusion).",
    no_args_is_help=True,
)

TASK = "erc.hcam"


def _resolve(config: Optional[str], set_: Optional[List[str]], data: Optional[Path], protocol: Optional[str]):
    from emotk.cli.common import resolve_config
    from emotk.core.context import options
    from emotk.recipes import find_config, task_spec

    overrides = list(set_ or [])
    if data is not None:
        overrides.append(f"data.manifest={json.dumps(str(data))}")
    if protocol is not None:
        overrides.append(f"data.protocol={json.dumps(protocol)}")
    if options.seed is not None:
        overrides.append(f"train.seed={options.seed}")
    spec = task_spec(TASK)
    return spec, resolve_config(spec.schema_class(), TASK, find_config(config) if config else None, overrides)


DataOpt = typer.Option(None, "--data", "-d", help="Conversation manifest (JSONL with dialogue, turn, speaker).")
ProtocolOpt = typer.Option(None, "--protocol", "-p",
                           help="Protocol name or JSON file; manifest-split = the records' own split field.")


@app.command("embed")
def embed(
    data: Optional[Path] = DataOpt,
    config: Optional[str] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Output folder of the ERC experiment (vectors go to "
                                                       "OUT/features, where `erc train -o OUT` finds them, or to "
                                                       "embed.cache_dir when set)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Process storage shards i/N only (SLURM arrays)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable audio / missing text (listed)."),
    root: Optional[List[str]] = RootOpt,
) -> None:
    """Stage I: write one vector per utterance (each modality of the config) into the resumable feature cache."""
    from emotk.cli.common import parse_roots
    from emotk.core.runtime import device_name
    from emotk.core.shard import parse_shard
    from emotk.data.manifest import Manifest
    from emotk.errors import UsageError
    from emotk.models.erc.embed import ensure_embeddings

    _, resolved = _resolve(config, set_, data, None)
    cfg = resolved.config
    if not cfg.data.manifest:
        raise UsageError("no manifest: pass --data MANIFEST.jsonl (or set data.manifest)")
    roots = parse_roots(root)
    manifest = Manifest.load(cfg.data.manifest, roots=roots) if roots else Manifest.load(cfg.data.manifest)
    root = Path(cfg.embed.cache_dir) if cfg.embed.cache_dir else Path(out) / "features"
    result = ensure_embeddings(cfg, manifest, root, device=device_name(resolved.runtime.device),
                               shard=parse_shard(shard), skip_bad=skip_bad)
    emit(result, lambda r: [typer.echo(f"{m}: {s.get('count', 0)} embedded now, {s.get('cached', 0)} cached, "
                                       f"{len(s.get('skipped', []))} skipped -> {s['cache']}") for m, s in r.items()])


@app.command("train")
def train(
    data: Optional[Path] = DataOpt,
    protocol: Optional[str] = ProtocolOpt,
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Runs (seeds train.seed, +1, ...); default: config's."),
    stage: Optional[int] = typer.Option(None, "--stage", help="HCAM stage: 1 (no context), 2 (context), 3 (fusion)."),
    config: Optional[str] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (runs/, summary.json, export/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue: skip finished seeds, resume the interrupted one."),
    overwrite: bool = OverwriteOpt,
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable audio / missing text when embedding."),
    root: Optional[List[str]] = RootOpt,
) -> None:
    """Train one HCAM stage for each seed on frozen stage-I vectors; print the test metrics (mean ± std)."""
    from emotk.cli.common import parse_roots

    extra = []
    if seeds is not None:
        extra.append(f"seeds={seeds}")
    if stage is not None:
        extra.append(f"model.stage={stage}")
    spec, resolved = _resolve(config, [*(set_ or []), *extra], data, protocol)
    summary = spec.train_fn()(resolved, out, resume=resume, overwrite=overwrite, skip_bad=skip_bad,
                              roots=parse_roots(root), argv=["emotk", *sys.argv[1:]])
    from emotk.train import distributed as dist

    if not dist.is_main():
        return

    def human(s: dict) -> None:
        split = s.get("split_reported")
        if split:
            what = "test" if split == "test" else "VALIDATION (the protocol has no test split)"
            table(f"erc stage {s['stage']} ({', '.join(s['modalities'])}, context {s['context']}) — {what} "
                  f"({s['runs_total']} runs; {s['std_kind']})", ["metric", "mean ± std (%)", "per run"],
                  metric_rows(s[split], percent=True))
        if s.get("late_best_runs"):
            typer.echo(f"warning: {len(s['late_best_runs'])} run(s) selected an epoch in the last 10% of training "
                       "(under-trained?): raise train.epochs", err=True)
        typer.echo(f"summary: {Path(out) / 'summary.json'}")
        typer.echo(f"export:  {Path(out) / 'export'} (from {s.get('export', {}).get('from')})")

    emit(summary, human)


@app.command("evaluate")
def evaluate(
    run_dir: Path = typer.Argument(..., help="Output folder of `erc train` (or one of its runs/*)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Score another conversation manifest."),
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p",
                                           help="With --data: its protocol (default: its own split field)."),
    split: str = typer.Option("test", "--split", help="train, valid, test, or all."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier evaluation of the same name."),
    root: Optional[List[str]] = RootOpt,
) -> None:
    """Score the exported runs on a split (reports, per-turn predictions, confusion matrix per run)."""
    from emotk.cli.common import parse_roots
    from emotk.core.context import options
    from emotk.core.runtime import device_name
    from emotk.models.erc.evaluate import evaluate as run_evaluate

    result = run_evaluate(run_dir, manifest=data, split=split, protocol=protocol, overwrite=overwrite,
                          device=device_name(options.device or "cpu"), roots=parse_roots(root))

    def human(r: dict) -> None:
        table(f"erc evaluate — {r['split']} of {r['data']} ({len(r['runs'])} runs; {r['std_kind']})",
              ["metric", "mean ± std (%)", "per run"], metric_rows(r["aggregate"], percent=True))
        for e in r["runs"]:
            typer.echo(f"report: {Path(r['run_dir']) / e['report']}")

    emit(result, human)


@app.command("predict")
def predict(
    inputs: Optional[Path] = typer.Argument(None, help="Conversation manifest (JSONL); omit or - for stdin."),
    model: Path = typer.Option(..., "--model", "-m", help="Export folder (OUT/export) or an `erc train` folder."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the JSONL here instead of stdout."),
    online: bool = typer.Option(False, "--online", help="Read turns as JSON lines on stdin (any interleaving of "
                                                        "dialogues) and print each turn's prediction at once "
                                                        "(needs a model trained with model.context=causal)."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Predict the emotion of every turn: one JSON object per turn (id, dialogue, label when known, prediction,
    probabilities, model)."""
    from emotk.core.context import options
    from emotk.core.io import atomic_path, check_writable
    from emotk.core.runtime import device_name
    from emotk.errors import UsageError
    from emotk.models.erc.infer import ErcPredictor, OnlineSession
    from emotk.models.erc.infer import predict as run_predict

    predictor = ErcPredictor(model, device=device_name(options.device or "cpu"))
    if online:
        if out is not None or (inputs is not None and str(inputs) != "-"):
            raise UsageError("--online reads turns on stdin and writes to stdout (no input file, no -o)")
        session = OnlineSession(predictor)
        for n, line in enumerate(sys.stdin, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                from emotk.errors import DataError

                raise DataError(f"stdin:{n}: not a JSON object ({e.msg})") from None
            sys.stdout.write(json.dumps(session.add(record, where=f"stdin:{n}"), ensure_ascii=False) + "\n")
            sys.stdout.flush()
        return
    manifest = _stdin_manifest() if inputs is None or str(inputs) == "-" else inputs
    if out is not None:
        check_writable(out, overwrite)
    rows = run_predict(predictor, manifest)
    if out is None:
        for r in rows:
            sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
    else:
        with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _stdin_manifest():
    """A conversation manifest read from stdin (JSON lines; errors name ``stdin:LINE``)."""
    from emotk.data.manifest import Manifest

    return Manifest.loads(sys.stdin.read(), name="stdin")

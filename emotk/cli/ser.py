"""``emotk ser``: SUPERB-protocol speech emotion recognition (train, evaluate, predict).

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
    help="Speech emotion recognition: SUPERB downstream on a frozen upstream (or lld features), VAD regression.",
    no_args_is_help=True,
)

TASK = "ser.superb"


def _device() -> str | None:
    from emotk.core.context import options

    return options.device


def _values(values: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())


@app.command("train")
def train(
    data: Optional[Path] = typer.Option(None, "--data", "-d",
                                        help="Manifest (JSONL); default: data.manifest of the config."),
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p",
                                           help="Protocol name (e.g. ravdess-5fold), protocol JSON file, or "
                                           "manifest-split (the records' own split field; the default)."),
    fold: Optional[str] = typer.Option(None, "--fold", help="Fold name or 0-based index."),
    all_folds: bool = typer.Option(False, "--all-folds", help="Run every fold of the protocol."),
    seeds: Optional[int] = typer.Option(None, "--seeds",
                                        help="Runs per fold (seeds train.seed, +1, ...); default: the config's seeds."),
    config: Optional[str] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (runs/, summary.json, export/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue: skip finished runs, resume the interrupted one."),
    overwrite: bool = OverwriteOpt,
    skip_bad: bool = typer.Option(False, "--skip-bad",
                                  help="Skip unreadable audio during feature extraction (listed)."),
    root: Optional[List[str]] = RootOpt,
    search: Optional[List[str]] = typer.Option(
        None, "--search", help="Search KEY over candidate values, KEY=[v1,v2,...] (repeatable; grid): one trial per "
                               "combination per fold, chosen on the validation split only, e.g. "
                               "--search train.optim.lr=[1e-3,3e-4] --search model.layers=[all,[-1]]."),
) -> None:
    """Train the SUPERB SER downstream for each (fold, seed); print the test metrics (mean ± std).

    Recipes: -c ser/ravdess (the thesis's) or -c ser/ravdess-strong (emotk's: standardised mean+std statistics,
    dropout, weight decay, early stopping and a validation-only search); see configs/ser/."""
    from emotk.cli.common import parse_roots
    from emotk.cli.common import resolve_config as resolve
    from emotk.core.context import options
    from emotk.recipes import find_config, task_spec

    if fold is not None and all_folds:
        from emotk.errors import UsageError

        raise UsageError("give either --fold or --all-folds, not both")
    overrides = list(set_ or [])
    if data is not None:
        overrides.append(f"data.manifest={json.dumps(str(data))}")
    if protocol is not None:
        overrides.append(f"data.protocol={json.dumps(protocol)}")
    if fold is not None:
        overrides.append(f"data.fold={json.dumps(str(fold))}")
    if all_folds:
        overrides.append("data.fold=all")
    if seeds is not None:
        overrides.append(f"seeds={seeds}")
    if options.seed is not None:
        overrides.append(f"train.seed={options.seed}")
    spec = task_spec(TASK)
    resolved = resolve(spec.schema_class(), TASK, find_config(config) if config else None, overrides)
    if search:
        from emotk.models.ser.search import with_search

        resolved = with_search(resolved, search)
    summary = spec.train_fn()(resolved, out, resume=resume, overwrite=overwrite, skip_bad=skip_bad,
                              roots=parse_roots(root), argv=["emotk", *sys.argv[1:]])
    from emotk.train import distributed as dist

    if not dist.is_main():  # under torchrun/srun only rank 0 prints the result
        return

    def human(s: dict) -> None:
        split = "test" if "test" in s else "valid"
        if split in s:
            what = "test" if split == "test" else "VALIDATION (the protocol has no test split)"
            table(f"ser {s['upstream']} — {what} ({s['runs_total']} runs; folds {', '.join(s['folds'])}; "
                  "population std over runs)", ["metric", "mean ± std", "per run"], metric_rows(s[split]))
        if "test_over_folds" in s:
            table(f"test over {len(s['per_fold'])} folds — mean ± sample std of the fold means",
                  ["metric", "mean ± std", "per fold"], metric_rows(s["test_over_folds"]))
        for fold, chosen in s.get("search", {}).get("folds", {}).items():
            typer.echo(f"search {fold}: {chosen['trial']} ({_values(chosen['chosen'])}), chosen on "
                       f"{s['search']['selected_on']}")
        if s.get("late_best_runs"):
            typer.echo(f"warning: {len(s['late_best_runs'])} run(s) selected an epoch in the last 10% of training "
                       "(under-trained?): raise train.epochs and set train.early_stop_patience", err=True)
        typer.echo(f"summary: {Path(out) / 'summary.json'}")
        typer.echo(f"export:  {Path(out) / 'export'} (from {s.get('export', {}).get('from')})")

    emit(summary, human)


MapOpt = typer.Option(
    None, "--map", help="Map a label of the data onto a model class, SOURCE=CLASS (repeatable; SOURCE= drops it). "
                        "Names and synonyms (fearful=fear, happy=joy, ...) are matched without it.")
MapFileOpt = typer.Option(None, "--map-file", help="Label mapping file: JSON {source: class} or CSV 'source,class'.")


@app.command("evaluate")
def evaluate(
    run_dir: Path = typer.Argument(..., help="Output folder of `ser train` (or one of its runs/*)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Score another manifest instead of the run's."),
    split: str = typer.Option("test", "--split", help="train, valid, test, or all (every usable utterance)."),
    map_: Optional[List[str]] = MapOpt,
    map_file: Optional[Path] = MapFileOpt,
    root: Optional[List[str]] = RootOpt,
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace the reports of an earlier `ser evaluate` of the same split and data."),
    cache: Optional[Path] = typer.Option(
        None, "--cache", help="Feature cache root (default: the run's upstream.cache_dir, else RUN_DIR/features); "
                              "cached utterances are reused, only the others are encoded and added."),
) -> None:
    """Score the selected checkpoints on a split: report, predictions, confusion matrix (JSON + PNG) per run.

    With --data of another corpus, its labels are mapped onto the model's classes; only the shared classes are
    scored (probabilities renormalised over them) and the dropped utterances and classes are reported."""
    from emotk.cli.common import parse_roots
    from emotk.data.labels import parse_label_mapping
    from emotk.models.ser.evaluate import evaluate as run_evaluate

    result = run_evaluate(run_dir, manifest=str(data) if data else None, split=split, roots=parse_roots(root),
                          device=_device(), label_mapping=parse_label_mapping(map_, map_file) or None,
                          overwrite=overwrite, cache=cache)

    def human(r: dict) -> None:
        table(f"ser evaluate — {r['split']} ({len(r['runs'])} runs)", ["metric", "mean ± std", "per run"],
              metric_rows(r["aggregate"]))
        for e in r["runs"]:
            typer.echo(f"report: {Path(r['run_dir']) / e['report']}")

    emit(result, human)


@app.command("predict")
def predict(
    inputs: List[str] = typer.Argument(..., help="Audio files, JSONL manifests, or - (paths / JSON records on stdin)."),
    model: Path = typer.Option(..., "--model", "-m", help="Export folder (RUN_DIR/export) or a run folder."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the JSONL here instead of stdout."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Report bad inputs on stderr and go on."),
    batch_size: int = typer.Option(16, "--batch-size", "-b", min=1, help="Utterances per forward pass."),
    score: bool = typer.Option(False, "--score",
                               help="Also score the predictions against the inputs' labels as `ser evaluate` does "
                                    "(report.json, predictions.jsonl, confusion matrix); needs -o OUT."),
    report: Optional[Path] = typer.Option(None, "--report",
                                          help="With --score: the report folder (default: beside OUT, named "
                                               "OUT's stem + '-report')."),
    unlabeled: Optional[str] = typer.Option(
        None, "--unlabeled", help="With --score, an input without a label: error (default; names the first) or "
                                  "skip (predicted, not scored)."),
    label_field: Optional[str] = typer.Option(
        None, "--label-field", help="Manifest field of the true class (default: the training run's "
                                    "data.label_field, else emotion)."),
    map_: Optional[List[str]] = MapOpt,
    map_file: Optional[Path] = MapFileOpt,
    overwrite: bool = OverwriteOpt,
    root: Optional[List[str]] = RootOpt,
    cache: Optional[Path] = typer.Option(
        None, "--cache", help="Feature cache root to read and add to (default: read the cache of the model's "
                              "`ser train` folder when there is one)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Encode every input; read and write no feature cache."),
) -> None:
    """Predict emotions: one JSON object per input, JSONL on stdout (or -o).

    Fields: id, label (the truth, when the input record has one that maps onto a model class), source_label (the
    record's label as written, when it differs), prediction, probabilities {class: p}; regression: id, target
    (when known), prediction {target: value}. With --score (and -o), stdout gets the metrics instead (--json: one
    JSON object)."""
    from emotk.cli.common import parse_roots
    from emotk.core.runtime import device_name
    from emotk.data.labels import parse_label_mapping
    from emotk.errors import UsageError

    if not score and (report is not None or unlabeled is not None):
        raise UsageError(f"{'--report' if report is not None else '--unlabeled'} only applies with --score")
    if cache is not None and no_cache:
        raise UsageError("give either --cache or --no-cache, not both")
    label_mapping = parse_label_mapping(map_, map_file) or None
    feature_cache = False if no_cache else cache
    if score:
        _predict_scored(inputs, model, out, report, unlabeled or "error", skip_bad, batch_size, overwrite,
                        parse_roots(root), label_field, label_mapping, feature_cache)
        return
    from emotk.core.io import atomic_path, check_writable, remove_stale_temps
    from emotk.models.ser.infer import predict as run_predict

    if out is not None:
        check_writable(out, overwrite)
        remove_stale_temps(out)  # what a run killed at the rename left beside the output
    results = run_predict(model, list(inputs), skip_bad=skip_bad, batch_size=batch_size,
                          device=device_name(_device()), roots=parse_roots(root), cache=feature_cache,
                          label_field=label_field, label_mapping=label_mapping)
    skipped = []

    def write(stream) -> None:
        for r in results:
            if "skipped" in r:
                skipped.append(r)
                continue
            stream.write(json.dumps(r, ensure_ascii=False) + "\n")
            stream.flush()

    if out is None:
        write(sys.stdout)
    else:
        with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
            write(f)
    _report_skipped(skipped)


def _report_skipped(skipped: list[dict]) -> None:
    if skipped:
        sys.stderr.write(f"emotk: skipped {len(skipped)} bad input(s):\n")
        for r in skipped:
            sys.stderr.write(f"  {r['id']}: {r['skipped']}\n")


def _predict_scored(inputs: List[str], model: Path, out: Optional[Path], report: Optional[Path], unlabeled: str,
                    skip_bad: bool, batch_size: int, overwrite: bool, roots: dict, label_field: Optional[str],
                    label_mapping: Optional[dict], cache: "Optional[Path] | bool") -> None:
    from emotk.core.runtime import device_name
    from emotk.errors import UsageError
    from emotk.models.ser.evaluate import predict_and_score

    if out is None:
        raise UsageError("--score needs -o OUT.jsonl for the predictions (stdout gets the metrics; the report goes "
                         "beside OUT or to --report DIR)")
    result = predict_and_score(model, list(inputs), out, report=report, overwrite=overwrite, unlabeled=unlabeled,
                               skip_bad=skip_bad, batch_size=batch_size, device=device_name(_device()), roots=roots,
                               label_field=label_field, label_mapping=label_mapping, cache=cache)
    _report_skipped(result["skipped"])

    def human(r: dict) -> None:
        table(f"ser predict --score ({r['scored']} scored of {r['predicted']} predicted)", ["metric", "value"],
              [[k, f"{v:.4f}"] for k, v in r["metrics"].items()])
        if r.get("label_mapping"):
            typer.echo(f"labels: {r['label_mapping']['summary']}")
        typer.echo(f"predictions: {r['predictions']}")
        typer.echo(f"report:      {r['report']}")

    emit(result, human)

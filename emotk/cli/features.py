"""``emotk features``: feature extraction into a sharded, resumable cache; tokenizer training.

Thin: parse options, call one core function, print its result.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from emotk.cli.common import ConfigOpt, OverwriteOpt, RootOpt, SetOpt, emit, table

app = typer.Typer(
    help="Feature extraction (SSL upstreams, F0, acoustic targets, content tokens, text embeddings, "
    "Whisper-encoder frames) into a sharded, resumable cache.",
    no_args_is_help=True,
)

ShardOpt = typer.Option(None, "--shard", help="Process part I of N (0-based), e.g. 3/16 for a SLURM array task.")


@app.command("kinds")
def kinds() -> None:
    """List the feature kinds that `features extract` knows."""
    from emotk.features.extract import describe_extractors

    rows = describe_extractors()
    emit(rows, lambda r: table("feature kinds", ["kind", "input", "description"],
                               [[x["kind"], x["input"], x["description"]] for x in r]))


@app.command("extract")
def extract(
    kind: str = typer.Argument(
        ..., help="upstream, f0, acoustic, tokens, text or whisper-encoder (see `features kinds`)."),
    data: Path = typer.Option(..., "--data", "-d", help="Manifest (JSONL)."),
    out: Path = typer.Option(..., "--out", "-o", help="Cache root; features go to OUT/<kind>-<hash12>/."),
    shard: Optional[str] = ShardOpt,
    resume: bool = typer.Option(False, "--resume", help="Keep complete shards and compute only the missing ones."),
    overwrite: bool = OverwriteOpt,
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    skip_bad: bool = typer.Option(False, "--skip-bad",
                                  help="Skip unreadable audio (listed in the summary) instead of failing."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Utterances per extractor call."),
    shard_size: int = typer.Option(64, "--shard-size", help="Utterances per stored shard (the unit of resume)."),
    root: Optional[List[str]] = RootOpt,
) -> None:
    """Extract one kind of feature for every utterance of a manifest into the feature cache."""
    from emotk.cli.common import parse_roots
    from emotk.cli.common import resolve_config as resolve
    from emotk.core.shard import parse_shard
    from emotk.features.extract import get_extractor, run_extraction

    spec = get_extractor(kind)
    resolved = resolve(spec.schema_class(), f"features.{kind}", config, set_ or [])
    summary = run_extraction(
        kind, data, out, resolved.config, shard=parse_shard(shard), resume=resume, overwrite=overwrite,
        skip_bad=skip_bad, batch_size=batch_size, shard_size=shard_size, device=resolved.runtime.device,
        roots=parse_roots(root), progress=None,
    )

    def human(s: dict) -> None:
        tp = s["throughput"]["audio_seconds_per_second"]
        rows = [["cache", s["cache"]], ["config hash", s["config_hash"][:12]], ["shard", s["shard"] or "all"],
                ["utterances extracted", s["count"]], ["already cached", s["utterances_cached_before"]],
                ["skipped", len(s["skipped"])], ["audio seconds", s["audio_seconds"]], ["seconds", s["seconds"]],
                ["x real time", tp if tp is not None else "-"], ["cache complete", s["complete"]]]
        table(f"features {s['kind']}", ["item", "value"], rows)
        for uid in s["skipped"]:
            typer.echo(f"skipped: {uid}")

    emit(summary, human)


@app.command("info")
def info(path: Path = typer.Argument(..., help="A cache folder, or a root holding <kind>-<hash12> folders.")) -> None:
    """Show what a feature cache holds: kind, config hash, shards complete, utterances stored/skipped."""
    from emotk.errors import DataError
    from emotk.features.cache import find_caches, open_cache

    found = find_caches(path)
    if not found:
        raise DataError(f"{path}: no feature cache here (expected meta.json, or folders <kind>-<hash12>/meta.json)")
    rows = []
    for p in found:
        cache = open_cache(p)
        rows.append({**cache.status(), "config": cache.meta.get("config")})
    emit(rows, lambda r: table("feature caches", ["path", "kind", "hash", "shards", "stored", "skipped", "complete"],
                               [[x["path"], x["kind"], x["config_hash"][:12],
                                 f"{x['shards_complete']}/{x['shards_total']}", x["ids_stored"], x["ids_skipped"],
                                 x["complete"]] for x in r]))


@app.command("train-tokenizer")
def train_tokenizer(
    data: Path = typer.Option(..., "--data", "-d", help="Manifest of the training utterances."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Tokenizer file (.safetensors; a .json copy of its metadata is written beside it)."),
    space: str = typer.Option(
        "soft-hubert", "--space",
        help="Feature space NAME[:MODEL[:LAYER]]: soft-hubert, ssl:wavlm-base-plus:6, whisper-encoder, logmel, mfcc."),
    clusters: int = typer.Option(100, "--clusters", "-k", help="Number of k-means clusters K."),
    fraction: float = typer.Option(0.1, "--fraction", help="Share of utterances (seeded) used for training."),
    seed: int = typer.Option(0, "--seed", help="Seed of the utterance choice and the k-means initialisation."),
    algorithm: str = typer.Option("lloyd", "--algorithm", help="lloyd (deterministic) or minibatch (scikit-learn)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Cap on training frames (seeded subsample)."),
    option: Optional[List[str]] = typer.Option(
        None, "--option",
        help="Feature-space option KEY=VALUE, e.g. cmvn=meanvar or n_mels=40 for logmel/mfcc (repeatable)."),
    overwrite: bool = OverwriteOpt,
    root: Optional[List[str]] = RootOpt,
) -> None:
    """Train a k-means content tokenizer (S2S-ZEST: K=100 on a random 10 % of the training data)."""
    from emotk.cli.common import parse_roots
    from emotk.core.context import options
    from emotk.errors import UsageError
    from emotk.features.tokens import FeatureSpace
    from emotk.features.tokens import train_tokenizer as train

    if option:
        opts: dict = {}
        for item in option:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UsageError(f"--option: expected KEY=VALUE, got {item!r}")
            opts[key] = int(value) if value.isdigit() else value
        base = FeatureSpace.parse(space)
        space = FeatureSpace(base.name, base.model, base.layer, {**base.options, **opts})
    result = train(data, space, out, n_clusters=clusters, fraction=fraction, seed=seed, algorithm=algorithm,
                   max_train_frames=max_frames, device=options.device, overwrite=overwrite, roots=parse_roots(root))
    emit(result, lambda r: table("tokenizer", ["item", "value"], [
        ["file", r["path"]], ["feature space", r["feature_space_key"]], ["K", r["n_clusters"]], ["dim", r["dim"]],
        ["train utterances", r["num_train_utterances"]], ["train frames", r["num_train_frames"]],
        ["iterations", r["iterations"]], ["seconds", r["seconds"]]]))

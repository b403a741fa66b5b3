"""``emotk transfer``: S2S-ZEST emotion style transfer (convert, batch, train stages, bundle). Thin: options ->
one core call (emotk.models.zest; training through the task table, emotk.recipes), result on stdout.

    emotk transfer --src a.wav --ref b.wav -o out.wav --model BUNDLE [--synth world|bigvgan]
    emotk transfer --pairs pairs.jsonl --out-dir DIR --model BUNDLE [--shard i/N] [--resume]
    emotk transfer train --stage speaker|analysis|vocoder --data M.jsonl -o RUN [-c CONFIG] [--set k=v] [--resume]
    emotk transfer bundle --speaker RUN --analysis RUN [--vocoder EXPORT] -o BUNDLE
    emotk transfer augment --model BUNDLE --data M.jsonl --classes happy,sad -o DIR [--per-class 100]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from emotk.cli.common import ConfigOpt, OverwriteOpt, SetOpt, emit

app = typer.Typer(
    help="S2S-ZEST speech-to-speech emotion style transfer: convert (default), batch, train, bundle.",
    invoke_without_command=True, no_args_is_help=False,
)

TASK = "transfer.zest"
VOCODER_TASK = "transfer.vocoder"


def _device() -> str:
    """The global ``--device`` for loading a bundle (inference runs on CPU unless --device says otherwise)."""
    from emotk.core.context import options
    from emotk.core.runtime import device_name

    return device_name(options.device or "cpu")


@app.callback()
def convert(
    ctx: typer.Context,
    src: Optional[Path] = typer.Option(None, "--src", help="Source speech (content and speaker)."),
    ref: Optional[Path] = typer.Option(None, "--ref", help="Emotional reference speech."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output audio file (.wav/.flac)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model bundle folder (emotk transfer bundle)."),
    synth: Optional[str] = typer.Option(None, "--synth",
                                        help="world or bigvgan (default: the bundle's transfer.synth)."),
    f0_level: Optional[str] = typer.Option(None, "--f0-level", help="predicted (thesis) or source: rescale the "
                                           "predicted F0 by the predictor's level error on the source (default: "
                                           "the bundle's transfer.f0_level)."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="Batch mode: JSONL of {\"src\", \"ref\", \"id\"?}."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Batch mode: output folder (<id>.wav + log)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Batch mode: run shard i/N (pairs with index % N == i)."),
    resume: bool = typer.Option(False, "--resume", help="Batch mode: skip pairs already finished."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Batch mode: log bad inputs and go on."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Convert --src to the emotion of --ref (or every pair of --pairs) with a trained model bundle."""
    if ctx.invoked_subcommand is not None:
        return
    from emotk.errors import AudioError, UsageError

    if model is None:
        if src is None and pairs is None:
            typer.echo(ctx.get_help())
            raise typer.Exit(0)
        raise UsageError("--model: give the model bundle folder (built by `emotk transfer bundle`)")
    if pairs is not None:
        if src or ref or out:
            raise UsageError("batch mode (--pairs) takes --out-dir, not --src/--ref/-o")
        if out_dir is None:
            raise UsageError("--pairs needs --out-dir")
    else:
        if src is None or ref is None or out is None:
            raise UsageError("give --src, --ref and -o/--out (or --pairs with --out-dir)")
        if shard or resume or out_dir:
            raise UsageError("--shard/--resume/--out-dir only apply to batch mode (--pairs)")
    from emotk.models.zest.config import F0_LEVELS

    if f0_level is not None and f0_level not in F0_LEVELS:
        raise UsageError(f"--f0-level: {f0_level!r} is not one of {', '.join(F0_LEVELS)}")
    from emotk.core.io import check_writable
    from emotk.core.shard import parse_shard
    from emotk.models.zest import infer
    from emotk.models.zest.export import load_bundle

    shard_ = parse_shard(shard)
    if pairs is None:  # inputs first: a typo fails before seconds of model loading
        check_writable(out, overwrite)
        for what, path in (("source", src), ("reference", ref)):
            if not path.is_file():
                raise AudioError(f"{path}: {what} audio file not found" if not path.is_dir() else
                                 f"{path}: {what} is a directory, not an audio file")
    else:
        infer.check_batch(pairs, out_dir, shard=shard_, resume=resume, overwrite=overwrite)
    bundle = load_bundle(model, device=_device())
    if f0_level is not None:
        bundle.config.transfer.f0_level = f0_level
    if pairs is None:
        result = infer.transfer_files(bundle, src, ref, out, synth=synth, overwrite=overwrite)
        emit(result, lambda r: typer.echo(
            f"{r['out']}: {r['frames_before']} -> {r['frames_after']} frames, mean F0 {r['mean_f0_before']} -> "
            f"{r['mean_f0_after']} Hz, reference emotion {r['reference_emotion']} ({r['synth']})"))
        return
    result = infer.transfer_batch(bundle, pairs, out_dir, shard=shard_, resume=resume, overwrite=overwrite,
                                     synth=synth, skip_bad=skip_bad)
    emit(result, lambda r: typer.echo(
        f"shard {r['shard']}: {r['ok']} converted, {r['skipped_done']} already done, {r['error']} failed "
        f"of {r['pairs']}; log {r['log']}"))


@app.command("train")
def train(
    stage: str = typer.Option(..., "--stage", help="speaker, analysis or vocoder."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Training manifest (JSONL)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory."),
    speaker: Optional[Path] = typer.Option(None, "--speaker", help="Speaker-stage run (needed by --stage analysis)."),
    config: Optional[str] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Train one S2S-ZEST stage (speaker encoder, joint analysis models, or the BigVGAN vocoder)."""
    from emotk.cli.common import resolve_config as resolve
    from emotk.core.context import options
    from emotk.errors import UsageError
    from emotk.recipes import find_config, task_spec

    if stage not in ("speaker", "analysis", "vocoder"):
        raise UsageError(f"--stage: {stage!r} is not one of speaker, analysis, vocoder")
    file = find_config(config) if config else None
    if stage == "vocoder":  # data: a folder of .npz items from `vocoder-data`
        if data is None or not Path(data).is_dir():
            raise UsageError("--stage vocoder: --data must be a folder of vocoder items; make it with "
                             "`emotk transfer vocoder-data --model BUNDLE --data M.jsonl -o DIR`")
        spec = task_spec(VOCODER_TASK)
        resolved = resolve(spec.schema_class(), VOCODER_TASK, file, list(set_ or []))
        emit(spec.train_fn()(resolved, out, data=str(data), resume=resume, overwrite=overwrite))
        return
    overrides = list(set_ or [])
    if data is not None:
        overrides.append(f"data.manifest={json.dumps(str(data))}")
    if options.seed is not None:
        overrides += [f"train.seed={options.seed}", f"speaker_train.seed={options.seed}"]
    spec = task_spec(TASK)
    resolved = resolve(spec.schema_class(), TASK, file, overrides)
    summary = spec.train_fn()(resolved, out, stage=stage, speaker_run=str(speaker) if speaker else None,
                              resume=resume, overwrite=overwrite, argv=["emotk", *sys.argv[1:]])
    from emotk.train import distributed as dist

    if dist.is_main():
        emit(summary, lambda s: typer.echo(f"{s['stage']} stage {s['stopped']} after {s.get('steps')} steps; "
                                           f"best {s.get('best')}; run {s['run_dir']}"))


@app.command("vocoder-data")
def vocoder_data(
    model: Path = typer.Option(..., "--model", "-m", help="Model bundle folder (speaker + analysis models)."),
    data: Path = typer.Option(..., "--data", "-d", help="Manifest (JSONL) of the vocoder's training audio."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for one <id>.npz per utterance."),
    resume: bool = typer.Option(False, "--resume", help="Keep items already written."),
) -> None:
    """Write vocoder training items (tokens, F0, s, e-bar, wav) computed with a bundle's analysis models."""
    from emotk.models.zest.export import load_bundle
    from emotk.models.zest.infer import export_vocoder_items

    result = export_vocoder_items(load_bundle(model, device=_device()), data, out, resume=resume)
    emit(result, lambda r: typer.echo(f"{r['written']} items written, {r['kept']} kept, in {r['out_dir']}"))


@app.command("augment")
def augment(
    model: Path = typer.Option(..., "--model", "-m", help="Model bundle folder."),
    data: Path = typer.Option(..., "--data", "-d", help="Manifest; its training part gives sources and references."),
    classes: str = typer.Option(..., "--classes", help="Target emotion classes, comma-separated (e.g. happy,sad)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (wavs/ + manifest.jsonl)."),
    per_class: int = typer.Option(100, "--per-class", help="Utterances kept per class (top-k by emotion score)."),
    oversample: float = typer.Option(2.0, "--oversample", help="Candidates generated per kept utterance."),
    sources: Optional[str] = typer.Option(None, "--sources",
                                          help="Source classes, comma-separated (default: all others)."),
    synth: Optional[str] = typer.Option(None, "--synth", help="world or bigvgan (default: the bundle's)."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Emotion-transfer augmentation for SER: convert, score by emotion similarity, keep the top-k per class."""
    from emotk.core.context import options
    from emotk.models.zest.augment import augment as run_augment
    from emotk.models.zest.export import load_bundle

    split = lambda text: [c.strip() for c in text.split(",") if c.strip()]  # noqa: E731
    result = run_augment(load_bundle(model, device=_device()), data, split(classes), out, per_class=per_class,
                         oversample=oversample, source_classes=split(sources) if sources else None, synth=synth,
                         seed=options.seed or 0, overwrite=overwrite)
    emit(result, lambda r: typer.echo(
        f"{r['utterances']} augmented utterances -> {r['manifest']} ("
        + ", ".join(f"{c}: {v['kept']}/{v['candidates']} kept, score {v['mean_score_kept']}"
                    for c, v in r["classes"].items()) + ")"))


@app.command("bundle")
def bundle(
    speaker: Path = typer.Option(..., "--speaker", help="Speaker-stage run directory."),
    analysis: Path = typer.Option(..., "--analysis", help="Analysis-stage run directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle folder to write."),
    vocoder: Optional[Path] = typer.Option(None, "--vocoder", help="Exported BigVGAN generator folder."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Assemble an inference bundle (safetensors + JSON) from the stage runs' best checkpoints."""
    from emotk.models.zest.export import assemble_bundle

    result = assemble_bundle(speaker, analysis, out, vocoder=str(vocoder) if vocoder else None, overwrite=overwrite)
    emit(result, lambda r: typer.echo(f"bundle: {r['bundle']} (parameters {r['parameters']})"))

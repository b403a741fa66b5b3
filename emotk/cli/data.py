"""``emotk data``: import corpora, validate manifests, build folds, make the demo corpus."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from emotk.cli.common import ConfigOpt, OverwriteOpt, RootOpt, SetOpt, emit, table

app = typer.Typer(help="Corpora and manifests: prepare, validate, split, synth, merge, filter, transcribe, label.",
                  no_args_is_help=True)


@app.command("datasets")
def datasets(
    name: Optional[str] = typer.Argument(None, help="Show one importer's expected layout and options."),
) -> None:
    """List the dataset importers (or show one importer's layout and options)."""
    import importlib

    from emotk.data.prepare import IMPORTERS, get_importer

    if name is not None:
        mod = get_importer(name)
        info = {"dataset": mod.DATASET, "description": mod.DESCRIPTION, "layout": mod.LAYOUT.strip(),
                "options": dict(getattr(mod, "OPTIONS", {}))}
        emit(info, lambda i: typer.echo(
            f"{i['dataset']}: {i['description']}\n\nExpected layout:\n{i['layout']}\n\nOptions (--option KEY=VALUE):\n"
            + ("\n".join(f"  {k}: {v}" for k, v in i["options"].items()) or "  none")))
        return
    rows = []
    for key, module in IMPORTERS.items():
        mod = importlib.import_module(module)
        rows.append({"dataset": key, "description": getattr(mod, "DESCRIPTION", "")})
    emit(rows, lambda r: table("dataset importers", ["dataset", "description"],
                               [[x["dataset"], x["description"]] for x in r]))


@app.command("prepare")
def prepare(
    dataset: str = typer.Argument(..., help="Importer name (see `emotk data datasets`)."),
    root: Path = typer.Argument(..., help="Corpus folder, as distributed."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: manifest.jsonl, label_map*.json, prepare.json."),
    root_name: Optional[str] = typer.Option(None, "--root-name",
                                            help="Write paths as ${NAME}/... (portable manifests)."),
    workers: int = typer.Option(4, "--workers", "-j", help="Parallel header reads / audio extraction."),
    option: Optional[List[str]] = typer.Option(None, "--option", help="Importer option KEY=VALUE (repeatable)."),
    strict: bool = typer.Option(False, "--strict",
                                help="Fail on the first unreadable audio file instead of skipping it."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Turn a corpus folder into a manifest + label map (+ summary with official-count checks)."""
    from emotk.data.prepare import get_importer
    from emotk.data.prepare.base import PrepareOptions, write_result
    from emotk.errors import DataError, UsageError

    importer = get_importer(dataset)
    extra = {}
    known = getattr(importer, "OPTIONS", {})
    for item in option or []:
        if "=" not in item:
            raise UsageError(f"--option {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        if key not in known:
            from emotk.core.suggest import did_you_mean

            raise UsageError(f"--option {key}: unknown option for {dataset}{did_you_mean(key, known)}; "
                             f"known: {', '.join(known) or 'none'}")
        extra[key] = value
    if not root.is_dir():
        raise DataError(f"{root}: corpus folder not found")
    out.mkdir(parents=True, exist_ok=True)
    opts = PrepareOptions(out_dir=out, root_name=root_name, workers=workers, skip_bad=not strict, extra=extra)
    if (out / "manifest.jsonl").exists() and not overwrite:
        from emotk.errors import OutputExistsError

        raise OutputExistsError(f"{out / 'manifest.jsonl'} already exists; pass --overwrite to replace it")
    result = importer.prepare(root, opts)
    summary = write_result(result, opts, overwrite=overwrite)

    def human(s: dict) -> None:
        rows = [["utterances", s["utterances"]], ["hours", s["hours"]], ["speakers", s["speakers"]],
                ["manifest", s["manifest"]], ["sha256", s["manifest_sha256"][:16]], ["warnings", len(s["warnings"])]]
        for key, counts in s["counts"].items():
            rows.append([key, ", ".join(f"{k}={v}" for k, v in counts.items())])
        table(f"{s['dataset']}", ["", ""], rows)

    emit(summary, human)


@app.command("validate")
def validate(
    manifest: Path = typer.Argument(..., help="Manifest (JSONL) to check."),
    label_map: Optional[Path] = typer.Option(
        None, "--label-map", help="Label map JSON (default: label_map.json beside the manifest, if any)."),
    label_field: str = typer.Option("emotion", "--label-field", help="Field checked against the label map."),
    root: Optional[List[str]] = RootOpt,
    sr: int = typer.Option(16000, "--sr", help="Target sample rate; other rates are warnings."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Only check the manifest text, not the audio files."),
    no_decode: bool = typer.Option(False, "--no-decode",
                                   help="Check audio headers only (faster; misses NaN/corrupt data)."),
    workers: int = typer.Option(4, "--workers", "-j"),
) -> None:
    """Check schema, duplicate ids, audio files (exist, decode, rates, durations, NaN), labels. Exit 1 on errors."""
    from emotk.cli.common import parse_roots
    from emotk.data.labels import LabelMap
    from emotk.data.validate import validate_manifest

    lm = None
    if label_map is not None:
        lm = LabelMap.load(label_map)
    elif (manifest.parent / "label_map.json").is_file():
        lm = LabelMap.load(manifest.parent / "label_map.json")
    report = validate_manifest(
        manifest, roots=parse_roots(root), label_map=lm, label_field=label_field, check_audio=not no_audio,
        decode=not no_decode, target_sr=sr, workers=workers,
    )

    def human(rep) -> None:
        for issue in rep.issues:
            typer.echo(issue.format(rep.manifest))
        status = "ok" if rep.ok else "FAILED"
        text_only = (" (all text-only: no audio)" if rep.text_only == rep.utterances
                     else f" ({rep.text_only} text-only: no audio)") if rep.text_only else ""
        typer.echo(f"{rep.manifest}: {status}: {rep.utterances} utterances{text_only}, {rep.seconds / 3600:.3f} h, "
                   f"{len(rep.errors)} errors, {len(rep.warnings)} warnings"
                   + (f", label map '{lm.name}'" if lm else ""))

    emit(report.to_dict() if _json() else report, human)
    if not report.ok:
        raise typer.Exit(1)


def _json() -> bool:
    from emotk.core.context import options

    return options.json


@app.command("split")
def split(
    manifest: Path = typer.Argument(..., help="Manifest to split."),
    out: Path = typer.Option(..., "--out", "-o", help="Protocol JSON to write (or a folder with --write-manifests)."),
    protocol: Optional[str] = typer.Option(
        None, "--protocol", "-p", help="Apply a committed protocol (name or file; manifest-split = the records' "
                                "own split field) instead of building folds."),
    folds: Optional[int] = typer.Option(None, "--folds", "-k", help="Number of folds (default 5; named "
                                        "--valid-speakers/--test-speakers make one fold)."),
    by: str = typer.Option("speaker", "--by", help="Manifest field that must not cross splits."),
    seed: int = typer.Option(0, "--seed", help="Shuffle seed (the fold rule sorts values first)."),
    n_valid: Optional[int] = typer.Option(None, "--valid", help="Units in each validation set (0: no validation; "
                                          "default: one less than a test group, or 0 with --valid-holdout)."),
    n_test: Optional[int] = typer.Option(None, "--test", help="Units in each test set (default: n/folds; 0: no "
                                         "test split)."),
    valid_speakers: Optional[str] = typer.Option(
        None, "--valid-speakers", "--valid-units", help="Comma-separated --by values for validation (one fold; "
        "the rest train unless --test/--test-speakers)."),
    test_speakers: Optional[str] = typer.Option(
        None, "--test-speakers", "--test-units", help="Comma-separated --by values for test (one fold)."),
    valid_holdout: Optional[float] = typer.Option(
        None, "--valid-holdout", help="Also move this fraction (0-1) of each fold's training records to validation, "
        "whole --holdout-by groups at a time (the protocol's valid_rule 'holdout')."),
    holdout_by: str = typer.Option("text", "--holdout-by", help="Field whose values never cross the --valid-holdout "
                                   "line (text: validation sentences unseen in training)."),
    name: Optional[str] = typer.Option(None, "--name", help="Protocol name (default: <dataset>-<by>-<k>fold-seed<s>, "
                                       "or <dataset>-<by>-split for one fold)."),
    write_manifests: bool = typer.Option(False, "--write-manifests", help="Write OUT/<fold>/{train,valid,test}.jsonl."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Accept a --protocol file without its 'sha256' key "
                                   "(loudly; a wrong sha256 is still an error). Without --write-manifests, the "
                                   "protocol is saved to OUT with its sha256: this signs a hand-written file."),
    root: Optional[List[str]] = RootOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Deterministic speaker-independent folds for any manifest (sorted values + seed), one fold with named
    validation/test speakers, or apply a committed protocol.

    Examples: `--folds 2 --valid 0` (two speakers: 1 train / 1 test each way); `--valid-speakers A,B` (train on
    everyone else, no test); `--test 0 --valid-holdout 0.1` (no test; 10% of the sentences for validation).
    """
    from emotk.cli.common import parse_roots
    from emotk.core.io import check_writable
    from emotk.data import protocols as P
    from emotk.data.manifest import Manifest
    from emotk.errors import UsageError

    def names(text: Optional[str]) -> list[str]:
        return [v.strip() for v in (text or "").split(",") if v.strip()]

    m = Manifest.load(manifest, roots=parse_roots(root))
    if protocol:
        given = [o for o, v in (("--folds", folds), ("--valid", n_valid), ("--test", n_test),
                                ("--valid-speakers", valid_speakers), ("--test-speakers", test_speakers),
                                ("--valid-holdout", valid_holdout), ("--name", name)) if v is not None]
        if given:
            raise UsageError(f"--protocol applies a protocol as it is; {given[0]} only applies when building one")
        proto = P.find_protocol(protocol, verify=not no_verify)
    else:
        if no_verify:
            raise UsageError("--no-verify only applies with --protocol FILE")
        if valid_speakers is not None and not names(valid_speakers):
            raise UsageError("--valid-speakers: give comma-separated values (or --valid 0 for no validation)")
        if test_speakers is not None and not names(test_speakers):
            raise UsageError("--test-speakers: give comma-separated values (or --test 0 for no test split)")
        proto = P.make_folds(m, n_folds=folds, unit=by, seed=seed, n_valid=n_valid, n_test=n_test, name=name,
                             valid_values=names(valid_speakers), test_values=names(test_speakers),
                             holdout=valid_holdout, holdout_by=holdout_by)
    if write_manifests:
        if out.exists() and any(out.iterdir()) and not overwrite:
            from emotk.errors import OutputExistsError

            raise OutputExistsError(f"{out} exists and is not empty; pass --overwrite to replace it")
        summary = P.write_split_manifests(m, proto, out)
    else:
        check_writable(out, overwrite)
        proto.save(out)
        summary = {"protocol": str(out), "name": proto.name, "sha256": proto.sha256, "unit": proto.unit,
                   "folds": {f: {k: len(v) for k, v in proto.assign(m, f).items()} for f in proto.fold_names}}
        if len(proto.folds) == 1:
            summary["units"] = {k: v for k, v in proto.folds[0].to_dict().items() if k != "name"}
        if proto.valid_rule is not None:
            summary["valid_rule"] = proto.valid_rule
    emit(summary)


@app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for the demo corpus."),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    workers: int = typer.Option(2, "--workers", "-j"),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Make the built-in demo corpus (espeak-ng speakers x emotion styles, parallel sentences, dialogues)."""
    from emotk.cli.common import resolve_config as resolve
    from emotk.data.synth import SynthConfig, synthesize

    resolved = resolve(SynthConfig, "data.synth", config, set_ or [])
    summary = synthesize(out, resolved.config, overwrite=overwrite, workers=workers)
    emit(summary)


@app.command("merge")
def merge(
    manifests: List[Path] = typer.Argument(..., help="Manifests to concatenate."),
    out: Path = typer.Option(..., "--out", "-o"),
    root: Optional[List[str]] = RootOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Concatenate manifests (paths made absolute; duplicate ids are an error)."""
    from emotk.cli.common import parse_roots
    from emotk.core.io import check_writable
    from emotk.data.manifest import Manifest
    from emotk.data.manifest import merge as merge_manifests

    roots = parse_roots(root)
    merged = merge_manifests(Manifest.load(p, roots=roots) for p in manifests)
    check_writable(out, overwrite)
    sha = merged.save(out)
    emit({"manifest": str(out), "utterances": len(merged), "sha256": sha})


@app.command("filter")
def filter_(
    manifest: Path = typer.Argument(...),
    out: Path = typer.Option(..., "--out", "-o"),
    where: Optional[List[str]] = typer.Option(None, "--where", help="FIELD=V1,V2 (repeatable; all must hold)."),
    min_duration: Optional[float] = typer.Option(None, "--min-duration"),
    max_duration: Optional[float] = typer.Option(None, "--max-duration"),
    root: Optional[List[str]] = RootOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Keep the records that match every condition (paths made absolute)."""
    from emotk.cli.common import parse_roots
    from emotk.core.io import check_writable
    from emotk.data.manifest import Manifest
    from emotk.errors import UsageError

    m = Manifest.load(manifest, roots=parse_roots(root))
    conditions = {}
    for item in where or []:
        if "=" not in item:
            raise UsageError(f"--where {item!r}: expected FIELD=VALUE[,VALUE...]")
        key, values = item.split("=", 1)
        conditions[key] = set(values.split(","))

    def keep(rec: dict) -> bool:
        for key, values in conditions.items():
            if str(rec.get(key)) not in values:
                return False
        d = rec.get("duration")
        if min_duration is not None and (d is None or d < min_duration):
            return False
        if max_duration is not None and (d is None or d > max_duration):
            return False
        return True

    kept = m.filter(keep).with_absolute_paths()
    check_writable(out, overwrite)
    sha = kept.save(out)
    emit({"manifest": str(out), "utterances": len(kept), "dropped": len(m) - len(kept), "sha256": sha})


@app.command("transcribe")
def transcribe(
    manifest: Path = typer.Argument(..., help="Manifest (JSONL) to transcribe."),
    out: Path = typer.Option(..., "--out", "-o", help="Output manifest with asr_text (+ asr_words)."),
    backend: str = typer.Option("faster-whisper", "--backend", help="faster-whisper, openai-whisper or hf-whisper."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Model path or registry name (faster-whisper default: the bundled tiny.en)."),
    shard: Optional[str] = typer.Option(None, "--shard",
                                        help="Process part I of N (0-based), e.g. 3/16 for a SLURM array task."),
    resume: bool = typer.Option(True, "--resume/--no-resume",
                                help="Continue an interrupted run from its progress file."),
    overwrite: bool = OverwriteOpt,
    batch_size: int = typer.Option(8, "--batch-size", "-b",
                                   help="Utterances per batch (progress is saved after each)."),
    language: Optional[str] = typer.Option("en", "--language", help="Spoken language (multilingual models)."),
    beam_size: int = typer.Option(5, "--beam-size", help="Beam width."),
    words: bool = typer.Option(True, "--words/--no-words", help="Word timestamps (asr_words)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable audio (listed) instead of failing."),
    root: Optional[List[str]] = RootOpt,
) -> None:
    """Transcribe a manifest with Whisper: adds asr_text and asr_words; resumable; --shard I/N for arrays."""
    from emotk.cli.common import parse_roots
    from emotk.core.context import options
    from emotk.core.shard import parse_shard
    from emotk.features.asr import transcribe_manifest

    backend_options = {"language": language, "beam_size": beam_size, "word_timestamps": words}
    if backend == "hf-whisper":
        backend_options["batch_size"] = batch_size
    summary = transcribe_manifest(manifest, out, backend, model, device=options.device, batch_size=batch_size,
                                  resume=resume, overwrite=overwrite, shard=parse_shard(shard), skip_bad=skip_bad,
                                  roots=parse_roots(root), **backend_options)

    def human(s: dict) -> None:
        rows = [["backend", s["backend"]], ["model", s["model"]], ["shard", s["shard"] or "all"],
                ["transcribed", s["transcribed"]], ["already done", s["already_done"]], ["skipped", len(s["skipped"])],
                ["audio seconds", s["audio_seconds"]], ["real-time factor", s["real_time_factor"]],
                ["output written", s["out"] if s["complete"] else f"no (progress in {s['progress_file']})"]]
        if "wer_vs_text" in s:
            wer = s["wer_vs_text"]
            rows.append(["WER vs text", f"{100 * wer['wer']:.2f} % ({wer['utterances']} utts)"])
        table("transcribe", ["item", "value"], rows)

    emit(summary, human)


# ==== `emotk data label`: LLM sentiment pseudo-labels (METHODS.md §2; core: emotk.data.label) ====================
@app.command("label")
def label_command(
    manifest: Path = typer.Argument(..., help="Manifest (JSONL) whose records hold the transcripts."),
    out: Path = typer.Option(..., "--out", "-o",
                             help="Output manifest: the records plus sentiment_llm (+ raw answer)."),
    labeller: str = typer.Option(..., "--labeller", "-l", help="hf (local causal LM), openai (OpenAI-compatible "
                                 "endpoint) or file (labels made elsewhere)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="hf: HF folder or emotk model name; openai: the "
                                        "endpoint's model name (e.g. gpt-3.5-turbo)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="openai: e.g. https://api.openai.com/v1 or "
                                           "http://localhost:8000 (vLLM, llama.cpp)."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="openai: NAME of the environment variable "
                                    "holding the API key (the key itself is never an option)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="file: CSV (id,label) or JSONL ({id, label})."),
    field: str = typer.Option("asr_text", "--field", help="Transcript field: asr_text (thesis), text or auto."),
    rate: Optional[float] = typer.Option(None, "--rate", help="openai: at most this many requests per second."),
    concurrency: int = typer.Option(1, "--concurrency", help="openai: requests in flight at once."),
    max_retries: int = typer.Option(5, "--max-retries", help="openai: retries after 429 / 5xx / time-outs."),
    timeout: float = typer.Option(60.0, "--timeout", help="openai: seconds per request."),
    prompt_file: Optional[Path] = typer.Option(None, "--prompt-file", help="Replace the thesis prompt (a text file; "
                                               "{text} in it marks where the transcript goes)."),
    batch_size: int = typer.Option(16, "--batch-size", "-b", help="Items per labeller call (hf: per generate)."),
    dtype: str = typer.Option("auto", "--dtype", help="hf: weights' dtype: auto, float32, bfloat16 or float16."),
    shard: Optional[str] = typer.Option(None, "--shard",
                                        help="Label part I of N (0-based) of the sorted ids, e.g. 3/16."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Response cache (JSONL); default OUT's folder/"
                                         ".emotk-llm-cache.jsonl."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the response cache."),
    resume: bool = typer.Option(False, "--resume", help="Keep the answers in the journal OUT.progress.jsonl "
                                "(OUT.progress.shard-I-of-N.jsonl with --shard); ask only the rest."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Add LLM sentiment pseudo-labels (negative / neutral / positive) to a manifest (thesis prompt)."""
    from emotk.core.context import options
    from emotk.core.log import Progress
    from emotk.core.shard import parse_shard
    from emotk.data.label import THESIS_PROMPT
    from emotk.data.label.backends import make_labeller
    from emotk.data.label.run import label_manifest
    from emotk.errors import DataError

    shard_t = parse_shard(shard)
    prompt = THESIS_PROMPT
    if prompt_file is not None:
        try:
            prompt = prompt_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise DataError(f"{prompt_file}: cannot read the prompt ({e.strerror})") from None
    extra = {}
    if labeller == "openai":
        extra = {"concurrency": concurrency, "max_retries": max_retries, "timeout": timeout}
    elif labeller == "hf":
        extra = {"batch_size": batch_size, "torch_dtype": dtype}
    device = options.device or "cpu"
    if device == "auto":
        device = "cpu"
    lab = make_labeller(labeller, model=model, base_url=base_url, api_key_env=api_key_env, labels=labels, rate=rate,
                        prompt=prompt, device=device, **extra)
    with Progress(None, f"label ({labeller})", unit="records") as progress:
        summary = label_manifest(manifest, out, lab, field=field, resume=resume, shard=shard_t, overwrite=overwrite,
                                 batch_size=batch_size, cache=not no_cache, cache_path=cache,
                                 on_progress=progress.advance)

    def human(s: dict) -> None:
        rows = [["records", s["records"]], *[[f"  {k}", v] for k, v in s["labels"].items()],
                ["unparseable answers", s["unparseable"]], ["no answer (retry with --resume)", s["failed"]],
                ["empty transcripts", s["empty_text"]], ["from progress file", s["resumed"]],
                ["cache hits", s["cache_hits"]], ["requests", s["requests"]]]
        table(f"data label — {s['labeller']['labeller']} {s['labeller'].get('model', '')}", ["", "count"], rows)
        typer.echo(f"output: {s['output']}")

    emit(summary, human)

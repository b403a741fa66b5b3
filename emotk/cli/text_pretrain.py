"""Command functions of LLM-supervised text pre-training (METHODS.md §2), registered by the command groups:

* ``label_command`` -> ``emotk data label``   (``emotk.cli.data``:     ``app.command("label")(label_command)``)
* ``pretrain_text_command`` -> ``emotk pretrain text`` (``emotk.cli.pretrain``: ``app.command("text")(...)``)

Thin: parse options, call one core function (:mod:`emotk.models.text`), print its result. No heavy imports here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emotk.cli.common import OverwriteOpt, emit, table

TASK = "pretrain.text"
DEFAULT_CONFIG = "pretrain/text"


def label_command(
    manifest: Path = typer.Argument(..., help="Manifest (JSONL) whose records hold the transcripts."),
    out: Path = typer.Option(..., "--out", "-o", help="Output manifest: the records plus sentiment_llm (+ raw answer)."),
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
    shard: Optional[str] = typer.Option(None, "--shard", help="Label part I of N (0-based) of the sorted ids, e.g. 3/16."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Response cache (JSONL); default OUT's folder/"
                                         ".emotk-llm-cache.jsonl."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the response cache."),
    resume: bool = typer.Option(False, "--resume", help="Keep the answers in OUT.progress.jsonl; ask only the rest."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Add LLM sentiment pseudo-labels (negative / neutral / positive) to a manifest (thesis prompt)."""
    from emotk.core.context import options
    from emotk.core.log import Progress
    from emotk.errors import DataError
    from emotk.models.text.labeller import THESIS_PROMPT, label_manifest, make_labeller

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
    with Progress(None, f"label ({labeller})") as progress:
        summary = label_manifest(manifest, out, lab, field=field, resume=resume, shard=shard, overwrite=overwrite,
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

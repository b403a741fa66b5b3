"""Sentiment pseudo-labels for transcripts from an LLM (METHODS.md §2) — the core of ``emotk data label``.

The thesis prompts GPT-3.5 Turbo (or Mixtral-8x7B) with :data:`THESIS_PROMPT` for every Whisper transcript of
MSP-Podcast and keeps the answer as a 3-class pseudo-label (negative / neutral / positive). Three pluggable
labellers produce the raw answers:

* :class:`HFCausalLMLabeller` — a local Hugging Face causal LM (a folder or an ``emotk.hub`` name), greedy
  decoding of a few tokens, the model's chat template when it has one, batched with left padding;
* :class:`OpenAICompatibleLabeller` — any ``/v1/chat/completions`` endpoint (OpenAI, vLLM, llama.cpp,
  TGI ...) over ``urllib``; the API key is read only from an environment variable; retries with exponential
  backoff on 429 / 5xx / time-outs, a requests-per-second limit, optional concurrency;
* :class:`FileLabeller` — labels already made elsewhere, from a CSV or JSONL file of ``id`` -> label.

:func:`normalise_answer` maps free-form answers ("Positive.", "The sentiment is negative", "neutral sentiment")
onto the three classes and returns None for anything else; such answers are counted as unparseable and kept
raw, never fatal. :func:`label_manifest` runs a labeller over a manifest with an append-only progress file
(``--resume`` never asks twice for a finished item), an on-disk response cache keyed by
``sha256(model + prompt + text)`` (JSONL), ``--shard i/N`` and an atomic final write.
"""

from __future__ import annotations

import abc
import csv
import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from emotk.core.log import get_logger
from emotk.errors import DataError, EmotkError, OutputExistsError, UsageError

log = get_logger("label")

SENTIMENT_CLASSES = ("negative", "neutral", "positive")
THESIS_PROMPT = (
    "You are a sentiment classification bot. Given the [sentence], classify as positive, negative or neutral "
    "sentiment. Please give the sentiment and no extra text as output."
)
LABEL_FIELD = "sentiment_llm"
RAW_FIELD = "sentiment_llm_raw"
ERROR_FIELD = "sentiment_llm_error"
PROGRESS_SUFFIX = ".progress.jsonl"
DEFAULT_CACHE_NAME = ".emotk-llm-cache.jsonl"

_WORD_RE = re.compile(r"[a-z]+")
_NEGATORS = {"not", "no", "non", "nor", "neither", "never", "t"}  # "t" is what is left of "isn't" / "wasn't"


def normalise_answer(answer: Any) -> str | None:
    """A free-form LLM answer -> one of :data:`SENTIMENT_CLASSES`, or None when it names no single class.

    Case and punctuation are ignored ("Positive." -> positive, "The sentiment is negative" -> negative,
    "neutral sentiment" -> neutral). A negated class does not count ("Negative (not positive)" -> negative);
    answers naming several classes ("positive, negative or neutral") or only a negated one ("not positive") are
    unparseable.
    """
    if not isinstance(answer, str):
        return None
    words = _WORD_RE.findall(answer.lower())
    hits = [(i, w) for i, w in enumerate(words) if w in SENTIMENT_CLASSES]
    if not hits:
        return None

    def negated(i: int) -> bool:
        return i > 0 and words[i - 1] in _NEGATORS

    if any(negated(i) and w == hits[0][1] for i, w in hits):
        return None
    kept = {w for i, w in hits if not negated(i)}
    return kept.pop() if len(kept) == 1 else None


def build_messages(prompt: str, text: str) -> list[dict[str, str]]:
    """Chat messages for one transcript: the prompt as system message and the transcript as user message;
    a prompt holding ``{text}`` becomes one user message with the transcript put in its place."""
    if "{text}" in prompt:
        return [{"role": "user", "content": prompt.replace("{text}", text)}]
    return [{"role": "system", "content": prompt}, {"role": "user", "content": text}]


def cache_key(model: str, prompt: str, text: str) -> str:
    """sha256 hex of model + prompt + text (separated by a unit separator) — the response-cache key."""
    return hashlib.sha256("\x1f".join((model, prompt, text)).encode("utf-8")).hexdigest()


@dataclass
class Answer:
    """One labeller answer: ``raw`` text (None when no answer came back) and ``error`` (why not)."""

    raw: str | None
    error: str | None = None


class FatalLabelError(EmotkError):
    """A failure that would repeat for every item (bad key, wrong URL, missing model): stops the run."""


# ---- labellers -----------------------------------------------------------------------------------------------------
class Labeller(abc.ABC):
    """Base of the pluggable labellers: ``answer(items)`` returns one :class:`Answer` per ``(id, text)`` item.

    ``model_id`` and ``prompt`` identify the answers (progress file header, response-cache key); ``cacheable``
    says whether answers may be cached; ``requests`` counts requests/forward calls actually made.
    """

    kind = "base"
    cacheable = False
    model_id = ""
    prompt = ""

    def __init__(self) -> None:
        self.requests = 0
        self._lock = threading.Lock()

    def identity(self) -> dict[str, Any]:
        """What makes two runs' answers interchangeable (checked when resuming)."""
        return {"labeller": self.kind, "model": self.model_id, "prompt": self.prompt}

    @abc.abstractmethod
    def answer(self, items: Sequence[tuple[str, str]]) -> list[Answer]:
        """One Answer per (id, text) item, in order."""

    def _count(self, n: int = 1) -> None:
        with self._lock:
            self.requests += n


class FileLabeller(Labeller):
    """Labels from a file: CSV with a header (``id`` + ``label``/``sentiment_llm``/``sentiment`` column) or
    JSONL objects with the same keys. Values are normalised like LLM answers; ids absent from the file fail."""

    kind = "file"
    _LABEL_KEYS = ("label", LABEL_FIELD, "sentiment")

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        from emotk.core.io import sha256_file

        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"label file not found: {self.path}")
        self.table = self._read()
        self.model_id = f"file:{sha256_file(self.path)[:16]}"

    def identity(self) -> dict[str, Any]:
        return {"labeller": self.kind, "path": str(self.path), "model": self.model_id}

    def _read(self) -> dict[str, str]:
        table: dict[str, str] = {}
        rows: list[tuple[int, dict]] = []
        if self.path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
            from emotk.data.manifest import iter_jsonl

            for lineno, obj, err in iter_jsonl(self.path):
                if err is not None or not isinstance(obj, dict):
                    raise DataError(f"{self.path}:{lineno}: {err or 'expected a JSON object'}")
                rows.append((lineno, obj))
        else:
            with open(self.path, encoding="utf-8-sig", newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames is None or "id" not in reader.fieldnames:
                    raise DataError(f"{self.path}:1: CSV header must have an 'id' column (got {reader.fieldnames})")
                rows = [(n + 2, row) for n, row in enumerate(reader)]
        for lineno, row in rows:
            key = next((k for k in self._LABEL_KEYS if k in row), None)
            if "id" not in row or key is None:
                raise DataError(f"{self.path}:{lineno}: need keys 'id' and one of {', '.join(self._LABEL_KEYS)}")
            uid, value = str(row["id"]), row[key]
            value = "" if value is None else str(value)
            if uid in table and table[uid] != value:
                raise DataError(f"{self.path}:{lineno}: id '{uid}' has two different labels")
            table[uid] = value
        return table

    def answer(self, items: Sequence[tuple[str, str]]) -> list[Answer]:
        out = []
        for uid, _text in items:
            if uid in self.table:
                out.append(Answer(self.table[uid]))
            else:
                out.append(Answer(None, f"no label for id '{uid}' in {self.path.name}"))
        return out


class RateLimiter:
    """At most ``rate`` acquisitions per second over all threads (None or 0 = no limit)."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


class OpenAICompatibleLabeller(Labeller):
    """An OpenAI-compatible chat-completions endpoint (urllib; no extra dependency).

    Args:
        base_url: e.g. ``https://api.openai.com/v1`` or ``http://localhost:8000`` (``/v1/chat/completions`` is
            appended as needed; a URL already ending in ``/chat/completions`` is used as is).
        model: the endpoint's model name (``gpt-3.5-turbo`` in the thesis).
        api_key_env: name of the environment variable holding the key; sent as ``Authorization: Bearer``.
            When the variable is unset no header is sent (local servers need none).
        rate: requests per second at most (None = unlimited). concurrency: requests in flight at once.
        max_retries: extra attempts after a 429, a 5xx, a time-out or a connection error; waits
            ``backoff * 2**attempt`` seconds (capped at ``max_backoff``; a Retry-After header wins).
        timeout: seconds per request. max_tokens / temperature: generation settings (greedy by default).
    """

    kind = "openai"
    cacheable = True

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", prompt: str = THESIS_PROMPT,
                 rate: float | None = None, concurrency: int = 1, max_retries: int = 5, backoff: float = 1.0,
                 max_backoff: float = 60.0, timeout: float = 60.0, max_tokens: int = 8, temperature: float = 0.0):
        super().__init__()
        if not base_url:
            raise UsageError("the openai labeller needs --base-url (e.g. https://api.openai.com/v1)")
        if not model:
            raise UsageError("the openai labeller needs --model (the endpoint's model name, e.g. gpt-3.5-turbo)")
        if rate is not None and rate <= 0:
            raise UsageError(f"--rate must be > 0 requests per second, got {rate}")
        self.url = self.endpoint(base_url)
        self.model_id = model
        self.prompt = prompt
        self.api_key_env = api_key_env
        key = os.environ.get(api_key_env) if api_key_env else None
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        else:
            log.info("label: $%s is not set; sending requests without an API key", api_key_env)
        self.limiter = RateLimiter(rate)
        self.concurrency = max(1, int(concurrency))
        self.max_retries = max(0, int(max_retries))
        self.backoff, self.max_backoff, self.timeout = float(backoff), float(max_backoff), float(timeout)
        self.max_tokens, self.temperature = int(max_tokens), float(temperature)
        self.retries = 0

    @staticmethod
    def endpoint(base_url: str) -> str:
        """Base URL -> the chat-completions URL."""
        url = base_url.rstrip("/")
        if url.endswith("/chat/completions"):
            return url
        return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")

    def identity(self) -> dict[str, Any]:
        return {"labeller": self.kind, "url": self.url, "model": self.model_id, "prompt": self.prompt}

    def answer(self, items: Sequence[tuple[str, str]]) -> list[Answer]:
        if self.concurrency == 1 or len(items) <= 1:
            return [self.ask(text) for _uid, text in items]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            return list(pool.map(lambda item: self.ask(item[1]), items))

    def _wait(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.max_backoff, self.backoff * (2 ** attempt))
        if retry_after:
            try:
                delay = min(self.max_backoff, max(0.0, float(retry_after)))
            except ValueError:
                pass
        with self._lock:
            self.retries += 1
        time.sleep(delay)

    def ask(self, text: str) -> Answer:
        """One transcript -> its :class:`Answer` (retries inside; never raises except :class:`FatalLabelError`)."""
        import socket
        import urllib.error
        import urllib.request

        body = json.dumps({"model": self.model_id, "messages": build_messages(self.prompt, text),
                           "temperature": self.temperature, "max_tokens": self.max_tokens}).encode("utf-8")
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            self.limiter.wait()
            request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
            self._count()
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = response.read()
            except urllib.error.HTTPError as e:
                detail = _short(e.read() if e.fp is not None else b"")
                if e.code in (401, 403):
                    raise FatalLabelError(f"{self.url}: HTTP {e.code} — the API key in ${self.api_key_env} was "
                                          f"refused ({detail})") from None
                if e.code == 404:
                    raise FatalLabelError(f"{self.url}: HTTP 404 — check --base-url and --model "
                                          f"'{self.model_id}' ({detail})") from None
                last = f"HTTP {e.code}: {detail}"
                if e.code == 429 or e.code >= 500:
                    if attempt < self.max_retries:
                        self._wait(attempt, e.headers.get("Retry-After") if e.headers else None)
                    continue
                return Answer(None, last)  # another 4xx: this item's request is wrong, retrying will not help
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
                if attempt < self.max_retries:
                    self._wait(attempt, None)
                continue
            try:
                data = json.loads(payload)
                content = data["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                return Answer(None, f"unexpected response: {_short(payload)}")
            return Answer(content if isinstance(content, str) else json.dumps(content))
        return Answer(None, f"gave up after {self.max_retries + 1} attempts ({last})")


def _short(data: bytes | str, n: int = 200) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return " ".join(text.split())[:n]


class HFCausalLMLabeller(Labeller):
    """A local Hugging Face causal LM: greedy generation of ``max_new_tokens`` tokens per transcript.

    Args:
        model: an HF folder, or an ``emotk.hub`` name (``tiny-llama``, ``llama-3.1-8b``, ``qwen2.5-7b`` ...).
        device: torch device string. batch_size: transcripts per ``generate`` call (left padding).
        torch_dtype: weights' dtype, a torch dtype or its name (``bfloat16`` for 7B+ models on GPU); None = the
            checkpoint's default.
        prompt: the instruction (the thesis prompt by default); the chat template is used when the tokenizer has
            one (a template that rejects a system message gets prompt and transcript in one user message),
            else a plain ``prompt / Sentence: ... / Sentiment:`` text.
    """

    kind = "hf"
    cacheable = True

    def __init__(self, model: str | os.PathLike, device: str = "cpu", prompt: str = THESIS_PROMPT,
                 max_new_tokens: int = 8, batch_size: int = 8, torch_dtype: Any = None):
        super().__init__()
        if not model:
            raise UsageError("the hf labeller needs --model (an HF folder or an emotk model name)")
        self.model_id = str(model)
        self.prompt = prompt
        self.device = device
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = max(1, int(batch_size))
        self.model, self.tokenizer = self._load(model, device, torch_dtype)
        tok = self.tokenizer
        tok.padding_side = "left"
        tok.truncation_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        limit = int(getattr(self.model.config, "max_position_embeddings", 0) or 4096)
        self.max_input = max(8, limit - self.max_new_tokens)

    @staticmethod
    def _load(model: str | os.PathLike, device: str, torch_dtype: Any):
        from emotk.compat import ensure_torchaudio_importable

        ensure_torchaudio_importable()
        path = Path(os.path.expanduser(str(model)))
        if isinstance(torch_dtype, str):
            import torch

            if torch_dtype in ("", "auto"):
                torch_dtype = None
            elif not isinstance(getattr(torch, torch_dtype, None), torch.dtype):
                raise UsageError(f"--dtype {torch_dtype!r}: expected float32, bfloat16 or float16")
            else:
                torch_dtype = getattr(torch, torch_dtype)
        kwargs = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
        if path.exists():
            from transformers import AutoModelForCausalLM, AutoTokenizer

            try:
                lm = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, **kwargs)
                tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            except (OSError, ValueError) as e:
                raise FatalLabelError(f"{path}: not a usable causal LM folder ({str(e).splitlines()[0][:160]})") from None
            return lm.to(device).eval(), tok
        from emotk import hub

        loaded = hub.load(str(model), device=device, **kwargs)
        if loaded.tokenizer is None or not hasattr(loaded.model, "generate"):
            raise FatalLabelError(f"model '{model}' is not a causal LM with a tokenizer")
        return loaded.model.eval(), loaded.tokenizer

    def render(self, text: str) -> tuple[str, bool]:
        """The model input for one transcript -> (text, whether the tokenizer must add special tokens)."""
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            messages = build_messages(self.prompt, text)
            try:
                return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), False
            except Exception:  # e.g. Mistral/Mixtral templates refuse a system role
                merged = [{"role": "user", "content": "\n\n".join(m["content"] for m in messages)}]
                return tok.apply_chat_template(merged, tokenize=False, add_generation_prompt=True), False
        if "{text}" in self.prompt:
            return self.prompt.replace("{text}", text) + "\nSentiment:", True
        return f"{self.prompt}\n\nSentence: {text}\nSentiment:", True

    def answer(self, items: Sequence[tuple[str, str]]) -> list[Answer]:
        import torch

        out: list[Answer] = []
        rendered = [self.render(text) for _uid, text in items]
        for s in range(0, len(rendered), self.batch_size):
            chunk = rendered[s: s + self.batch_size]
            enc = self.tokenizer([r for r, _ in chunk], padding=True, truncation=True, max_length=self.max_input,
                                 add_special_tokens=chunk[0][1], return_tensors="pt").to(self.device)
            self._count()
            with torch.inference_mode():
                generated = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                                pad_token_id=self.tokenizer.pad_token_id)
            new = generated[:, enc["input_ids"].shape[1]:]
            out.extend(Answer(t.strip()) for t in self.tokenizer.batch_decode(new, skip_special_tokens=True))
        return out


def make_labeller(kind: str, *, model: str | None = None, base_url: str | None = None,
                  api_key_env: str = "OPENAI_API_KEY", labels: str | os.PathLike | None = None,
                  rate: float | None = None, prompt: str | None = None, device: str = "cpu",
                  **options: Any) -> Labeller:
    """Build a labeller by kind: ``hf`` (needs ``model``), ``openai`` (``base_url`` + ``model``) or ``file``
    (``labels``). Extra ``options`` go to the class (e.g. ``concurrency``, ``max_retries``, ``batch_size``)."""
    prompt = prompt or THESIS_PROMPT
    if kind == "hf":
        return HFCausalLMLabeller(model or "", device=device, prompt=prompt, **options)
    if kind == "openai":
        return OpenAICompatibleLabeller(base_url or "", model or "", api_key_env=api_key_env, prompt=prompt,
                                        rate=rate, **options)
    if kind == "file":
        if not labels:
            raise UsageError("the file labeller needs --labels FILE (CSV or JSONL of id -> label)")
        return FileLabeller(labels)
    raise UsageError(f"--labeller must be hf, openai or file, got {kind!r}")


# ---- the response cache ---------------------------------------------------------------------------------------------
class ResponseCache:
    """Append-only JSONL cache ``{"key", "model", "answer"}``; a later line for the same key wins.

    Safe to share between runs and shards (each line is written with one append); unreadable lines (a
    crash in the middle of a write) are ignored.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.entries: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.path.is_file():
            with open(self.path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        obj = json.loads(line)
                        self.entries[str(obj["key"])] = str(obj["answer"])
                    except (ValueError, KeyError, TypeError):
                        continue

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def put(self, key: str, model: str, answer: str) -> None:
        with self._lock:
            self.entries[key] = answer
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"key": key, "model": model, "answer": answer}, ensure_ascii=False) + "\n")


# ---- labelling a manifest ---------------------------------------------------------------------------------------------
def progress_path(out: str | os.PathLike) -> Path:
    """The append-only progress file of output ``out``: ``<out>.progress.jsonl``."""
    out = Path(out)
    return out.with_name(out.name + PROGRESS_SUFFIX)


def _shard_indices(ids: list[str], shard: tuple[int, int] | None) -> set[str]:
    if shard is None:
        return set(ids)
    i, n = shard
    return {uid for j, uid in enumerate(sorted(ids)) if j % n == i}


def _record_text(rec: dict[str, Any], field: str, where: str) -> str:
    from emotk.features.text import record_text

    return record_text(rec, field, where)


def _portable_path(rec: dict[str, Any], base: Path, out_dir: Path) -> dict[str, Any]:
    """Keep a record's audio path valid when the output manifest lives in another folder than the input."""
    path = rec.get("path")
    if not isinstance(path, str) or path.startswith("${") or Path(path).is_absolute():
        return rec
    if base.resolve() == out_dir.resolve():
        return rec
    return {**rec, "path": str((base / path).resolve())}


def _read_progress(path: Path, header: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Finished entries (id -> entry) of a progress file made with the same labeller and field."""
    done: dict[str, dict[str, Any]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline()
        try:
            stored = json.loads(first)
        except ValueError:
            stored = None
        if not isinstance(stored, dict) or stored.get("emotk_label_progress") != 1:
            raise DataError(f"{path}:1: not an emotk label progress file; delete it or pass --overwrite")
        for key in ("labeller", "field"):
            if stored.get(key) != header[key]:
                raise UsageError(f"{path}: made with another {key} ({stored.get(key)!r}); cannot resume — pass "
                                 "--overwrite to start again")
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:  # a half-written last line after a crash
                continue
            if isinstance(entry, dict) and "id" in entry and not entry.get("error"):
                done[str(entry["id"])] = entry
    return done


def label_manifest(manifest: Any, out: str | os.PathLike, labeller: Labeller, field: str = "asr_text",
                   resume: bool = True, shard: str | tuple[int, int] | None = None, overwrite: bool = False,
                   batch_size: int = 16, cache: bool = True, cache_path: str | os.PathLike | None = None,
                   max_consecutive_failures: int = 50,
                   on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Label every record's transcript and write the manifest with ``sentiment_llm`` added.

    Args:
        manifest: a :class:`~emotk.data.manifest.Manifest` or a manifest path.
        out: output manifest (JSONL). Every record of the (shard's) input is written, in input order, with
            ``sentiment_llm`` (negative | neutral | positive | null), ``sentiment_llm_raw`` (the answer as given)
            and, for items that got no answer, ``sentiment_llm_error``. Relative audio paths are made absolute
            when ``out`` lives in another folder.
        labeller: a :class:`Labeller`. field: ``asr_text`` (thesis), ``text`` or ``auto``.
        resume: reuse the finished entries of ``<out>.progress.jsonl`` (items that failed are asked again).
            Without resume, an existing ``out`` needs ``overwrite``.
        shard: ``"i/N"``: label only the ids at positions ``j % N == i`` of the sorted ids.
        batch_size: items per labeller call. cache / cache_path: the response cache (default
            ``<out folder>/.emotk-llm-cache.jsonl``) — answers for the same model, prompt and text are reused.
        max_consecutive_failures: stop (progress kept; rerun with resume) after this many items in a row got no
            answer — an endpoint that is down should not burn through a whole corpus.
        on_progress: called with the number of items finished after each batch.

    Returns a summary: counts per label, ``unparseable`` (answers naming no class), ``failed`` (no answer),
    ``empty_text``, ``resumed`` (taken from the progress file), ``cache_hits``, ``requests``, hashes and paths.
    Raises DataError for records without the text field (before any request), :class:`FatalLabelError` for
    failures that would repeat for every item.
    """
    from emotk.core.shard import parse_shard
    from emotk.data.manifest import Manifest

    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    out = Path(out)
    where = str(m.path) if m.path else "manifest"
    shard_t = parse_shard(shard)
    if field not in ("asr_text", "text", "auto"):
        raise UsageError(f"--field must be asr_text, text or auto, got {field!r}")
    if out.exists() and not (resume or overwrite):
        raise OutputExistsError(f"{out} already exists; pass --resume to continue or --overwrite to replace it")
    if m.path is not None and out.resolve() == Path(m.path).resolve():
        raise UsageError(f"{out}: the output must not be the input manifest")
    wanted = _shard_indices(m.ids, shard_t)
    selected = [(k, r) for k, r in enumerate(m.records) if r["id"] in wanted]
    texts: dict[str, str] = {}
    for k, rec in selected:
        texts[rec["id"]] = _record_text(rec, field, f"{where}:{m.lineno(k)}")

    header = {"emotk_label_progress": 1, "labeller": labeller.identity(), "field": field,
              "shard": f"{shard_t[0]}/{shard_t[1]}" if shard_t else None}
    prog = progress_path(out)
    done: dict[str, dict[str, Any]] = {}
    if resume and not overwrite and prog.is_file():
        done = _read_progress(prog, header)
        done = {uid: e for uid, e in done.items() if uid in texts}
    else:
        prog.parent.mkdir(parents=True, exist_ok=True)
        with open(prog, "w", encoding="utf-8") as f:
            f.write(json.dumps(header, ensure_ascii=False) + "\n")
    resumed = len(done)
    store = None
    if cache and labeller.cacheable:
        store = ResponseCache(cache_path or out.parent / DEFAULT_CACHE_NAME)

    todo = [rec["id"] for _k, rec in selected if rec["id"] not in done]
    stats = {"cache_hits": 0, "empty_text": 0}
    requests_before = labeller.requests
    consecutive = 0
    if todo:
        log.info("label: %d item(s) to label with %s %s (%d already done)", len(todo), labeller.kind,
                 labeller.model_id, resumed)
    with open(prog, "a", encoding="utf-8") as progress:
        for s in range(0, len(todo), max(1, batch_size)):
            batch = todo[s: s + max(1, batch_size)]
            entries: dict[str, dict[str, Any]] = {}
            ask: list[tuple[str, str]] = []
            for uid in batch:
                text = texts[uid]
                if not text.strip():
                    stats["empty_text"] += 1
                    entries[uid] = {"id": uid, "label": None, "raw": None, "note": "empty text"}
                    continue
                hit = store.get(cache_key(labeller.model_id, labeller.prompt, text)) if store else None
                if hit is not None:
                    stats["cache_hits"] += 1
                    entries[uid] = {"id": uid, "label": normalise_answer(hit), "raw": hit, "cached": True}
                else:
                    ask.append((uid, text))
            if ask:
                try:
                    answers = labeller.answer(ask)
                except FatalLabelError:
                    raise
                except Exception as e:  # a long run never dies on one bad batch; the items are retried on resume
                    log.warning("label: a batch of %d failed (%s: %s)", len(ask), type(e).__name__, e)
                    answers = [Answer(None, f"{type(e).__name__}: {e}") for _ in ask]
                if len(answers) != len(ask):
                    raise EmotkError(f"labeller {labeller.kind} returned {len(answers)} answers for {len(ask)} items")
                for (uid, text), ans in zip(ask, answers):
                    if ans.error is not None or ans.raw is None:
                        entries[uid] = {"id": uid, "label": None, "raw": None, "error": ans.error or "no answer"}
                        continue
                    entries[uid] = {"id": uid, "label": normalise_answer(ans.raw), "raw": ans.raw}
                    if store is not None:
                        store.put(cache_key(labeller.model_id, labeller.prompt, text), labeller.model_id, ans.raw)
            for uid in batch:
                entry = entries[uid]
                progress.write(json.dumps(entry, ensure_ascii=False) + "\n")
                done[uid] = entry
                consecutive = consecutive + 1 if entry.get("error") else 0
            progress.flush()
            if on_progress is not None:
                on_progress(len(batch))
            if max_consecutive_failures and consecutive >= max_consecutive_failures:
                last = next(e["error"] for e in reversed(list(entries.values())) if e.get("error"))
                raise EmotkError(f"label: {consecutive} items in a row got no answer (last: {last}); progress is "
                                 f"kept in {prog} — fix the cause and rerun with --resume")

    base = m.base_dir
    records, counts = [], {c: 0 for c in SENTIMENT_CLASSES}
    unparseable, failed = [], []
    for _k, rec in selected:
        entry = done[rec["id"]]
        new = _portable_path(dict(rec), base, out.parent)
        new[LABEL_FIELD] = entry.get("label")
        new[RAW_FIELD] = entry.get("raw")
        new.pop(ERROR_FIELD, None)
        if entry.get("error"):
            new[ERROR_FIELD] = entry["error"]
            failed.append(rec["id"])
        elif entry.get("label") in counts:
            counts[entry["label"]] += 1
        elif entry.get("raw") is not None:
            unparseable.append(rec["id"])
        records.append(new)
    out_sha = Manifest.from_records(records).save(out)
    summary = {
        "manifest": str(m.path) if m.path else None, "manifest_sha256": m.sha256,
        "output": str(out), "output_sha256": out_sha, "progress": str(prog),
        "cache": str(store.path) if store is not None else None,
        "labeller": labeller.identity(), "field": field, "shard": header["shard"],
        "records": len(records), "labels": counts, "labelled": sum(counts.values()),
        "unparseable": len(unparseable), "failed": len(failed), "empty_text": sum(
            1 for _k, r in selected if done[r["id"]].get("note") == "empty text"),
        "resumed": resumed, "cache_hits": stats["cache_hits"], "requests": labeller.requests - requests_before,
        "unparseable_examples": [{"id": uid, "raw": done[uid].get("raw")} for uid in unparseable[:5]],
        "failed_ids": failed[:20],
    }
    if isinstance(labeller, OpenAICompatibleLabeller):
        summary["retries"] = labeller.retries
    if failed:
        log.warning("label: %d item(s) got no answer (listed in %s as %s); rerun with --resume to retry them",
                    len(failed), out, ERROR_FIELD)
    return summary


__all__ = ["SENTIMENT_CLASSES", "THESIS_PROMPT", "LABEL_FIELD", "RAW_FIELD", "ERROR_FIELD", "Answer", "Labeller",
           "FileLabeller", "OpenAICompatibleLabeller", "HFCausalLMLabeller", "RateLimiter", "ResponseCache",
           "FatalLabelError", "build_messages", "cache_key", "label_manifest", "make_labeller", "normalise_answer",
           "progress_path"]

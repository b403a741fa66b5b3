"""The labellers of ``emotk data label``: one :class:`Answer` per ``(id, text)`` item.

* :class:`HFCausalLMLabeller` — a local Hugging Face causal LM (a folder or an ``emotk.hub`` name), greedy
  decoding of a few tokens, the model's chat template when it has one, batched with left padding;
* :class:`OpenAICompatibleLabeller` — any ``/v1/chat/completions`` endpoint (OpenAI, vLLM, llama.cpp,
  TGI ...) over ``urllib``; the API key is read only from an environment variable; retries with exponential
  backoff on 429 / 5xx / time-outs, a requests-per-second limit, optional concurrency;
* :class:`FileLabeller` — labels already made elsewhere, from a CSV or JSONL file of ``id`` -> label.

:func:`normalize_answer` maps free-form answers ("Positive.", "The sentiment is negative", "neutral sentiment")
onto the three classes and returns None for anything else.
"""

from __future__ import annotations

import abc
import csv
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from emotk.core.log import get_logger
from emotk.data.label import LABEL_FIELD, SENTIMENT_CLASSES, THESIS_PROMPT
from emotk.errors import DataError, EmotkError, UsageError

log = get_logger("label")

_WORD_RE = re.compile(r"[a-z]+")
_NEGATORS = {"not", "no", "non", "nor", "neither", "never", "t"}  # "t": what is left of "isn't" / "wasn't"


def normalize_answer(answer: Any) -> str | None:
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

    ``model_id`` and ``prompt`` identify the answers (journal header, response-cache key); ``cacheable``
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
                raise FatalLabelError(f"{path}: not a usable causal LM folder "
                                      f"({str(e).splitlines()[0][:160]})") from None
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

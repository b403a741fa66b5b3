"""Measures for emotion-style-transfer evaluation (thesis 5.x "Metrics"), each a pluggable backend.

Every backend takes 16 kHz mono float32 numpy waveforms and has a ``.name`` that results record, so a
number always says which model produced it:

* speaker similarity -- :class:`SpeakerEmbedder` (Resemblyzer, the thesis's Spk-Sim) + :func:`cosine`;
* emotion similarity -- :func:`make_emotion_embedder`: ``zest:BUNDLE_DIR`` (the S2S-ZEST emotion encoder's
  utterance embedding e-bar), ``ser:EXPORT_DIR`` (the class posteriors of an emotk SER classifier, e.g. one
  trained on the evaluation corpus's other speakers), ``upstream:NAME[:LAYER]`` (masked time-mean of one hidden
  layer of an SSL model), ``emotion2vec[:PATH|:NAME]`` (the thesis's Emo-Sim: the mean of emotion2vec's frame
  features, :class:`Emotion2vecEmbedder`; bare ``emotion2vec`` takes the first local copy of emotion2vec+ base,
  then emotion2vec base);
* intelligibility -- :class:`Transcriber` (Whisper through :mod:`emotk.features.asr`) and :func:`wer_cer`
  (corpus-level WER and CER with jiwer after the English normaliser);
* speaking rate -- :func:`word_rate` (words per second over the span of the timed words) and :func:`pearson`
  over (reference, converted) pairs;
* robustness -- :func:`add_noise` (exact SNR, coloured or recorded noise) and :class:`NoiseBank`;
* tables -- :func:`emotion_matrix` (mean similarity per (row emotion, column emotion) cell, the any-to-any 4x4).

Heavy packages (torch, transformers, resemblyzer, jiwer, faster-whisper) are imported inside the functions
that need them.
"""

from __future__ import annotations

import abc
import hashlib
import math
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from emotk.core.audio import SAMPLE_RATE
from emotk.errors import AudioError, DataError, ModelNotFoundError, UsageError
from emotk.eval.systems import EmotionEmbedder
from emotk.features.speaker import SpeakerEmbedder, check_wav, cosine  # noqa: F401 (re-exported)

NOISE_COLORS = ("white", "pink", "brown")
# Spectral slope of each colour: power ~ 1 / f**alpha.
_COLOR_ALPHA = {"white": 0.0, "pink": 1.0, "brown": 2.0}
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".au", ".mp3")


def _key_hash(key: str, seed: int = 0) -> int:
    """A stable 64-bit integer from a key string (sha256; independent of PYTHONHASHSEED)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()[:8], "big")


# speaker similarity: emotk.features.speaker.SpeakerEmbedder (shared with the S2S-ZEST speaker front-end)


# ---------------------------------------------------------------------------------------------------------------
# emotion similarity
# ---------------------------------------------------------------------------------------------------------------
class BaseEmotionEmbedder(abc.ABC):
    """Base of the emotion-embedding backends of this module (an :class:`emotk.eval.systems.EmotionEmbedder`):
    ``embed(wav) -> (D,)``, ``embed_batch(wavs) -> (N, D)``,
    ``similarity(a, b)`` (cosine of the embeddings) and a ``name`` for the results. Subclasses implement
    ``embed``; those that batch better also override ``embed_batch``."""

    name = "emotion-embedder"

    @abc.abstractmethod
    def embed(self, wav: Any) -> np.ndarray:
        """16 kHz mono float waveform (S,) -> utterance embedding (D,) float32."""

    def embed_batch(self, wavs: Sequence[Any]) -> np.ndarray:
        """N waveforms -> (N, D) float32 (default: one at a time)."""
        return np.stack([self.embed(w) for w in wavs])

    def similarity(self, a: Any, b: Any) -> float:
        return cosine(self.embed(a), self.embed(b))


class UpstreamEmotionEmbedder(BaseEmotionEmbedder):
    """Masked mean over time of one hidden layer of an SSL upstream (:class:`emotk.features.upstream.Upstream`).

    ``upstream``: a registry name for ``Upstream.from_hub`` (``wavlm-base-plus``, ``tiny-wavlm``, ``care:RUN``...)
    or an already built Upstream (then ``model_name`` names it). ``layer``: index into the upstream's layers
    (0 = the CNN/input embedding; negative from the end; None = last). Name: ``upstream:NAME:layerK``.
    """

    def __init__(self, upstream: Any, layer: int | None = None, device: str = "cpu", path: str | None = None,
                 model_name: str | None = None, batch_size: int = 8) -> None:
        from emotk.features.upstream import Upstream

        if isinstance(upstream, str):
            model_name = model_name or upstream
            upstream = Upstream.from_hub(upstream, path=path, device=device)
        elif not isinstance(upstream, Upstream):
            upstream = Upstream.from_model(upstream).to(device)
        self.upstream = upstream.eval()
        n = int(self.upstream.num_layers)
        k = n - 1 if layer is None else int(layer)
        if not -n <= k < n:
            raise UsageError(f"layer {layer} does not exist: upstream {model_name or type(upstream).__name__} has "
                             f"{n} layers (0..{n - 1}, or negative from the end)")
        self.layer = k % n
        self.batch_size = max(1, int(batch_size))
        self.name = f"upstream:{model_name or type(upstream).__name__}:layer{self.layer}"

    def embed(self, wav: Any) -> np.ndarray:
        """16 kHz waveform (S,) -> (D,) float32 masked time-mean of the chosen layer."""
        return self.embed_batch([wav])[0]

    def embed_batch(self, wavs: Sequence[Any]) -> np.ndarray:
        """N 16 kHz waveforms -> (N, D) float32 masked time-means of the chosen layer (padding excluded)."""
        import torch

        from emotk.nn.pooling import masked_mean

        items = [check_wav(w, f"emotion-similarity input {i}") for i, w in enumerate(wavs)]
        out = []
        for s in range(0, len(items), self.batch_size):
            with torch.inference_mode():
                res = self.upstream(items[s : s + self.batch_size], layers=[self.layer])
            mean = masked_mean(res.hidden[:, 0].float(), res.mask.bool())  # (B, D), padding frames excluded
            out.append(mean.cpu().numpy().astype(np.float32))
        if not out:
            return np.zeros((0, int(self.upstream.dim)), np.float32)
        return np.concatenate(out)


# What a bare "emotion2vec" resolves to, first found locally wins (registry names, emotk.hub).
EMOTION2VEC_MODELS = ("emotion2vec-plus-base", "emotion2vec-base")


def locate_emotion2vec() -> str | None:
    """The first of :data:`EMOTION2VEC_MODELS` with a complete local copy (``hub.locate``: the file system only,
    never the network), or None."""
    from emotk import hub

    for name in EMOTION2VEC_MODELS:
        try:
            if hub.locate(name) is not None:
                return name
        except Exception:  # an unusable cache entry: try the next one
            continue
    return None


class Emotion2vecEmbedder(BaseEmotionEmbedder):
    """emotion2vec's utterance embedding, the mean of its frame features over the utterance (FunASR's
    ``granularity="utterance"`` output): the thesis's Emo-Sim model.

    ``model``: a loaded :mod:`emotk.hub.emotion2vec` ``Emotion2vec``; ``label``: the registry name or path it came
    from. Utterances are batched longest first (``batch_size`` per forward) with padding masked, so an
    utterance's embedding does not depend on its batch. Name: ``emotion2vec:<label>:<sha12>``, the digest of the
    weights file (of the weights themselves for an in-memory model).
    """

    def __init__(self, model: Any, label: str, batch_size: int = 8) -> None:
        from emotk.hub.emotion2vec import state_digest

        self.model = model.eval()
        self.batch_size = max(1, int(batch_size))
        weights = getattr(model, "checkpoint_path", None)
        if weights is not None:
            from emotk.core.io import sha256_file

            digest = sha256_file(weights)
        else:
            digest = state_digest(model)
        self.name = f"emotion2vec:{label}:{digest[:12]}"

    def embed(self, wav: Any) -> np.ndarray:
        """16 kHz waveform (S >= 400 samples for the standard extractor) -> (D,) float32 (D = 768 for base)."""
        return self.embed_batch([wav])[0]

    def embed_batch(self, wavs: Sequence[Any]) -> np.ndarray:
        """N 16 kHz waveforms -> (N, D) float32 utterance embeddings, in input order."""
        import torch

        shortest = self.model.config.receptive_field
        items = [check_wav(w, f"emotion-similarity input {i}", min_samples=shortest) for i, w in enumerate(wavs)]
        out = np.zeros((len(items), self.model.config.embed_dim), np.float32)
        order = sorted(range(len(items)), key=lambda i: -items[i].size)
        device = next(self.model.parameters()).device
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            lengths = [items[i].size for i in idx]
            batch = np.zeros((len(idx), lengths[0]), np.float32)
            for row, i in enumerate(idx):
                batch[row, : items[i].size] = items[i]
            with torch.inference_mode():
                emb = self.model.embed(torch.from_numpy(batch).to(device), torch.tensor(lengths, device=device))
            out[idx] = emb.float().cpu().numpy()
        return out


def _emotion2vec_embedder(text: str, rest: str, device: str, options: Mapping[str, Any]) -> Emotion2vecEmbedder:
    """``emotion2vec`` / ``emotion2vec:PATH`` / ``emotion2vec:NAME`` -> :class:`Emotion2vecEmbedder`."""
    from emotk import hub
    from emotk.hub.registry import list_specs

    unknown = sorted(set(options) - {"batch_size"})
    if unknown:
        raise UsageError(f"emotion embedder 'emotion2vec' takes no option '{unknown[0]}' (only batch_size)")
    names = [s.name for s in list_specs("emotion2vec")]
    if not rest:
        rest = locate_emotion2vec() or ""
        if not rest:
            raise ModelNotFoundError(
                f"emotion embedder {text!r}: no local copy of {' or '.join(EMOTION2VEC_MODELS)} (`emotk models path "
                f"{EMOTION2VEC_MODELS[0]}` shows where it is looked for; fetch it with `emotk models download "
                f"{EMOTION2VEC_MODELS[0]}` where a network exists); or give 'emotion2vec:PATH', 'zest:BUNDLE_DIR' or "
                "'upstream:NAME[:LAYER]'")
    path = Path(os.path.expanduser(rest))
    if path.exists():
        from emotk.hub.emotion2vec import load_emotion2vec

        return Emotion2vecEmbedder(load_emotion2vec(path, device=device), str(path), **options)
    if rest in names:
        return Emotion2vecEmbedder(hub.load(rest, device=device).model, rest, **options)
    raise ModelNotFoundError(f"emotion embedder {text!r}: {rest} is neither an existing file or folder nor an "
                             f"emotion2vec model name ({', '.join(names)})")


def _parse_upstream_spec(rest: str) -> tuple[str, int | None]:
    """``NAME[:LAYER]`` -> (NAME, LAYER); LAYER is an integer (``8``, ``-1``) or ``layer8``."""
    head, sep, tail = rest.rpartition(":")
    if sep:
        t = tail[5:] if tail.startswith("layer") else tail
        if head and re.fullmatch(r"-?\d+", t):
            return head, int(t)
    return rest, None


EMOTION_EMBEDDERS = ("zest:BUNDLE_DIR", "ser:EXPORT_DIR", "upstream:NAME[:LAYER]", "emotion2vec[:PATH|:NAME]")


def make_emotion_embedder(spec: Any, device: str = "cpu", **options: Any) -> EmotionEmbedder:
    """Build the emotion-embedding backend for Emo-Sim.

    spec: ``"zest:BUNDLE_DIR"`` (S2S-ZEST emotion encoder of a bundle), ``"ser:EXPORT_DIR"`` (class posteriors of
    an emotk SER classifier, :func:`emotk.models.ser.infer.load_emotion_embedder`), ``"upstream:NAME[:LAYER]"``
    (SSL layer mean; default the last layer), ``"emotion2vec"`` (the first local copy of :data:`EMOTION2VEC_MODELS`),
    ``"emotion2vec:PATH"`` (a FunASR folder or a fairseq / state-dict ``.pt``), ``"emotion2vec:NAME"`` (a registry
    name such as ``emotion2vec-base`` or ``tiny-emotion2vec``; ``emotion2vec-base`` alone works too), an already
    loaded ZEST bundle object, or an :class:`EmotionEmbedder` (returned as is). ``options`` go to
    :class:`UpstreamEmotionEmbedder` (``path``, ``batch_size``) or :class:`Emotion2vecEmbedder` (``batch_size``).
    Returns an object with ``name`` and ``embed``. Raises ModelNotFoundError (one line) when emotion2vec is not
    available locally.
    """
    if isinstance(spec, EmotionEmbedder):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        if hasattr(spec, "analysis") and hasattr(spec, "info"):  # a loaded S2S-ZEST bundle
            from emotk.models.zest.infer import ZestEmotionEmbedder

            return ZestEmotionEmbedder(spec)
        raise UsageError(f"emotion embedder: expected one of {', '.join(EMOTION_EMBEDDERS)} or a loaded bundle, "
                         f"got {type(spec).__name__}")
    text = str(spec).strip()
    if (Path(os.path.expanduser(text)) / "bundle.json").is_file():  # a bundle folder given without "zest:"
        text = f"zest:{text}"
    kind, _, rest = text.partition(":")
    if kind == "emotion2vec":
        return _emotion2vec_embedder(text, rest, device, options)
    if kind.startswith("emotion2vec") and not rest:  # a registry name on its own, e.g. "emotion2vec-base"
        return _emotion2vec_embedder(text, kind, device, options)
    if kind == "zest":
        if not rest:
            raise UsageError("emotion embedder 'zest:' needs a bundle folder: zest:BUNDLE_DIR")
        if options:
            raise UsageError(f"emotion embedder 'zest:' takes no option '{sorted(options)[0]}'")
        from emotk.models.zest.infer import load_emotion_embedder

        return load_emotion_embedder(rest, device=device)
    if kind == "ser":
        if not rest:
            raise UsageError("emotion embedder 'ser:' needs an SER export folder: ser:RUN_DIR/export")
        if options:
            raise UsageError(f"emotion embedder 'ser:' takes no option '{sorted(options)[0]}'")
        from emotk.models.ser.infer import load_emotion_embedder as load_ser_embedder

        return load_ser_embedder(Path(os.path.expanduser(rest)), device=device)
    if kind == "upstream":
        if not rest:
            raise UsageError("emotion embedder 'upstream:' needs a model name: upstream:NAME[:LAYER]")
        name, layer = _parse_upstream_spec(rest)
        return UpstreamEmotionEmbedder(name, layer=layer, device=device, **options)
    raise UsageError(f"unknown emotion embedder {text!r}; choose one of: {', '.join(EMOTION_EMBEDDERS)}")


# ---------------------------------------------------------------------------------------------------------------
# ASR, WER and CER
# ---------------------------------------------------------------------------------------------------------------
def _normalizer_label(normalize: bool) -> str:
    from emotk.features.asr import _normalizer_name

    return f"{_normalizer_name(normalize)}-normaliser" if normalize else "no-normaliser"


class Transcriber:
    """Whisper transcripts with word timings for WER/CER and speaking rate.

    backend: ``faster-whisper`` (default; with no ``model`` the bundled tiny.en CTranslate2 model, offline),
    ``openai-whisper`` (a local ``.pt``) or ``hf-whisper`` (a local HF folder); ``model``: path or registry
    name; ``options``: see :func:`emotk.features.asr.make_backend`. ``asr``: an already built backend object
    (anything with ``transcribe(wavs)``, ``name`` and ``model_id``). Name:
    ``<backend>:<model>+<normaliser>``, e.g. ``faster-whisper:whisper-tiny.en-ct2+whisper-english-normaliser``.
    """

    def __init__(self, backend: str = "faster-whisper", model: str | os.PathLike | None = None, device: str = "cpu",
                 normalize: bool = True, asr: Any = None, **options: Any) -> None:
        if asr is None:
            from emotk.features.asr import make_backend

            options.setdefault("word_timestamps", True)
            asr = make_backend(backend, model, device=device, **options)
        self.asr = asr
        self.backend = getattr(asr, "name", backend)
        self.model_id = str(getattr(asr, "model_id", model))
        self.normalize = bool(normalize)
        self.name = f"{self.backend}:{self.model_id}+{_normalizer_label(self.normalize)}"

    def transcribe(self, wavs: Sequence[Any]) -> list[dict[str, Any]]:
        """N 16 kHz waveforms -> N dicts ``{"text": str, "words": [{"word", "start", "end"}] | None}``
        (times in seconds from the start of each waveform)."""
        items = [check_wav(w, f"ASR input {i}") for i, w in enumerate(wavs)]
        out = self.asr.transcribe(items) if items else []
        if len(out) != len(items):
            raise DataError(f"ASR backend {self.backend} returned {len(out)} results for {len(items)} inputs")
        return [{"text": str(r.get("text", "")), "words": r.get("words")} for r in out]

    def transcribe_one(self, wav: Any) -> dict[str, Any]:
        """One waveform -> ``{"text", "words"}``."""
        return self.transcribe([wav])[0]


def wer_cer(references: Sequence[str], hypotheses: Sequence[str], normalize: bool = True) -> dict[str, Any]:
    """Corpus-level WER and CER (jiwer) of hypotheses against references, after the English normaliser.

    references / hypotheses: equal-length lists of strings. Pairs whose normalised reference is empty are left
    out of both rates. Returns ``{"wer", "cer", "substitutions", "deletions", "insertions", "hits",
    "ref_words", "char_substitutions", "char_deletions", "char_insertions", "char_hits", "ref_chars",
    "utterances", "empty_references", "normalizer"}``; rates are fractions (0.05 = 5 %). CER counts every
    character of the normalised text, spaces included (jiwer's convention). When no reference has a word left
    (e.g. a few pairs whose transcripts are all fillers) there is nothing to score: ``{"wer": None, "cer": None,
    "utterances": 0, "empty_references": N}``.
    """
    import jiwer

    from emotk.features.asr import normalize_english, word_error_rate

    if len(references) != len(hypotheses):
        raise DataError(f"WER: {len(references)} references but {len(hypotheses)} hypotheses")
    refs, hyps = [], []
    for r, h in zip(references, hypotheses):
        r2 = normalize_english(r) if normalize else (r or "").strip()
        if r2:
            refs.append(r2)
            hyps.append(normalize_english(h) if normalize else (h or "").strip())
    if not refs:
        return {"wer": None, "cer": None, "utterances": 0, "empty_references": len(references)}
    out = word_error_rate(references, hypotheses, normalize=normalize)
    chars = jiwer.process_characters(refs, hyps)
    out.update({
        "cer": float(chars.cer), "char_substitutions": int(chars.substitutions),
        "char_deletions": int(chars.deletions), "char_insertions": int(chars.insertions),
        "char_hits": int(chars.hits), "ref_chars": int(chars.hits + chars.substitutions + chars.deletions),
    })
    return out


def utterance_error_rates(reference: str, hypothesis: str, normalize: bool = True) -> dict[str, float] | None:
    """WER and CER of one pair (for per-pair records) -> ``{"wer", "cer"}``; None when the normalised
    reference is empty."""
    from emotk.features.asr import normalize_english

    ref = normalize_english(reference) if normalize else (reference or "").strip()
    if not ref:
        return None
    r = wer_cer([reference], [hypothesis], normalize=normalize)
    return {"wer": r["wer"], "cer": r["cer"]}


# ---------------------------------------------------------------------------------------------------------------
# speaking rate
# ---------------------------------------------------------------------------------------------------------------
def _times(word: Any) -> tuple[float | None, float | None]:
    if isinstance(word, Mapping):
        return word.get("start"), word.get("end")
    if isinstance(word, (tuple, list)) and len(word) >= 2:
        return (word[0], word[1]) if len(word) == 2 else (word[1], word[2])
    return getattr(word, "start", None), getattr(word, "end", None)


def word_rate(words: Iterable[Any] | None) -> float | None:
    """Speaking rate in words per second: number of timed words / (last word end - first word start).

    words: ASR word timings -- dicts ``{"word", "start", "end"}`` (``asr_words``), ``(start, end)`` or
    ``(word, start, end)`` tuples, or objects with ``start``/``end`` (seconds). Words without both times are
    ignored. Returns None for fewer than 2 timed words or a span <= 0.
    """
    if words is None:
        return None
    starts, ends = [], []
    for w in words:
        s, e = _times(w)
        if s is None or e is None:
            continue
        s, e = float(s), float(e)
        if not (math.isfinite(s) and math.isfinite(e)):
            continue
        starts.append(s)
        ends.append(e)
    if len(starts) < 2:
        return None
    span = max(ends) - min(starts)
    if span <= 0:
        return None
    return len(starts) / span


def paired_pearson(x: Sequence[float | None], y: Sequence[float | None],
                   min_pairs: int = 3) -> tuple[float | None, int]:
    """Pearson correlation (:func:`emotk.metrics.pearson`) over pairs, ignoring pairs where either value is None or
    not finite.

    x, y: equal-length sequences. Returns ``(r, n)`` with n the number of valid pairs; r is None when
    n < ``min_pairs`` or a series has zero variance.
    """
    if len(x) != len(y):
        raise DataError(f"pearson: {len(x)} x values but {len(y)} y values")
    keep = [(float(a), float(b)) for a, b in zip(x, y)
            if a is not None and b is not None and math.isfinite(float(a)) and math.isfinite(float(b))]
    n = len(keep)
    if n < max(2, min_pairs):
        return None, n
    from emotk.metrics import pearson as _pearson

    arr = np.asarray(keep, dtype=np.float64)
    r = _pearson(arr[:, 0], arr[:, 1])
    return (None if not math.isfinite(r) else float(r)), n


def speaking_rate_pcc(reference_words: Sequence[Any], converted_words: Sequence[Any]) -> dict[str, Any]:
    """Word speaking-rate PCC between references and converted outputs (thesis: Pearson over pairs).

    reference_words / converted_words: per pair, the word timings of each side (see :func:`word_rate`).
    Returns ``{"pearson": r | None, "pairs": valid pairs, "pairs_total": N, "reference_rates": [N],
    "converted_rates": [N]}`` (rates in words/s, None where undefined).
    """
    if len(reference_words) != len(converted_words):
        raise DataError(f"speaking rate: {len(reference_words)} references but {len(converted_words)} outputs")
    ref = [word_rate(w) for w in reference_words]
    conv = [word_rate(w) for w in converted_words]
    r, n = paired_pearson(ref, conv)
    return {"pearson": r, "pairs": n, "pairs_total": len(ref), "reference_rates": ref, "converted_rates": conv}


# ---------------------------------------------------------------------------------------------------------------
# additive noise
# ---------------------------------------------------------------------------------------------------------------
def coloured_noise(length: int, color: str = "white", seed: int = 0) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**alpha (white 0, pink 1, brown 2), no DC, unit RMS.

    Returns float64 (length,); deterministic for a seed.
    """
    if color not in _COLOR_ALPHA:
        raise UsageError(f"unknown noise colour {color!r}; choose one of {', '.join(NOISE_COLORS)}")
    if length < 1:
        raise UsageError(f"noise length must be >= 1 sample, got {length}")
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(length)
    alpha = _COLOR_ALPHA[color]
    if alpha == 0.0 or length < 4:
        noise = white - white.mean()
    else:
        spec = np.fft.rfft(white)
        f = np.arange(spec.size, dtype=np.float64)
        shape = np.zeros_like(f)
        shape[1:] = f[1:] ** (-alpha / 2.0)  # amplitude ~ f^(-alpha/2) -> power ~ f^-alpha
        noise = np.fft.irfft(spec * shape, n=length)
    rms = float(np.sqrt(np.mean(noise**2)))
    if rms == 0.0:
        noise = white
        rms = float(np.sqrt(np.mean(noise**2))) or 1.0
    return noise / rms


def _fit_length(noise: np.ndarray, length: int, offset: int = 0) -> np.ndarray:
    """Loop ``noise`` from ``offset`` (modulo its length) and crop it to ``length`` samples."""
    idx = (np.arange(length) + int(offset)) % noise.size
    return noise[idx]


def add_noise(wav: Any, snr_db: float, noise: Any = None, color: str = "white", seed: int = 0,
              offset: int = 0) -> np.ndarray:
    """Add noise at an exact signal-to-noise ratio.

    wav: (S,) 16 kHz float. snr_db: target SNR in dB, powers measured over the whole signal and the whole
    (fitted) noise. noise: (M,) float noise, looped / cropped to S samples starting at ``offset``; None ->
    generated ``color`` noise (white | pink | brown) seeded by ``seed``. Returns float32 (S,); not clipped
    (values may exceed [-1, 1] at low SNR; writing PCM clips them). Raises AudioError for silent inputs.
    """
    x = check_wav(wav, "noise input").astype(np.float64)
    if not math.isfinite(float(snr_db)):
        raise UsageError(f"SNR must be a finite number of dB, got {snr_db}")
    p_signal = float(np.mean(x**2))
    if p_signal == 0.0:
        raise AudioError("noise input: the waveform is all zeros, so an SNR is undefined")
    if noise is None:
        n = coloured_noise(x.size, color, seed)
    else:
        n = _fit_length(check_wav(noise, "noise signal").astype(np.float64), x.size, offset)
    p_noise = float(np.mean(n**2))
    if p_noise == 0.0:
        raise AudioError("noise signal: the noise is all zeros over the utterance")
    scale = math.sqrt(p_signal / (p_noise * 10.0 ** (float(snr_db) / 10.0)))
    return (x + scale * n).astype(np.float32)


def measure_snr(clean: Any, noisy: Any) -> float:
    """Measured SNR in dB of ``noisy`` = ``clean`` + noise (both (S,)): 10 log10(P_clean / P_noise)."""
    c = np.asarray(clean, dtype=np.float64)
    d = np.asarray(noisy, dtype=np.float64) - c
    return float(10.0 * np.log10(np.mean(c**2) / np.mean(d**2)))


class NoiseBank:
    """Noise for the robustness setting: recordings from a folder, or generated coloured noise.

    folder: every audio file under it (recursively, suffixes of :data:`AUDIO_SUFFIXES`), read at 16 kHz with
    :func:`emotk.data.audio.load_audio` when first used (at most ``cache_size`` kept in memory); None ->
    generated ``color`` noise. Each utterance key (e.g. the pair id) picks its file, start offset or generator
    seed from a hash of the key, so the same key always gets the same noise. Name: ``noise-folder:<folder
    name>:<sha12 of the file listing>`` or ``generated:<color>``.
    """

    def __init__(self, folder: str | os.PathLike | None = None, color: str = "white", seed: int = 0,
                 cache_size: int = 16) -> None:
        if color not in _COLOR_ALPHA:
            raise UsageError(f"unknown noise colour {color!r}; choose one of {', '.join(NOISE_COLORS)}")
        self.color = color
        self.seed = int(seed)
        self.cache_size = max(1, int(cache_size))
        self._cache: OrderedDict[Path, np.ndarray] = OrderedDict()
        self.folder = None if folder is None else Path(folder)
        self.files: list[Path] = []
        if self.folder is None:
            self.name = f"generated:{color}"
            return
        from emotk.core.io import sha256_json
        from emotk.data.audio import audio_info

        if not self.folder.is_dir():
            raise DataError(f"{self.folder}: noise folder not found")
        self.files = sorted(p for p in self.folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not self.files:
            raise DataError(f"{self.folder}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in the noise folder")
        listing = []
        for p in self.files:
            info = audio_info(p)  # AudioError names the file
            if info.frames == 0:
                raise AudioError(f"{p}: no audio samples")
            listing.append([p.relative_to(self.folder).as_posix(), p.stat().st_size, info.frames, info.sr])
        self.listing_sha256 = sha256_json(listing)
        self.name = f"noise-folder:{self.folder.name}:{self.listing_sha256[:12]}"

    def pick(self, key: str) -> Path | None:
        """The noise file for utterance ``key`` (None for generated noise)."""
        if not self.files:
            return None
        return self.files[_key_hash(key, self.seed) % len(self.files)]

    def _load(self, path: Path) -> np.ndarray:
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        from emotk.data.audio import load_audio

        wav = load_audio(path, sr=SAMPLE_RATE, min_duration=0.0)
        if float(np.mean(wav.astype(np.float64) ** 2)) == 0.0:
            raise AudioError(f"{path}: noise file is silent")
        self._cache[path] = wav
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return wav

    def noise_for(self, key: str, length: int) -> np.ndarray:
        """``length`` samples of noise for utterance ``key`` -> float64 (length,) (deterministic)."""
        h = _key_hash(key, self.seed)
        path = self.pick(key)
        if path is None:
            return coloured_noise(length, self.color, seed=h % (2**32))
        noise = self._load(path).astype(np.float64)
        return _fit_length(noise, length, offset=(h >> 16) % noise.size)

    def add(self, wav: Any, snr: float, key: str) -> np.ndarray:
        """``wav`` (S,) with this bank's noise for ``key`` added at ``snr`` dB -> float32 (S,)."""
        x = check_wav(wav, f"noise input {key}")
        return add_noise(x, snr, noise=self.noise_for(key, x.size))


# ---------------------------------------------------------------------------------------------------------------
# any-to-any emotion matrix
# ---------------------------------------------------------------------------------------------------------------
def emotion_matrix(row_labels: Sequence[str], column_labels: Sequence[str], similarities: Sequence[float | None],
                   labels: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Mean similarity per (row emotion, column emotion) cell.

    row_labels: per pair, the emotion of the rows (e.g. the reference's); column_labels: per pair, the emotion
    of the columns (the converted target's or the source's); similarities: per pair, a float (None / NaN
    pairs are skipped). labels: the class order (default: sorted union of both label lists). Returns
    ``(labels, matrix)`` with matrix (C, C) float64, NaN where a cell has no pair.
    """
    if not (len(row_labels) == len(column_labels) == len(similarities)):
        raise DataError(f"emotion matrix: {len(row_labels)} row labels, {len(column_labels)} column labels and "
                        f"{len(similarities)} similarities must be equally many")
    classes = sorted(set(row_labels) | set(column_labels)) if labels is None else list(labels)
    index = {c: i for i, c in enumerate(classes)}
    sums = np.zeros((len(classes), len(classes)))
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for r, c, s in zip(row_labels, column_labels, similarities):
        if r not in index or c not in index:
            raise DataError(f"emotion matrix: label {r if r not in index else c!r} is not in labels {classes}")
        if s is None or not math.isfinite(float(s)):
            continue
        sums[index[r], index[c]] += float(s)
        counts[index[r], index[c]] += 1
    matrix = np.full(sums.shape, np.nan)
    np.divide(sums, counts, out=matrix, where=counts > 0)
    return classes, matrix


__all__ = [
    "AUDIO_SUFFIXES", "EMOTION2VEC_MODELS", "EMOTION_EMBEDDERS", "NOISE_COLORS", "BaseEmotionEmbedder",
    "Emotion2vecEmbedder", "EmotionEmbedder", "NoiseBank", "SpeakerEmbedder", "Transcriber", "UpstreamEmotionEmbedder",
    "add_noise", "check_wav", "coloured_noise", "cosine", "emotion_matrix", "locate_emotion2vec",
    "make_emotion_embedder", "measure_snr", "paired_pearson", "speaking_rate_pcc", "utterance_error_rates", "wer_cer",
    "word_rate",
]

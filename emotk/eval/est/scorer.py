"""The measures of an EST run: which backends (emotion embedder, ASR, speaker embedder) and the per-pair
:class:`Scorer` with per-utterance caches."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from emotk.errors import UsageError
from emotk.eval.est.cache import LRU
from emotk.eval.est.config import EstConfig, EstMeasures

log = logging.getLogger("emotk.eval")

LARGE_V3 = (("faster-whisper", "whisper-large-v3-ct2"), ("hf-whisper", "whisper-large-v3"),
            ("openai-whisper", "whisper-large-v3-pt"))


def choose_asr(m: EstMeasures) -> tuple[str, str | None]:
    """(backend, model) of the ASR measure; ``auto`` -> Whisper large-v3 when a local copy resolves, else the
    bundled faster-whisper tiny.en (logged)."""
    if m.asr != "auto":
        return m.asr, m.asr_model or None
    if m.asr_model:
        return "faster-whisper", m.asr_model
    from emotk import hub

    for backend, name in LARGE_V3:
        try:
            if hub.locate(name) is not None:
                return backend, name
        except Exception:  # an unusable cache entry: try the next format
            continue
    log.warning("Whisper large-v3 (the thesis's WER model) is not available locally; WER/CER and word timings use "
                "the bundled faster-whisper tiny.en (place large-v3 under $EMOTK_MODELS to use it)")
    return "faster-whisper", None


def choose_emotion(m: EstMeasures, model_dirs: Mapping[str, Path]) -> str:
    """The emotion-embedder spec of Emo-Sim; ``auto`` -> ``emotion2vec:NAME`` when a local copy of
    emotion2vec-plus-base or emotion2vec-base resolves (file system only), else ``zest:`` the first model
    bundle (logged either way). Raises UsageError for ``auto`` with neither."""
    if m.emotion != "auto":
        return m.emotion
    from emotk.eval.measures import EMOTION2VEC_MODELS, locate_emotion2vec

    name = locate_emotion2vec()
    if name is not None:
        log.info("Emo-Sim: emotion2vec (%s, found locally)", name)
        return f"emotion2vec:{name}"
    if not model_dirs:
        raise UsageError(f"measures.emotion=auto: no local copy of {' or '.join(EMOTION2VEC_MODELS)} and no --model "
                         "bundle; set measures.emotion=emotion2vec:PATH, zest:BUNDLE_DIR or upstream:NAME[:LAYER]")
    first = next(iter(model_dirs.values()))
    log.info("Emo-Sim: emotion2vec is not available locally (%s; `emotk models download %s` where a network "
             "exists); using the emotion encoder of %s", " or ".join(EMOTION2VEC_MODELS), EMOTION2VEC_MODELS[0], first)
    return f"zest:{first}"


class Scorer:
    """The measures of one evaluation with per-utterance caches (references and sources recur across pairs)."""

    def __init__(self, emotion: Any, speaker: Any, asr: Any, normalize: bool, cache: int = 4096) -> None:
        self.emotion, self.speaker, self.asr, self.normalize = emotion, speaker, asr, normalize
        self._emo, self._spk, self._asr = LRU(cache), LRU(cache), LRU(cache)

    @property
    def backends(self) -> dict[str, str]:
        return {"emotion": self.emotion.name, "speaker": self.speaker.name, "asr": self.asr.name,
                "rate": f"word timestamps of {self.asr.name}"}

    def emotion_of(self, uid: str, wav: np.ndarray) -> np.ndarray:
        return self._emo.get_or(uid, lambda: self.emotion.embed(wav))

    def speaker_of(self, uid: str, wav: np.ndarray) -> np.ndarray:
        return self._spk.get_or(uid, lambda: self.speaker.embed(wav))

    def asr_of(self, uid: str, wav: np.ndarray) -> dict[str, Any]:
        return self._asr.get_or(uid, lambda: self.asr.transcribe_one(wav))

    def score(self, converted: np.ndarray, src_id: str, src: np.ndarray, ref_id: str, ref: np.ndarray,
              transcript: str) -> dict[str, Any]:
        """Per-pair measurements of one converted waveform (see the module docstring)."""
        from emotk.eval.measures import cosine, utterance_error_rates, word_rate

        e_conv = self.emotion.embed(converted)
        hyp = self.asr.transcribe_one(converted)
        errors = utterance_error_rates(transcript, hyp["text"], normalize=self.normalize)
        return {
            "emo_sim": cosine(e_conv, self.emotion_of(ref_id, ref)),
            "emo_sim_source": cosine(e_conv, self.emotion_of(src_id, src)),
            "spk_sim": cosine(self.speaker.embed(converted), self.speaker_of(src_id, src)),
            "hypothesis": hyp["text"], "transcript": transcript,
            "wer": None if errors is None else errors["wer"], "cer": None if errors is None else errors["cer"],
            "rate_reference": word_rate(self.asr_of(ref_id, ref).get("words")),
            "rate_converted": word_rate(hyp.get("words")),
        }


def make_scorer(cfg: EstConfig, model_dirs: Mapping[str, Path], device: str) -> Scorer:
    from emotk.eval.measures import SpeakerEmbedder, Transcriber, make_emotion_embedder

    emotion = make_emotion_embedder(choose_emotion(cfg.measures, model_dirs), device=device)
    backend, model = choose_asr(cfg.measures)
    options: dict[str, Any] = {"beam_size": cfg.measures.beam_size}
    if backend != "hf-whisper" and cfg.measures.temperature >= 0:  # HF generate decodes deterministically
        options["temperature"] = cfg.measures.temperature
    asr = Transcriber(backend, model, device=device, normalize=cfg.measures.normalize_text, **options)
    return Scorer(emotion, SpeakerEmbedder(device=device), asr, cfg.measures.normalize_text)

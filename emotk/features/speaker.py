"""Speaker embeddings shared by evaluation (Spk-Sim) and the S2S-ZEST speaker front-end.

:class:`SpeakerEmbedder` wraps the Resemblyzer GE2E encoder that ships inside the resemblyzer wheel (offline);
:func:`cosine` and :func:`check_wav` are the small checks every measure uses.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from emotk.core.audio import SAMPLE_RATE
from emotk.errors import AudioError, DataError, UsageError

SILENCE_PEAK = 1e-4  # peak |amplitude| below which a waveform counts as silent (-80 dBFS)


def check_wav(wav: Any, what: str = "waveform", min_samples: int = 1) -> np.ndarray:
    """Validate one waveform: ``wav`` (S,) float samples at 16 kHz -> contiguous float32 (S,).

    Raises AudioError (naming ``what``) for a non-1-D, non-float, too short or non-finite input.
    """
    a = np.asarray(wav)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise AudioError(f"{what}: expected mono 1-D audio, got shape {a.shape}")
    if a.dtype.kind != "f":
        raise AudioError(f"{what}: expected float samples in [-1, 1], got dtype {a.dtype}")
    if a.size < max(1, min_samples):
        raise AudioError(f"{what}: {a.size} samples is shorter than the minimum of {max(1, min_samples)}")
    if not np.isfinite(a).all():
        raise AudioError(f"{what}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(a, dtype=np.float32)


def cosine(a: Any, b: Any) -> float:
    """Cosine similarity of two vectors ``(D,)`` (any float dtype) -> float in [-1, 1].

    Raises DataError when the shapes differ or a vector is zero / non-finite.
    """
    x, y = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise DataError(f"cosine: vectors of different sizes {x.size} and {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise DataError("cosine: a vector contains NaN or infinite values")
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0.0 or ny == 0.0:
        raise DataError("cosine: a vector is all zeros (similarity undefined)")
    return float(np.clip(np.dot(x, y) / (nx * ny), -1.0, 1.0))


class SpeakerEmbedder:
    """Resemblyzer GE2E speaker embeddings (Spk-Sim = cosine of source vs converted embeddings).

    ``encoder``: an already loaded ``resemblyzer.VoiceEncoder`` (or the :class:`emotk.hub.LoadedModel` that holds
    one); None loads the weights bundled in the resemblyzer wheel with ``emotk.hub.load("resemblyzer")``.
    """

    name = "resemblyzer"

    def __init__(self, device: str = "cpu", encoder: Any = None) -> None:
        if encoder is None:
            from emotk import hub

            encoder = hub.load("resemblyzer", device=device)
        self.encoder = getattr(encoder, "model", encoder)
        self.device = device

    def preprocess(self, wav: Any) -> np.ndarray:
        """Resemblyzer's ``preprocess_wav`` for a 16 kHz waveform (no resampling: Resemblyzer works at 16 kHz):
        volume raised to -30 dBFS (never lowered), long silences cut by webrtcvad. When the VAD finds no
        speech at all the volume-normalised waveform is used whole. Returns float32 (S',)."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # webrtcvad / scipy.ndimage deprecation notices
            from resemblyzer import audio as ra
            from resemblyzer import hparams

        if hparams.sampling_rate != SAMPLE_RATE:  # pragma: no cover - Resemblyzer has always used 16 kHz
            raise UsageError(f"resemblyzer expects {hparams.sampling_rate} Hz, emotk passes {SAMPLE_RATE} Hz")
        wav = check_wav(wav, "speaker-similarity input")
        if float(np.max(np.abs(wav))) < SILENCE_PEAK:
            raise AudioError("speaker-similarity input: audio is silent (peak below -80 dBFS)")
        # preprocess_wav's two steps run here one by one (input already at 16 kHz, so no resampling), which
        # lets a waveform in which the VAD finds no speech fall back to the whole signal instead of nothing.
        wav = ra.normalize_volume(wav.astype(np.float64), hparams.audio_norm_target_dBFS, increase_only=True)
        wav = np.clip(wav, -1.0, 1.0)  # the VAD packs int16 PCM; values past full scale would wrap around
        trimmed = ra.trim_long_silences(wav)
        window = hparams.vad_window_length * SAMPLE_RATE // 1000
        return np.asarray(trimmed if trimmed.size >= window else wav, dtype=np.float32)

    def embed(self, wav: Any) -> np.ndarray:
        """16 kHz mono float waveform (S,) -> L2-normalised speaker embedding (256,) float32."""
        emb = self.encoder.embed_utterance(self.preprocess(wav))
        return np.asarray(emb, dtype=np.float32)

    def embed_batch(self, wavs: Sequence[Any]) -> np.ndarray:
        """N waveforms -> (N, 256) float32."""
        return np.stack([self.embed(w) for w in wavs]) if len(wavs) else np.zeros((0, 256), np.float32)

    def similarity(self, a: Any, b: Any) -> float:
        """Cosine of the speaker embeddings of two waveforms."""
        return cosine(self.embed(a), self.embed(b))


__all__ = ["SpeakerEmbedder", "check_wav", "cosine"]

"""Audio I/O with soundfile (no torchaudio): any rate -> mono -> target rate, segments, checks.

Every failure raises :class:`emotk.errors.AudioError` with a one-line message naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotk.core.audio import SAMPLE_RATE
from emotk.errors import AudioError

MIN_DURATION = 0.05  # seconds; shorter input cannot give one 20 ms frame with context


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sr: int
    frames: int
    channels: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sr if self.sr else 0.0


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header-only information (no decoding)."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: audio file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file")
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises RuntimeError/LibsndfileError/TypeError
        raise AudioError(f"{path}: cannot decode audio ({_short(e)})") from None
    return AudioInfo(str(path), int(info.samplerate), int(info.frames), int(info.channels), info.format, info.subtype)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[-1] if text else type(e).__name__)[:160]


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """High-quality resampling (soxr HQ; scipy polyphase as fallback). ``wav``: (T,) float32."""
    if sr_in == sr_out:
        return wav
    try:
        import soxr

        return soxr.resample(wav, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)
    except ImportError:  # pragma: no cover - soxr is a dependency
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(sr_in, sr_out)
        return resample_poly(wav, sr_out // g, sr_in // g).astype(np.float32)


def load_audio(
    path: str | os.PathLike,
    sr: int | None = SAMPLE_RATE,
    start: float | None = None,
    end: float | None = None,
    min_duration: float = MIN_DURATION,
) -> np.ndarray:
    """Decode ``path`` to a mono float32 array at ``sr`` Hz (``None`` keeps the file's rate).

    ``start``/``end`` (seconds) select a segment; only that segment is read from disk.
    Multi-channel audio is averaged to mono. Raises AudioError for missing, corrupt, empty,
    too-short or non-finite audio.
    """
    import soundfile as sf

    info = audio_info(path)
    if info.frames == 0:
        raise AudioError(f"{path}: no audio samples")
    first = 0 if start is None else int(round(start * info.sr))
    last = info.frames if end is None else int(round(end * info.sr))
    if start is not None and (start < 0 or first >= info.frames):
        raise AudioError(f"{path}: segment start {start:.3f}s is outside the file ({info.duration:.3f}s)")
    if end is not None and last > info.frames + int(0.05 * info.sr):
        raise AudioError(f"{path}: segment end {end:.3f}s is past the end of the file ({info.duration:.3f}s)")
    last = min(last, info.frames)
    if last <= first:
        raise AudioError(f"{path}: empty segment [{start}, {end}]")
    try:
        wav, file_sr = sf.read(str(path), start=first, stop=last, dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(f"{path}: cannot decode audio ({_short(e)})") from None
    wav = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
    if wav.size == 0:
        raise AudioError(f"{path}: no audio samples")
    if not np.isfinite(wav).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    if wav.size / file_sr < min_duration:
        raise AudioError(f"{path}: too short ({wav.size / file_sr * 1000:.0f} ms < {min_duration * 1000:.0f} ms)")
    if sr is not None:
        wav = resample(wav, file_sr, sr)
    return np.ascontiguousarray(wav, dtype=np.float32)


def save_audio(path: str | os.PathLike, wav: np.ndarray, sr: int = SAMPLE_RATE, subtype: str = "PCM_16") -> None:
    """Write mono audio atomically (format from the suffix: .wav, .flac, ...)."""
    import soundfile as sf

    from emotk.core.io import atomic_path

    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"save_audio expects mono (T,) audio, got shape {wav.shape}")
    path = Path(path)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower(), "WAV")
    with atomic_path(path, suffix=path.suffix) as tmp:
        sf.write(str(tmp), np.clip(wav, -1.0, 1.0), sr, subtype=subtype, format=fmt)

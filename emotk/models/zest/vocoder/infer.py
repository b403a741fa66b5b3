"""Chunked synthesis: constant memory for any input length, output equal to whole-utterance synthesis.

The cheap 50 Hz conditioning (which includes the F0 BiLSTM) is computed for the whole utterance; the
convolutional up-sampling stack then runs on chunks of at most ``chunk_frames`` frames with ``context_frames`` of
overlap on each side, and only each chunk's centre is kept. The chunks are balanced (an utterance of T frames is
cut into ceil(T / chunk_frames) chunks of equal size, +-1 frame): every chunk boundary costs two contexts of extra
work, and equal chunks need the fewest boundaries without a short, context-dominated last chunk. With the
context at least the stack's receptive field (the default), the result equals whole-utterance synthesis up to
float rounding, while the activations held at any time are those of one chunk (~0.2 GB at 16 kHz for 6 s chunks
of the base generator) instead of growing with the input (NVIDIA's whole-utterance BigVGAN slowed down with
length from page-fault cost).

Page faults: glibc returns every large freed block (> its mmap threshold) to the OS, so each new activation
tensor is faulted in again page by page: measured on 2 cores, ~0.7M minor faults and ~40 % of the CPU time
for 5 s of base-generator audio. :func:`retain_freed_memory` (applied by :func:`synthesize` unless
``retain_memory=False``) raises glibc's mmap threshold to its 32 MiB maximum and the trim threshold to
256 MiB, so the freed blocks of one chunk are reused by the next with no faults. This is process-wide; it
only helps with chunks, whose tensors stay below 32 MiB, and it keeps at most 256 MiB of freed heap.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _as_tensor(x: Any, dtype: Any) -> Any:
    import torch

    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(dtype)


_RETAINED = False
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit systems
TRIM_THRESHOLD = 256 * 1024 * 1024


def retain_freed_memory() -> bool:
    """Make glibc keep freed blocks of up to 32 MiB for reuse (see the module docstring); True when applied.

    Idempotent; a no-op (False) where the C library is not glibc.
    """
    global _RETAINED
    if _RETAINED:
        return True
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _RETAINED = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _RETAINED


def chunk_bounds(frames: int, chunk_frames: int) -> list[tuple[int, int]]:
    """ceil(frames / chunk_frames) balanced (start, stop) frame ranges covering [0, frames) in order; their sizes
    differ by at most one frame and none exceeds ``chunk_frames``."""
    count = max(1, -(-int(frames) // int(chunk_frames)))
    edges = [round(i * frames / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def synthesize(generator: Any, tokens: Any, f0: Any, speaker: Any, emotion: Any, chunk_frames: int | None = 300,
               context_frames: int | None = None, retain_memory: bool = True) -> np.ndarray:
    """Waveform of one utterance.

    Args:
        generator: a VocoderGenerator (see :func:`~.export.load_generator`).
        tokens: (T,) int content tokens at 50 Hz; f0: (T,) Hz (0 = unvoiced); speaker: (S,); emotion: (E,)
            (numpy arrays or tensors).
        chunk_frames: at most this many frames per chunk (balanced chunks); None or >= T = the whole utterance.
        context_frames: overlap on each side; None = the generator's receptive field (exact result).
        retain_memory: call :func:`retain_freed_memory` first (synthesis without page faults while the largest
            activation of a chunk stays below 32 MiB: ~7 s of audio for the base generator).

    Returns:
        (T·320,) float32 waveform at 16 kHz in [-1, 1].
    """
    import torch

    device = next(generator.parameters()).device
    tokens = _as_tensor(tokens, torch.long).to(device).reshape(1, -1)
    f0 = _as_tensor(f0, torch.float32).to(device).reshape(1, -1)
    speaker = _as_tensor(speaker, torch.float32).to(device).reshape(1, -1)
    emotion = _as_tensor(emotion, torch.float32).to(device).reshape(1, -1)
    t = tokens.shape[1]
    hop = generator.hop
    out = np.zeros(t * hop, dtype=np.float32)
    if t == 0:
        return out
    if retain_memory:
        retain_freed_memory()
    ctx = generator.receptive_field_frames() if context_frames is None else int(context_frames)
    was_training = generator.training
    generator.eval()
    try:
        with torch.inference_mode():
            cond = generator.condition(tokens, f0, speaker, emotion)
            if chunk_frames is None or chunk_frames >= t:
                out[:] = generator.decode(cond)[0].float().cpu().numpy()
                return out
            for start, stop in chunk_bounds(t, int(chunk_frames)):
                n = stop - start
                lo, hi = max(0, start - ctx), min(t, stop + ctx)
                wav = generator.decode(cond[..., lo:hi])[0]
                off = (start - lo) * hop
                out[start * hop:(start + n) * hop] = wav[off:off + n * hop].float().cpu().numpy()
    finally:
        generator.train(was_training)
    return out

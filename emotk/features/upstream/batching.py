"""Many utterances through an upstream: length-bucketed batches under a padded-seconds budget."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from emotk.core.audio import SAMPLE_RATE
from emotk.errors import UsageError
from emotk.features.upstream.base import Upstream, WaveformLike, check_waveform

# Padded seconds per batch: on CPU the budget barely matters (12-48 s were within 3 % of each other, 4 % faster
# than one-by-one; benchmarks/upstream_batching.py); on a GPU larger batches pay, so raise it there.
DEFAULT_BATCH_SECONDS = 24.0


def plan_batches(num_samples: Sequence[int], max_batch_seconds: float = DEFAULT_BATCH_SECONDS, *,
                 sort_by_length: bool = True, max_batch_size: int | None = None, sample_rate: int = SAMPLE_RATE,
                 cost: Callable[[int], int] | None = None) -> list[list[int]]:
    """Group utterances into batches whose padded size fits a budget.

    num_samples: length of each utterance (samples). A batch's padded size is ``len(batch) * cost(longest)``
    samples (cost: samples the model really processes, identity by default; Whisper: whole windows); it must stay
    within ``max_batch_seconds`` unless the batch has a single item. sort_by_length: longest first, so
    similar lengths share a batch (little padding; memory peaks at once); else input order.
    Returns lists of input indices; every index appears once. Deterministic (ties by index).
    """
    if max_batch_seconds <= 0:
        raise UsageError(f"max_batch_seconds must be > 0, got {max_batch_seconds}")
    if max_batch_size is not None and max_batch_size < 1:
        raise UsageError(f"max_batch_size must be >= 1, got {max_batch_size}")
    cost = cost or (lambda n: n)
    budget = max_batch_seconds * sample_rate
    order = list(range(len(num_samples)))
    if sort_by_length:
        order.sort(key=lambda i: (-int(num_samples[i]), i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = cost(int(num_samples[i]))
        new_longest = max(longest, n)
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (full or (len(current) + 1) * new_longest > budget):
            batches.append(current)
            current, new_longest = [], n
        current.append(i)
        longest = new_longest
    if current:
        batches.append(current)
    return batches


def extract(upstream: Upstream, wavs: Sequence[WaveformLike], max_batch_seconds: float = DEFAULT_BATCH_SECONDS,
            sort_by_length: bool = True, *, layers: Sequence[int] | None = None, dtype: Any = np.float32,
            max_batch_size: int | None = None,
            on_batch: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """Run ``upstream`` over many utterances and return each one's layers without padding.

    wavs: N 1-D 16 kHz float waveforms. Batches come from :func:`plan_batches` (padding is masked inside the
    model). layers: indices to keep (None = all). dtype: storage type of the result (np.float16 halves it).
    on_batch: called with the number of utterances after each batch (progress).
    Returns N arrays (L, T_i, D) in input order. Runs without gradients and in eval mode (restored after).
    """
    if not len(wavs):
        return []
    items = [check_waveform(w, i, upstream.min_samples, upstream.sample_rate) for i, w in enumerate(wavs)]
    batches = plan_batches([int(w.shape[0]) for w in items], max_batch_seconds, sort_by_length=sort_by_length,
                           max_batch_size=max_batch_size, sample_rate=upstream.sample_rate,
                           cost=upstream.padded_input_samples)
    results: list[np.ndarray | None] = [None] * len(items)
    was_training = upstream.training
    upstream.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                out = upstream([items[i] for i in batch], layers=layers)
                hidden = out.hidden.float().cpu()
                for j, i in enumerate(batch):
                    results[i] = hidden[j, :, : int(out.lengths[j])].numpy().astype(dtype, copy=True)
                if on_batch is not None:
                    on_batch(len(batch))
    finally:
        upstream.train(was_training)
    return results  # type: ignore[return-value]


def padding_overhead(num_samples: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Padded samples / real samples over a batch plan (1.0 = no padding)."""
    real = sum(int(n) for n in num_samples)
    padded = sum(len(b) * max(int(num_samples[i]) for i in b) for b in batches)
    return padded / real if real else 1.0

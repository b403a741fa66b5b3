"""Run-time resolution, one source of truth: device, threads, precision and seeds.

Every command resolves these from its ``runtime`` config section (:class:`emotk.core.config.RuntimeConfig`);
the CLI writes the global ``--device`` into that section before calling the library, so library code never
reads CLI state. Nothing here changes what a run computes, only where and how fast (seeds excepted).
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import TYPE_CHECKING, Any, Iterator

from emotk.errors import ConfigError, UsageError

if TYPE_CHECKING:  # torch is imported lazily: `emotk --help` and `config show` stay cheap
    import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def device_name(spec: str | None) -> str:
    """``auto``/None/'' -> ``cuda`` when CUDA is available, else ``cpu``; any other spec lower-cased, unchanged.

    For code that needs a device *name* (feature extractors, CTranslate2); see :func:`resolve_device` for the
    checked ``torch.device``.
    """
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return spec


def resolve_device(spec: str | None, local_rank: int = 0, local_world_size: int = 1) -> "torch.device":
    """``runtime.device`` -> a checked ``torch.device``.

    ``auto``: CUDA when available, else CPU. Under several local processes (torchrun) ``cuda`` means
    ``cuda:<local_rank>``. A CUDA spec on a machine without CUDA, or a GPU index that does not exist, is a
    UsageError naming ``runtime.device``.
    """
    import torch

    spec = device_name(spec)
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"runtime.device={spec}: CUDA is not available on this machine (use cpu)")
        if spec == "cuda" or local_world_size > 1:
            index = local_rank
        else:
            try:
                index = int(spec.split(":", 1)[1])
            except (IndexError, ValueError):
                raise UsageError(f"runtime.device={spec!r}: expected cuda or cuda:N") from None
        if index >= torch.cuda.device_count():
            raise UsageError(f"runtime.device: cuda:{index} does not exist ({torch.cuda.device_count()} GPUs)")
        return torch.device("cuda", index)
    if spec == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    raise UsageError(f"runtime.device={spec!r}: expected {DEVICE_CHOICES}")


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_threads(threads: int, local_world_size: int = 1) -> int:
    """``runtime.threads`` -> torch intra-op threads: 0 = the cores this process may use / local processes."""
    if threads and threads > 0:
        return int(threads)
    return max(1, available_cores() // max(local_world_size, 1))


def apply_threads(threads: int, local_world_size: int = 1) -> int:
    """Set torch's intra-op thread count from ``runtime.threads`` (see :func:`resolve_threads`); returns it."""
    import torch

    n = resolve_threads(threads, local_world_size)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def keep_threads() -> Iterator[None]:
    """Restore torch's intra-op thread count on exit: a library call's ``runtime.threads`` applies to that call
    only, never to the caller's process."""
    import torch

    before = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def resolve_precision(precision: str, device: "torch.device") -> tuple["torch.dtype | None", bool]:
    """``runtime.precision`` -> (autocast dtype or None, use a GradScaler). AMP runs on GPU only."""
    import torch

    if precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"config key 'runtime.precision': {precision!r} is not one of fp32, bf16, fp16")
    if device.type != "cuda" or precision == "fp32":
        if precision != "fp32":
            from emotk.core.log import get_logger

            get_logger("runtime").info("runtime.precision=%s applies on GPU only; running in fp32 on %s",
                                       precision, device)
        return None, False
    return (torch.bfloat16, False) if precision == "bf16" else (torch.float16, True)


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and CUDA)."""
    import numpy as np
    import torch

    seed = int(seed) & 0xFFFFFFFF
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def derived_seed(*parts: int) -> int:
    """A 32-bit seed that is a fixed function of ``parts`` (e.g. base seed, epoch, rank)."""
    import numpy as np

    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy/random from torch's per-worker seed."""
    import numpy as np
    import torch

    seed = torch.initial_seed() % (2 ** 32)
    np.random.seed(seed)
    random.seed(seed)


def with_device(runtime: Any, device: str | None) -> Any:
    """A copy of a runtime section whose ``device`` is ``device`` when given (the CLI's ``--device``)."""
    import dataclasses

    if not device:
        return runtime
    return dataclasses.replace(runtime, device=device)

"""Processes, ranks and collective operations for DDP training (torchrun or srun), plus deterministic sharding.

Rank detection: torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``LOCAL_WORLD_SIZE`` first, then srun's
``SLURM_PROCID``/``SLURM_STEP_NUM_TASKS``/``SLURM_LOCALID`` (only inside an srun job step, so a plain
``python`` in an sbatch script stays single-process). ``MASTER_ADDR``/``MASTER_PORT`` come from the
environment (torchrun sets them; the SLURM template of :mod:`emotk.train.launch` exports them).

Data order is independent of the number of processes: every epoch has one permutation, a function of
``(seed, epoch)`` only, cut into global batches of ``batch_size`` items; a global batch is split into
``world_size × accum`` contiguous micro-batches and process ``rank`` takes micro-batches
``m·world_size + rank``. A run resumed on another number of processes therefore continues the same
sequence of global batches.

Gradients are summed across processes explicitly (bucketed all-reduce after the accumulation steps) rather
than through ``DistributedDataParallel``: tasks may call any sub-module (GAN generator then discriminator),
parameters may go unused in a step, and processes may hold an empty micro-batch, none of which DDP's
reducer allows. Buffers (e.g. batch-norm statistics) are broadcast from rank 0 after each step.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from emotk.core.log import get_logger
from emotk.errors import UsageError

log = get_logger("train")

_BUCKET_BYTES = 32 << 20


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: global ``rank`` of ``world_size``, ``local_rank`` on its node of
    ``local_world_size``, and ``source`` (``"single"``, ``"torchrun"`` or ``"slurm"``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    source: str = "single"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, env: dict[str, str]) -> int | None:
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not an integer") from None


def detect(env: dict[str, str] | None = None) -> DistInfo:
    """Read rank/world size from torchrun's or srun's environment variables (``env`` defaults to os.environ).

    Returns a single-process :class:`DistInfo` when neither launcher is present.
    """
    env = dict(os.environ if env is None else env)
    world = _env_int("WORLD_SIZE", env)
    rank = _env_int("RANK", env)
    if world is not None and rank is not None:
        local_rank = _env_int("LOCAL_RANK", env)
        local_world = _env_int("LOCAL_WORLD_SIZE", env)
        info = DistInfo(rank, world, local_rank if local_rank is not None else rank,
                        local_world if local_world is not None else world, "torchrun")
    else:
        ntasks = _env_int("SLURM_STEP_NUM_TASKS", env)
        procid = _env_int("SLURM_PROCID", env)
        if ntasks is None or procid is None or ntasks <= 1:
            return DistInfo()
        local_rank = _env_int("SLURM_LOCALID", env) or 0
        per_node = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or ""
        local_world = _tasks_on_this_node(per_node, _env_int("SLURM_NODEID", env) or 0) or 1
        info = DistInfo(procid, ntasks, local_rank, local_world, "slurm")
    if not 0 <= info.rank < info.world_size:
        raise UsageError(f"rank {info.rank} is outside world size {info.world_size} ({info.source} environment)")
    return info


def _tasks_on_this_node(spec: str, node_id: int) -> int | None:
    """Parse SLURM's ``"2(x3),1"`` tasks-per-node list and return the count of node ``node_id``."""
    counts: list[int] = []
    for part in filter(None, spec.split(",")):
        if "(x" in part:
            n, rep = part.rstrip(")").split("(x")
            counts.extend([int(n)] * int(rep))
        elif part.isdigit():
            counts.append(int(part))
    return counts[node_id] if node_id < len(counts) else None


def is_initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def start(runtime: Any) -> tuple[Any, DistInfo]:
    """The start of every training command: ``runtime`` (a RuntimeConfig) with its device resolved
    (:func:`emotk.core.runtime.device_name`), the process group joined (:func:`init`), and the compute threads
    sized for this machine's local processes (:func:`emotk.core.runtime.apply_threads`). Returns
    ``(runtime, info)``."""
    import dataclasses

    from emotk.core.runtime import apply_threads, device_name

    device = device_name(runtime.device)
    runtime = dataclasses.replace(runtime, device=device)
    info = init(device)
    apply_threads(runtime.threads, info.local_world_size)
    return runtime, info


def init(device: "torch.device | str" = "cpu", info: DistInfo | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group when the environment names more than one process; idempotent.

    ``device``: the training device; ``cpu`` uses the gloo backend, ``cuda`` nccl (after
    ``torch.cuda.set_device``). Returns the :class:`DistInfo`. The group is destroyed at interpreter exit.
    """
    info = info or detect()
    if not info.distributed or is_initialized():
        return info
    device = torch.device(device)
    if not torch.distributed.is_available():
        raise UsageError("this PyTorch build has no torch.distributed; run a single process")
    os.environ.setdefault("MASTER_PORT", "29500")
    if "MASTER_ADDR" not in os.environ:
        raise UsageError(
            f"{info.world_size} processes ({info.source}) but MASTER_ADDR is not set; launch with torchrun or "
            "export MASTER_ADDR (see `emotk launch slurm`)"
        )
    if device.type == "cuda":
        # one GPU per process: cuda:<local_rank> unless a single process per node names its GPU
        index = device.index if device.index is not None and info.local_world_size == 1 else info.local_rank
        torch.cuda.set_device(index)
        backend = "nccl"
    else:
        backend = "gloo"
    torch.distributed.init_process_group(
        backend=backend, init_method="env://", rank=info.rank, world_size=info.world_size,
        timeout=_dt.timedelta(seconds=timeout_s),
    )
    atexit.register(shutdown)
    log.debug("joined process group: rank %d/%d (%s, %s)", info.rank, info.world_size, backend, info.source)
    return info


def shutdown() -> None:
    """Leave the process group (no-op when not initialised)."""
    if is_initialized():
        torch.distributed.destroy_process_group()


def rank() -> int:
    return torch.distributed.get_rank() if is_initialized() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """True on the process that writes files (rank 0, or the only process)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (no-op single-process)."""
    if is_initialized():
        torch.distributed.barrier()


def _comm_device() -> torch.device:
    if is_initialized() and torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_process(flag: bool) -> bool:
    """True when ``flag`` is true on at least one process (every process gets the same answer)."""
    if not is_initialized():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Return rank ``src``'s ``obj`` on every process (a picklable in-memory object; never user files)."""
    if not is_initialized():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` as a list indexed by rank."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def all_gather_tensors(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Gather tensors whose shapes differ between processes (same ndim and dtype).

    Each process pads its tensor to the per-dimension maximum, all-gathers, and the padding is cut off
    again. Returns one CPU tensor per rank, each with its original shape.
    """
    if not is_initialized():
        return [tensor.detach().cpu()]
    dev = _comm_device()
    shape = torch.tensor(list(tensor.shape), dtype=torch.long, device=dev)
    shapes = [torch.zeros_like(shape) for _ in range(world_size())]
    torch.distributed.all_gather(shapes, shape)
    shapes_l = [tuple(int(v) for v in s.tolist()) for s in shapes]
    max_shape = tuple(max(dims) for dims in zip(*shapes_l)) if tensor.dim() else ()
    dtype = tensor.dtype
    send = tensor.detach()
    if dtype == torch.bool:  # gloo has no bool all-gather
        send = send.to(torch.uint8)
    padded = torch.zeros(max_shape, dtype=send.dtype, device=dev)
    padded[tuple(slice(0, n) for n in send.shape)] = send.to(dev)
    bufs = [torch.empty_like(padded) for _ in range(world_size())]
    torch.distributed.all_gather(bufs, padded)
    out = []
    for buf, shp in zip(bufs, shapes_l):
        piece = buf[tuple(slice(0, n) for n in shp)].cpu()
        out.append(piece.to(dtype) if dtype == torch.bool else piece)
    return out


def broadcast_module(module: torch.nn.Module, src: int = 0, buffers_only: bool = False) -> None:
    """Copy rank ``src``'s parameters (unless ``buffers_only``) and buffers into every process's ``module``."""
    if not is_initialized():
        return
    tensors = list(module.buffers()) if buffers_only else list(module.parameters()) + list(module.buffers())
    dev = _comm_device()
    with torch.no_grad():
        for bucket in _buckets(t.data for t in tensors if t.numel() > 0):
            flat = torch.cat([t.reshape(-1) for t in bucket]).to(dev)
            if flat.dtype == torch.bool:  # gloo cannot broadcast bool tensors
                flat = flat.to(torch.uint8)
            torch.distributed.broadcast(flat, src=src)
            offset = 0
            for t in bucket:
                t.copy_(flat[offset:offset + t.numel()].view(t.shape).to(t.dtype))
                offset += t.numel()


def reduce_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Sum the gradients of ``params`` over processes, in place (bucketed, one all-reduce per bucket).

    Processes first agree on which parameters received a gradient anywhere: those get a zero gradient where
    missing, the others keep ``grad = None`` everywhere (so optimisers skip them exactly as in one process).
    """
    if not is_initialized() or not params:
        return
    dev = _comm_device()
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=dev)
    torch.distributed.all_reduce(has, op=torch.distributed.ReduceOp.MAX)
    grads = []
    for p, flag in zip(params, has.tolist()):
        if flag > 0:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
    for bucket in _buckets(grads):
        flat = torch.cat([g.reshape(-1) for g in bucket])
        moved = flat.to(dev) if flat.device != dev else flat
        torch.distributed.all_reduce(moved)
        offset = 0
        for g in bucket:
            n = g.numel()
            g.copy_(moved[offset:offset + n].view_as(g))
            offset += n


def _buckets(tensors: Iterable[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Group tensors by (device, dtype) into buckets of at most ~32 MB (a larger tensor gets its own)."""
    groups: dict[tuple, list[list[torch.Tensor]]] = {}
    sizes: dict[tuple, int] = {}
    for t in tensors:
        key = (t.device, t.dtype)
        nbytes = t.numel() * t.element_size()
        if key not in groups or sizes[key] + nbytes > _BUCKET_BYTES:
            groups.setdefault(key, []).append([])
            sizes[key] = 0
        groups[key][-1].append(t)
        sizes[key] += nbytes
    return [b for bs in groups.values() for b in bs if b]


# --- deterministic, world-size-independent data order ------------------------------------------------

def epoch_permutation(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order of ``n`` items in ``epoch`` (int64 array): a function of ``(seed, epoch)`` only."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch)]).permutation(n).astype(np.int64)


def global_batches(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> list[np.ndarray]:
    """Cut the epoch's permutation into global batches of ``batch_size`` (the last may be smaller)."""
    order = epoch_permutation(n, seed, epoch, shuffle)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def shard_batch(batch: Sequence[int], world_size: int, rank: int, accum: int) -> list[list[int]]:
    """This process's ``accum`` micro-batches of one global batch (lists of dataset indices; may be empty).

    The batch is split into ``world_size × accum`` contiguous near-equal chunks; micro-batch ``m`` of
    ``rank`` is chunk ``m·world_size + rank``. The union over ranks and micro-batches is the whole batch.
    """
    k = world_size * accum
    n = len(batch)
    base, extra = divmod(n, k)
    bounds = [0]
    for i in range(k):
        bounds.append(bounds[-1] + base + (1 if i < extra else 0))
    items = [int(v) for v in batch]
    return [items[bounds[m * world_size + rank]:bounds[m * world_size + rank + 1]] for m in range(accum)]


def eval_shard(n: int, world_size: int, rank: int) -> list[int]:
    """Indices of an ``n``-item evaluation set handled by ``rank`` (strided, no padding or duplicates)."""
    return list(range(rank, n, world_size))

"""Data-parallel training across processes with ``torch.distributed``, when a launcher asks for it.

``torchrun --nproc_per_node N -m core train …`` (or ``accelerate launch``) starts N copies of the same command
with ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in their environment. Every copy runs the same run: each
trains on its own shard of the training data (gradients all-reduced by DistributedDataParallel), evaluates its
own shard of the evaluation items (the predictions are gathered so every rank sees all of them), and only rank
0 writes to the database and the model folder. Without ``WORLD_SIZE > 1`` every function here is a no-op for
one process, so the single-process path is unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def requested() -> bool:
    """A launcher started this process as one of several (``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def launcher_rank() -> int:
    """This process's rank as the launcher set it (``RANK``; 0 without a launcher), valid outside the group too."""
    return int(os.environ.get("RANK", "0") or 0) if requested() else 0


def _dist() -> Any:
    from core.training.classifier import import_torch

    return import_torch().distributed


def active() -> bool:
    """A process group is up (inside :func:`process_group`)."""
    dist = _dist()
    return bool(dist.is_available() and dist.is_initialized())


def rank() -> int:
    return _dist().get_rank() if active() else 0


def world_size() -> int:
    return _dist().get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes the run."""
    return rank() == 0


def device() -> str | None:
    """``cuda:<LOCAL_RANK>`` for a distributed run on a CUDA machine (one GPU per process), else None (default)."""
    from core.training.classifier import import_torch

    torch = import_torch()
    if active() and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return None


@contextmanager
def process_group() -> Iterator[None]:
    """Join the launcher's process group (nccl on CUDA, gloo on CPU) for the block when ``WORLD_SIZE > 1``;
    otherwise do nothing. A group already up (set up by the caller) is left as it is."""
    if not requested() or active():
        yield
        return
    from core.training.classifier import import_torch

    torch = import_torch()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend=backend)
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


def broadcast(value: T) -> T:
    """Rank 0's ``value`` on every rank (a picklable object)."""
    if not active():
        return value
    box = [value if is_main() else None]
    _dist().broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def barrier() -> None:
    if active():
        _dist().barrier()


def mean(value: float) -> float:
    """The mean of ``value`` over the ranks (a loss to report)."""
    if not active():
        return value
    from core.training.classifier import import_torch

    torch = import_torch()
    tensor = torch.tensor([value], dtype=torch.float64)
    if _dist().get_backend() == "nccl":
        tensor = tensor.cuda()
    _dist().all_reduce(tensor)
    return float(tensor.item()) / world_size()


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on any rank (a stop request reaches all of them)."""
    if not active():
        return flag
    return mean(1.0 if flag else 0.0) > 0


def shard(n: int, *, seed: int, epoch: int) -> np.ndarray:
    """This rank's training indices for an epoch: a ``DistributedSampler`` over ``n`` items, shuffled with
    ``seed`` and ``epoch`` (every rank draws the same permutation and takes its own equal-sized share)."""
    if not active():
        return np.arange(n)
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world_size(), rank=rank(), shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return np.fromiter(iter(sampler), dtype=np.int64)


def gather_rows(predict: Callable[[Sequence[int]], np.ndarray], n: int) -> np.ndarray:
    """``predict(indices)`` for all ``n`` rows, each rank computing every ``world_size``-th row and all ranks
    receiving the whole result (in row order)."""
    if not active():
        return predict(range(n))
    size, me = world_size(), rank()
    mine = predict(range(me, n, size))
    parts: list[Any] = [None] * size
    _dist().all_gather_object(parts, mine)
    first = next(p for p in parts if p is not None)
    out = np.zeros((n, *first.shape[1:]), dtype=first.dtype)
    for r, part in enumerate(parts):
        out[r::size] = part
    return out

"""Several processes (``torchrun``): the process group from the environment, and shards.

``torchrun --nproc_per_node N`` starts ``N`` processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set.
:func:`processes_from_env` joins them in the default process group (``nccl``
on CUDA, ``gloo`` on CPU); each rank then builds its operators over its
:func:`shard` of the data, and the operators all-reduce their products over
the group (:class:`spectra.CurvatureOperator`'s ``process_group``), so every
rank sees the same full-data operator and the solvers give the same results on
every rank. Only rank 0 should write files and print. A decision every rank must
take together (whether to run a collective at all) goes through :func:`any_rank`;
replicas that must be one model before a probe go through :func:`replicate_`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Processes:
    """Where this process stands among the processes of one job.

    Attributes:
        rank: this process's rank, ``0 .. world_size - 1``.
        world_size: the number of processes (1 without torchrun).
        local_rank: the rank on this machine (the CUDA device it uses).
        backend: ``"gloo"``, ``"nccl"``, or ``None`` for one process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints (rank 0)."""
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        """The device of this process: ``cuda:LOCAL_RANK`` with nccl, else the CPU."""
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def barrier(self) -> None:
        """Wait for every process (nothing for one)."""
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()


def env_processes() -> Processes:
    """The ranks ``torchrun`` put in the environment (without it: one process).

    Raises:
        ValueError: ``WORLD_SIZE``, ``RANK`` or ``LOCAL_RANK`` is not an integer,
            or the rank is outside ``0 .. WORLD_SIZE - 1``.
    """
    def read(name: str, default: int) -> int:
        raw = os.environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None

    world = read("WORLD_SIZE", 1)
    rank = read("RANK", 0)
    local = read("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is not in 0 .. WORLD_SIZE - 1 = {world - 1}")
    return Processes(rank, world, local, None)


@contextmanager
def processes_from_env(backend: str | None = None) -> Iterator[Processes]:
    """Join the processes of a ``torchrun`` job for the duration of the block.

    With ``WORLD_SIZE > 1`` initializes the default process group from the
    environment (``env://``) with ``backend`` (default ``nccl`` when CUDA is
    available, else ``gloo``), selects ``cuda:LOCAL_RANK`` under nccl, and
    destroys the group on exit. A group that is already initialized is used
    as it is (and left alone). With one process it does nothing.

    Yields:
        :class:`Processes`.
    """
    import torch.distributed as dist

    env = env_processes()
    if dist.is_available() and dist.is_initialized():
        yield Processes(dist.get_rank(), dist.get_world_size(), env.local_rank,
                        dist.get_backend())
        return
    if env.world_size == 1:
        yield env
        return
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend, init_method="env://", rank=env.rank,
                            world_size=env.world_size)
    try:
        yield Processes(env.rank, env.world_size, env.local_rank, backend)
    except BaseException:
        dist.destroy_process_group()
        raise
    # every rank reaches the end before any tears the group down (a rank destroying it
    # while another is still in flight can abort that one)
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


def collective_device(group=None, device: torch.device | str | None = None) -> torch.device:
    """The device a small tensor of a collective over ``group`` (default: the global
    group) must live on: under the ``nccl`` backend, which takes CUDA tensors only,
    ``device`` when it is a CUDA device (the caller's tensors', e.g. the model's: right
    even when the process never called ``torch.cuda.set_device``, where the current
    device is ``cuda:0`` on every rank), else the current CUDA device; with any other
    backend the CPU (``gloo``, or a mixed ``"cpu:gloo,cuda:nccl"`` group, which takes CPU
    tensors)."""
    import torch.distributed as dist

    if dist.get_backend(group) == "nccl":
        if device is not None and torch.device(device).type == "cuda":
            device = torch.device(device)
            return device if device.index is not None else torch.device(
                "cuda", torch.cuda.current_device())
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def several_ranks(group=None):
    """``group`` (default: the global group) when ``torch.distributed`` is initialized
    and the group has more than one rank, else ``None``: whether anything has to be
    communicated at all."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    if group is None:
        group = dist.group.WORLD
    return group if dist.get_world_size(group) > 1 else None


def least_over_ranks(value: float, group=None, device: torch.device | str | None = None) -> float:
    """The smallest ``value`` over the ranks of ``group`` (default: the global group), the
    same on every rank: a MIN all-reduce of one float64 that every rank must call.
    Without an initialized group of several processes, ``value`` itself. For a quantity
    each rank measures for itself that decides a collective pattern, such as a solver's
    memory budget (which sets its mode and how many vectors each product takes)."""
    import torch.distributed as dist

    group = several_ranks(group)
    if group is None:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=collective_device(group, device))
    dist.all_reduce(t, op=dist.ReduceOp.MIN, group=group)
    return float(t.item())


def any_rank(flag: bool, group=None, device: torch.device | str | None = None) -> bool:
    """Whether ``flag`` is True on any rank of ``group`` (default: the global group),
    the same answer on every rank: a MAX all-reduce of one number, a collective that
    every rank of the group must call. Without an initialized group of several
    processes, ``flag`` itself (no communication). ``device``: the caller's device, for
    :func:`collective_device`.

    For decisions that differ between ranks but must be taken together, e.g. when an
    optimizer runs a probe whose products are all-reduced: a rank that probed alone
    would wait for the others, or pair its all-reduce with another collective.
    """
    import torch.distributed as dist

    group = several_ranks(group)
    if group is None:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=collective_device(group, device))
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return bool(t.item() > 0)


def replicate_(module: torch.nn.Module, group=None) -> None:
    """Copy the parameters and buffers of ``group``'s first rank (default group: rank 0)
    into ``module`` on every rank of ``group``, in place: a broadcast per tensor, a
    collective that every rank must call. Without an initialized group of several
    processes, nothing happens.

    Replicas trained by the same steps on every rank (``spectra train`` under torchrun)
    stay bit-identical on the CPU, but a GPU's non-deterministic kernels (atomics in
    cuDNN's backward, scatter-adds) let them drift apart, and training is chaotic enough
    to amplify the drift: a probe whose products are all-reduced over the ranks would
    then mix different models. Replicating first probes the first rank's model (the one
    whose rows rank 0 writes) exactly.
    """
    import torch.distributed as dist

    group = several_ranks(group)
    if group is None:
        return
    src = dist.get_global_rank(group, 0) if group is not dist.group.WORLD else 0
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t, src=src, group=group)


def shard(num_samples: int, rank: int, world_size: int) -> slice:
    """The contiguous part of ``range(num_samples)`` that rank ``rank`` of
    ``world_size`` holds: sizes differ by at most one, the first ranks larger.
    Every sample is in exactly one shard."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} is not in 0 .. world_size - 1 = {world_size - 1}")
    base, extra = divmod(num_samples, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


__all__ = ["Processes", "any_rank", "collective_device", "env_processes", "processes_from_env",
           "replicate_", "several_ranks", "shard"]

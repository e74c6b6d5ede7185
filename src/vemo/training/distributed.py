"""Data-parallel training with `torch.distributed`: N processes, each on its shard of every epoch.

How it works (the same mechanism as PyTorch's DDP, written out so both training stages use it): every
process builds the same model from the same seed, walks the same shuffled order and takes every N-th
sample of it, computes gradients on its shard, and the gradients are averaged across processes
(all-reduce) before each optimiser step, so all copies stay identical. Batch-norm running statistics
are broadcast from rank 0 after every epoch, so validation (and early stopping) agree on every rank.
Only rank 0 writes files. The backend is NCCL on GPUs and gloo on CPUs.

Launch: `vemo train --devices N` starts N local processes; for several machines, start vemo under
`torchrun --nnodes M --nproc-per-node N ... -m vemo.cli train ...` (or SLURM's srun with the same
variables), which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def setup() -> Dist:
    """Join the process group described by the environment (torchrun / `launch`), or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def device_for(d: Dist, choice: str = "auto") -> torch.device:
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device(f"cuda:{d.local_rank}")


def average_gradients(params, d: Dist) -> None:
    """All-reduce and average the gradients of `params` across processes (no-op when alone)."""
    if not d.active:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= d.world


def sync_buffers(model: nn.Module, d: Dist) -> None:
    """Batch-norm running statistics (and any other buffer) from rank 0 to every process."""
    if d.active:
        for b in model.buffers():
            dist.broadcast(b, 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, fn, args) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    try:
        fn(*args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(fn, devices: int, *args) -> None:
    """Run `fn(*args)` in `devices` local processes forming one process group (single machine)."""
    import torch.multiprocessing as mp

    mp.spawn(_entry, args=(devices, _free_port(), fn, args), nprocs=devices, join=True)

"""Data-parallel training with PyTorch's DistributedDataParallel (DDP): N processes, each on its shard.

Every process builds the same model from the same seed, walks the same shuffled order and takes every
N-th sample of it. Each training stage wraps a small `nn.Module` whose `forward` computes everything a
step needs (`JointObjective`, `FramePretrainer` in the trainer) in DDP, which all-reduces (averages) the
gradients during backward, so the optimiser steps, and the weights, are the same on every process.
Batch-norm running statistics are broadcast from rank 0 after every epoch (`sync_buffers`), so
validation and early stopping agree on every rank; only rank 0 writes files. The backend is NCCL on
GPUs and gloo on CPUs.

Launch: `vemo train --devices N` starts N local processes; for several machines, start vemo under
`torchrun --nnodes M --nproc-per-node N ... -m vemo.cli train ...` (or SLURM's srun with the same
variables), which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

# set by `launch` in each process it starts: the file through which they form their group
_STORE_FILE = "VEMO_DIST_STORE"


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


def _uses_cuda(choice: str) -> bool:
    return choice == "cuda" or (choice == "auto" and torch.cuda.is_available())


def setup(device: str = "auto") -> Dist:
    """Join the process group described by the environment (torchrun / `launch`), or run alone.

    Resuming a multi-machine run needs OUT/ on a shared filesystem: every process reads last.pt.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if _uses_cuda(device):
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        backend = "nccl" if _uses_cuda(device) else "gloo"
        store = os.environ.get(_STORE_FILE)
        if store:  # started by `launch`: rendezvous through a file, no port to pick
            rank = int(os.environ["RANK"])
            dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world)
        else:  # torchrun / srun: MASTER_ADDR and MASTER_PORT from the environment
            dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size(), local)


def agree(flag: bool, d: Dist) -> bool:
    """Rank 0's value of `flag`, on every process (for decisions such as stopping early)."""
    if not d.active:
        return flag
    t = torch.tensor([int(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.broadcast(t, 0)
    return bool(t.item())


def resolve_device(name: str) -> torch.device:
    """`cpu`, `cuda` or `cuda:N`; asking for CUDA where PyTorch has none is an error, not a silent CPU run."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r}: use 'cpu' or 'cuda' (or 'cuda:N')") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but this PyTorch ({torch.__version__}) sees no CUDA GPU")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r}: use 'cpu' or 'cuda' (or 'cuda:N')")
    return device


def device_for(d: Dist, choice: str = "auto") -> torch.device:
    return torch.device(f"cuda:{d.local_rank}") if _uses_cuda(choice) else torch.device("cpu")


def inference_device(choice: str = "auto") -> str:
    """Where a run's own calibration and evaluation go after training: where it trained (rank 0's GPU
    after a data-parallel GPU run), since on a GPU machine these passes would otherwise take minutes
    on the CPU."""
    return "cuda" if _uses_cuda(choice) else "cpu"


def data_parallel(module: nn.Module, d: Dist, device: torch.device, idle=()) -> nn.Module:
    """`module` wrapped in DistributedDataParallel when several processes train; `module` itself alone.

    DDP syncs the parameters that require grad when it is built, and each of them must get a gradient
    in every backward pass (or DDP waits for it): `idle` names parameters that this module's `forward`
    never uses in this stage (the LSTM during frame pretraining, an unused decoder). They are left out
    by switching their `requires_grad` off while DDP is built, then back on, which is cheaper and
    stricter than `find_unused_parameters=True` (an extra graph traversal every step, and a silently
    unused parameter would no longer be an error). Frozen parameters (requires_grad False) are ignored
    by DDP anyway. Buffers are not broadcast before every forward (`broadcast_buffers=False`): even then
    the last step of an epoch would leave them differing across ranks, so `sync_buffers` sends rank 0's
    once per epoch instead, which gives the same statistics.
    """
    if not d.active:
        return module
    from torch.nn.parallel import DistributedDataParallel

    idle = [p for p in idle if p.requires_grad]
    for p in idle:
        p.requires_grad_(False)
    try:
        return DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )
    finally:
        for p in idle:
            p.requires_grad_(True)


def sync_buffers(model: nn.Module, d: Dist) -> None:
    """Batch-norm running statistics (and any other buffer) from rank 0 to every process."""
    if d.active:
        for b in model.buffers():
            dist.broadcast(b, 0)


def finish() -> None:
    """Leave the process group together: wait for every process (rank 0 writes files and evaluates
    after the last collective while the others are done), then destroy it. A gloo process that destroys
    its group while a peer is still busy was seen to abort (SIGABRT, about one run in fifteen here)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _entry(rank: int, world: int, store: str, fn, args) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), **{_STORE_FILE: store})
    try:
        fn(*args)
        finish()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(fn, devices: int, *args) -> None:
    """Run `fn(*args)` in `devices` local processes forming one process group (single machine).

    The processes meet through a file in a fresh temporary folder rather than a TCP port: a port found
    free by the launcher could be taken by another program before rank 0 binds it, and two runs started
    at once could pick the same one."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="vemo-dist-") as folder:
        store = str(Path(folder) / "store")
        mp.spawn(_entry, args=(devices, store, fn, args), nprocs=devices, join=True)

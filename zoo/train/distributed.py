"""Distributed training under torchrun: one process per device, DistributedDataParallel, gloo or nccl.

    torchrun --nproc-per-node 2 -m zoo train lenet          # 2 CPU processes (gloo)
    torchrun --nproc-per-node 8 -m zoo train resnet50 ...   # 8 GPUs (nccl)

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them the trainer runs as one process.
Each process reads its share of every epoch (a DistributedSampler), --batch-size is per process,
and only rank 0 prints and writes the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch

_T = TypeVar("_T")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device_kind: str) -> Dist:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU); Dist() when alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as td

    if not td.is_initialized():
        td.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Dist(td.get_rank(), td.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def wrap(model: torch.nn.Module, dist: Dist, device: torch.device) -> torch.nn.Module:
    if dist.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def broadcast_object(obj: _T, dist: Dist) -> _T:
    """Rank 0's `obj` on every rank (e.g. a decision only rank 0 can make)."""
    if dist.world == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def teardown(dist: Dist) -> None:
    if dist.world > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()

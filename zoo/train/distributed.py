"""Distributed training under torchrun: one process per device, DistributedDataParallel, gloo or nccl.

    torchrun --nproc-per-node 2 -m zoo train lenet          # 2 CPU processes (gloo)
    torchrun --nproc-per-node 8 -m zoo train resnet50 ...   # 8 GPUs (nccl)
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 -m zoo train ...

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them the trainer runs as one process.
Each process reads its share of every epoch (a DistributedSampler over the GLOBAL rank, so the shares of
all nodes together are the epoch, each image once), --batch-size is per process (the global batch is
--batch-size x WORLD_SIZE), and only rank 0 prints and writes the run directory. Every process computes
with rank 0's thread count: the count changes the order floats are summed in, and a restarted group
(zoo/train/elastic.py) must sum as the killed one did.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import sys
import time
from dataclasses import dataclass
from typing import TypeVar

import torch

from ..text import plural

_T = TypeVar("_T")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    launchers: tuple[str, ...] = ()  # "host:PID" of the process that started each rank (torchrun's agent)
    nodes: int = 1  # torchrun's agents (GROUP_WORLD_SIZE), else the distinct launchers

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def hosts(self) -> int:
        return len({launcher.rsplit(":", 1)[0] for launcher in self.launchers}) or 1


def launcher() -> str:
    """This process's launcher, "host:PID": under torchrun its agent, which outlives the restarts of its
    workers, so a restarted group recognises the run its killed predecessor wrote."""
    return f"{socket.gethostname()}:{os.getppid()}"


def setup(device_kind: str) -> Dist:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU), every rank computing with
    rank 0's thread count; Dist() of this one process when alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(launchers=(launcher(),))
    import torch.distributed as td

    if not td.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        store = _group_store(world)
        if store is None:
            td.init_process_group(backend=backend)
        else:
            td.init_process_group(backend=backend, store=store, rank=int(os.environ["RANK"]), world_size=world)
    dist = Dist(td.get_rank(), td.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    launchers = tuple(gather_object(launcher(), dist))
    nodes = int(os.environ.get("GROUP_WORLD_SIZE", "0")) or len(set(launchers))
    dist = dataclasses.replace(dist, launchers=launchers, nodes=nodes)
    same_threads(dist)
    return dist


def _group_store(world: int) -> torch.distributed.Store | None:
    """The store this group's process group meets in, where torchrun's agent shares its own store with
    the workers (TORCHELASTIC_USE_AGENT_STORE, c10d rendezvous's default): that store outlives a group
    torchrun restarts, and the next group would read the killed one's keys (each rank's address) and
    connect to dead workers (pytorch/pytorch issue 135712; TORCHELASTIC_RESTART_COUNT cannot tell the
    groups apart: an agent restarted only because another node failed does not count it). So each group
    meets under a generation of its own (`_generation`). None elsewhere: init_process_group's env://."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    import torch.distributed as td

    agent = td.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False)
    return td.PrefixStore(f"zoo/{_generation(agent, int(os.environ['RANK']), world)}/group", agent)


def _generation(store: torch.distributed.Store, rank: int, world: int) -> int:
    """A number every rank of this group agrees on and no earlier group of the job used: rank 0 takes the
    next one, every other rank checks in under the number it reads with a random nonce, and rank 0
    answers each check-in under its number; a rank that read an earlier group's number (rank 0 has not
    taken the next one yet) finds that group's answer, not its own nonce, and reads again."""
    if rank == 0:
        generation = store.add("zoo/generation", 1)
        keys = [f"zoo/{generation}/in/{r}" for r in range(1, world)]
        store.wait(keys)
        for r, key in enumerate(keys, start=1):
            store.set(f"zoo/{generation}/go/{r}", store.get(key))
        return generation
    nonce = secrets.token_hex(8).encode()
    while True:
        generation = store.add("zoo/generation", 0)
        store.set(f"zoo/{generation}/in/{rank}", nonce)
        answer = f"zoo/{generation}/go/{rank}"
        deadline = time.monotonic() + 1.0
        while not store.check([answer]) and time.monotonic() < deadline:  # (wait() with a timeout warns)
            time.sleep(0.02)
        if store.check([answer]) and store.get(answer) == nonce:
            return generation
        time.sleep(0.05)  # not answered yet, or an earlier group's answer: rank 0 has not taken its number


def same_threads(dist: Dist, count: int | None = None) -> None:
    """Every rank computes with `count` threads (None: rank 0's count)."""
    count = broadcast_object(count or torch.get_num_threads(), dist)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


def describe(dist: Dist, batch_size: int, accumulate: int = 1) -> str:
    """The processes of the run and its global batch, for the first line ("" for one process):
    " x 4 processes (2 nodes x 2), global batch 128 (32 per process)"."""
    if dist.world == 1:
        return ""
    per_node = dist.world // dist.nodes if dist.world % dist.nodes == 0 else None
    shape = plural(dist.nodes, "node") + (f" x {per_node}" if per_node else "")
    if dist.hosts != dist.nodes:
        shape += f" on {plural(dist.hosts, 'host')}"
    batch = f"global batch {batch_size * dist.world} ({batch_size} per process"
    if accumulate > 1:
        batch += f", {batch_size * dist.world * accumulate} per step with --accumulate {accumulate}"
    return f" x {dist.world} processes ({shape}), {batch})"


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


def gather_object(obj: _T, dist: Dist) -> list[_T]:
    """Every rank's `obj`, in rank order, on every rank."""
    if dist.world == 1:
        return [obj]
    out: list = [None] * dist.world
    torch.distributed.all_gather_object(out, obj)
    return out


def barrier(dist: Dist) -> None:
    """Wait for every rank: the ranks of a finished run leave together (a rank that tore its process group
    down while rank 0 still wrote the run's last files sometimes died in gloo's teardown, SIGABRT, which
    torchrun counts as a failure)."""
    if dist.world > 1:
        torch.distributed.barrier()


def exit_worker() -> None:
    """End a torchrun worker whose run has finished (its process group torn down) at once, with status 0,
    its output flushed: a worker left to Python's and the C++ runtime's exit sometimes died there of
    SIGABRT ("terminate called without an active exception", torch 2.13 with gloo: 4 of about 40
    torchrun runs on this loaded 2-core machine, always a rank other than 0, after the run was written;
    the barrier before the teardown made it rarer, not gone), which torchrun takes for a failure.
    Nothing of the run is left to do at exit: every file is written and closed. A process that is not a
    torchrun worker returns."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def teardown(dist: Dist) -> None:
    if dist.world > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()

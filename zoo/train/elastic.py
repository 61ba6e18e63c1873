"""`zoo train` across nodes under torchrun: the run directory every node shares, and the group's restarts.

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        --max-restarts 3 -m zoo train resnet18 --data /shared/photos --output /shared/runs/r18

    cfg, checkpoint = continued(cfg, dist, log)   # a group started again: the killed group's run
    check_shared(run_dir, dist, held)    # once rank 0 holds the run directory: every rank sees it

Rank 0 writes the run, but every rank reads its checkpoint when the group is started again, so the run
directory must be on storage every node mounts at the same path. `check_shared` makes sure at start:
rank 0 writes rundir.GROUP into it (a fresh random token and the launchers of the group), every rank
reads it back, and where one does not within SHARED_WAIT_S every rank stops with one line naming the
directory.

When a worker fails, torchrun (--max-restarts N) stops the group's other workers and runs the same
command again on every node. TORCHELASTIC_RESTART_COUNT cannot say so: an agent that restarts its
workers only because another node's failed does not count it. So `continued` looks, in every group
torchrun starts, for the run a killed group of the same job wrote (--output, or the newest runs/ARCH-*
without one), known by its GROUP file naming one of this group's launchers ("host:PID" of torchrun's
agents, which outlive their workers): a directory some other job wrote is refused as before ("already
exists"), never taken over. With a checkpoint, the run resumes from it as `--resume` would (every
epoch's data order and random numbers are functions of (seed, epoch, rank), the checkpoint holds the
rest), with the thread count the run recorded; without one (killed before its first epoch ended), the
killed group's files are removed and the run begins again. The killed rank 0's lock (zoo.runlock) died
with it. How the restarted workers meet without the killed ones' addresses: distributed._group_store.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import socket
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from typing import Callable

from .. import atomic, rundir, runlock, threads
from ..models import get_spec
from ..rundir import RunError
from . import distributed
from .checks import default_output
from .config import TrainConfig, TrainError, load_checkpoint

RUN_ID = "TORCHELASTIC_RUN_ID"  # set by torchrun in every worker
SHARED_WAIT_S = 5.0  # how long a rank looks for the file rank 0 wrote (a network filesystem's caches)
_POLL_S = 0.1


def torchrun_command(
    zoo_args: list[str],
    *,
    nodes: int,
    per_node: int,
    endpoint: str,
    is_host: bool | None = None,
    local_addr: str | None = None,
    max_restarts: int = 0,
) -> list[str]:
    """The command line of one node's launcher of a c10d job: `python -m torch.distributed.run ... -m zoo
    ZOO_ARGS`. `is_host`: whether this launcher hosts the rendezvous store (None: torchrun guesses from
    `endpoint`'s address, which several launchers on one machine all have)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nodes), "--nproc-per-node"]
    command += [str(per_node), "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint]
    if is_host is not None:
        command += ["--rdzv-conf", f"is_host={int(is_host)}"]
    if local_addr:
        command += ["--local-addr", local_addr]
    return [*command, "--max-restarts", str(max_restarts), "-m", "zoo", *zoo_args]


def under_torchrun() -> bool:
    """Whether torchrun started this process (it may start the group again)."""
    return RUN_ID in os.environ


def continued(cfg: TrainConfig, dist: distributed.Dist, log: Callable[[str], None]) -> tuple[TrainConfig, dict | None]:
    """The configuration a run goes on with and the checkpoint it resumes from (None: it begins). For a
    group torchrun started again: the run the killed group wrote, resumed from its checkpoint, or begun
    again where it has none; otherwise `cfg` as it is (and --resume's checkpoint)."""
    if cfg.resume or not under_torchrun():
        return cfg, load_checkpoint(cfg.resume) if cfg.resume else None
    found = _killed_run(cfg, dist.launchers) if dist.main else None
    found = distributed.broadcast_object(found, dist)
    if found is None:
        return cfg, None
    path, token, resumable = pathlib.Path(found[0]), found[1], found[2]
    _seen_everywhere(path, token, dist)  # every rank is to read its checkpoint
    if not resumable:
        problem = _clear(path) if dist.main else None
        if distributed.broadcast_object(problem, dist):
            raise TrainError(problem)
        if dist.main:
            log(f"torchrun started the group again: {path} has no checkpoint yet; starting it again")
        return replace(cfg, output=str(path)), None
    checkpoint = load_checkpoint(path)
    if dist.main:
        log(
            f"torchrun started the group again: resuming {path} from its checkpoint "
            f"(after epoch {checkpoint['state']['epoch']})"
        )
    distributed.same_threads(dist, threads.recorded(path) if dist.main else None)
    return replace(cfg, output=str(path), resume=str(path)), checkpoint


def check_shared(path: pathlib.Path, dist: distributed.Dist, held: ExitStack) -> None:
    """Rank 0 writes rundir.GROUP into run directory `path`, which it holds (its lock is in `held`), and
    every rank reads it back; TrainError on every rank, one line naming `path`, where a rank does not see
    it. Rank 0 removes the file again where it is all the run wrote (refused, or stopped by an error
    before writing anything), so that a directory the lock made goes with the lock, as outside torchrun.
    Only under torchrun: a process started otherwise writes nothing."""
    if not under_torchrun():
        return
    token = None
    if dist.main:
        token = secrets.token_hex(8)
        record = {"token": token, "launchers": sorted(set(dist.launchers)), "processes": dist.world}
        atomic.write_text(path / rundir.GROUP, json.dumps(record, indent=1) + "\n")
        held.callback(_drop_if_alone, path)  # before the lock's release
    _seen_everywhere(path, distributed.broadcast_object(token, dist), dist)


def _drop_if_alone(path: pathlib.Path) -> None:
    """Remove run directory `path`'s GROUP file where the directory holds nothing else (but its lock)."""
    try:
        names = {entry.name for entry in os.scandir(path)}
    except OSError:
        return
    if names <= {rundir.GROUP, rundir.LOCK}:
        (path / rundir.GROUP).unlink(missing_ok=True)


def _seen_everywhere(path: pathlib.Path, token: str, dist: distributed.Dist) -> None:
    """TrainError on every rank where a rank does not find `token` in `path`/GROUP within SHARED_WAIT_S."""
    seen = [] if dist.main else _wait_for(path / rundir.GROUP, token)
    blind = [who for who in distributed.gather_object(seen, dist) if who]
    if blind:
        rank, host = blind[0]
        raise TrainError(
            f"{path} is not on storage every node shares: rank {rank} on {host} does not see the "
            f"{rundir.GROUP} rank 0 wrote there; give --output a directory on a filesystem every node "
            "mounts at the same path (NFS, a cluster filesystem): a restarted group resumes from the "
            "checkpoint there"
        )


def _wait_for(file: pathlib.Path, token: str) -> list:
    """[] where `file` holds `token` within SHARED_WAIT_S; else [this rank, this host]."""
    deadline = time.monotonic() + SHARED_WAIT_S
    while _token(file) != token:
        if time.monotonic() >= deadline:
            return [int(os.environ.get("RANK", "0")), socket.gethostname()]
        time.sleep(_POLL_S)
    return []


def _token(file: pathlib.Path) -> str | None:
    return _record(file).get("token")


def _record(file: pathlib.Path) -> dict:
    """A GROUP file's contents ({} where there is none or it is not one)."""
    try:
        record = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _killed_run(cfg: TrainConfig, launchers: tuple[str, ...]) -> tuple[str, str, bool] | None:
    """The run directory this job's killed group wrote (--output, else the newest of the default ones),
    known by its GROUP file naming one of `launchers`: (path, its token, whether it holds a checkpoint);
    None where there is none."""
    if cfg.output:
        candidates = [pathlib.Path(cfg.output)]
    else:
        pattern = default_output(get_spec(cfg.arch).name, "*")
        candidates = sorted(pattern.parent.glob(pattern.name), reverse=True)
    for path in candidates:
        record = _record(path / rundir.GROUP)
        if set(record.get("launchers", ())) & set(launchers):
            return str(path), record.get("token"), (path / rundir.CHECKPOINT).is_file()
    return None


def _clear(path: pathlib.Path) -> str | None:
    """Remove what a group killed before its first checkpoint wrote into run directory `path` (its
    TensorBoard events, its GROUP file), holding the lock: the directory is then a new run's. The one-line
    problem where a process holds the lock, else None."""
    try:
        with runlock.lock(path, advice="wait until it has ended"):
            for entry in os.scandir(path):
                if entry.name != rundir.LOCK and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
    except RunError as e:
        return str(e)
    return None

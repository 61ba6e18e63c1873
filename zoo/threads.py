"""How many threads torch computes with, and how its idle threads wait: `--threads` for the commands
that run a model in torch (train, evaluate, features, visualize).

    @threads.option()                   # the one --threads definition (classify and serve pass their help)
    def command(..., threads): ...
    n = threads.configure(threads)      # first thing in the command, before torch is imported

The default avoids the collapse of a shared machine (measured in benchmarks/contention.md): torch's
OpenMP threads meet at a barrier after every operation, so one thread that another process has taken
the CPU from stalls all of them, and the others spin while they wait. So the default is one thread per
CPU that other processes leave free (measured over a moment from /proc/stat, for the CPUs this process
may run on), and no more than its cgroup's CPU quota allows (`zoo.hardware.usable_cpu_count`: a pod
limited to 2 CPUs on a 64-core node computes with 2 threads, not 64). With fewer threads than CPUs,
idle threads also sleep instead of spinning (OMP_WAIT_POLICY=PASSIVE, which OpenMP reads once, when
torch loads it); with every CPU they spin as before, which is faster on a quiet machine (LeNet's epoch:
0.8 s spinning, 1.0-1.2 s sleeping, on 2 cores). An explicit --threads, or OMP_NUM_THREADS /
OMP_WAIT_POLICY in the environment, win.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Callable

import click

from .hardware import usable_cpu_count, usable_cpus

if TYPE_CHECKING:
    from click.decorators import FC

HELP = (
    "Threads torch computes with.  [default: one per CPU that other processes leave free, "
    "measured at start, within the container's CPU quota; $OMP_NUM_THREADS if set]"
)
WINDOW_S = 0.2  # how long the machine is watched to see how busy it is


def option(help: str = HELP, **kwargs: Any) -> Callable[[FC], FC]:
    """The `--threads N` option (N >= 1; None when not given); `kwargs`: click.option's others (envvar)."""
    return click.option("--threads", type=click.IntRange(1), default=None, help=help, **kwargs)


def default_threads(cpus: int, busy: float | None, quota: int | None = None) -> int:
    """Threads for `cpus` CPUs of which other processes keep `busy` CPUs' worth busy: one per free CPU
    (a CPU at least half idle counts as free), at least 1, at most `cpus`; all of them when `busy` is
    unknown; and at most `quota`, the CPUs a cgroup quota lets this process use (None: no quota)."""
    free = max(1, cpus) if busy is None else max(1, min(cpus, math.floor(cpus - busy + 0.5)))
    return free if quota is None else max(1, min(free, quota))


def busy_cpus(cpus: list[int], window: float = WINDOW_S) -> float | None:
    """CPUs' worth of work other processes did on `cpus` over the next `window` seconds (this process
    sleeps meanwhile), from /proc/stat; else the 1-minute load average's share of them; None if neither
    can be read."""
    before = cpu_times(cpus)
    if before is None:
        try:
            # the load average is the whole machine's: its share on `cpus` is over all the machine's CPUs
            return os.getloadavg()[0] * len(cpus) / (os.cpu_count() or len(cpus))
        except (AttributeError, OSError):
            return None
    time.sleep(window)
    after = cpu_times(cpus) or {}
    busy = 0.0
    for cpu, (idle0, total0) in before.items():
        idle1, total1 = after.get(cpu, (idle0, total0))
        if total1 > total0:
            busy += 1 - (idle1 - idle0) / (total1 - total0)
    return busy


def cpu_times(cpus: list[int]) -> dict[int, tuple[int, int]] | None:
    """{cpu: (idle + iowait ticks, all ticks)} for `cpus`, from /proc/stat (Linux)."""
    wanted, out = {f"cpu{c}": c for c in cpus}, {}
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                name, *ticks = line.split()
                if name in wanted:
                    values = [int(t) for t in ticks[:8]]  # user nice system idle iowait irq softirq steal
                    out[wanted[name]] = (values[3] + values[4], sum(values))
    except (OSError, ValueError, IndexError):
        return None
    return out or None


def configure(threads: int | None = None) -> int:
    """Make torch compute with `threads` threads (None: $OMP_NUM_THREADS, else `default_threads` for
    the machine as it is now, within the CPU quota) and return the number. Called before torch is first
    imported with fewer threads than CPUs, it also makes OpenMP's idle threads sleep rather than spin,
    unless $OMP_WAIT_POLICY says otherwise."""
    cpus = usable_cpus()
    if threads is None:
        threads = _env_threads()
    if threads is None:
        threads = default_threads(len(cpus), busy_cpus(cpus), usable_cpu_count())
    if threads < len(cpus) and "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def recorded(run: str | os.PathLike) -> int | None:
    """The thread count a run's card records (`zoo train` writes it), or None where there is none:
    resuming with it gives the weights an uninterrupted run gives, bit for bit (the count changes the
    order in which floats are summed). The card is read without torch, which is not imported yet."""
    from .card import ModelCard
    from .rundir import CARD

    try:
        n = ModelCard.load(os.path.join(run, CARD)).provenance.get("threads")
    except (OSError, ValueError):  # no card, or a damaged one (CardError): the trainer says what is wrong
        return None
    return n if isinstance(n, int) and n >= 1 else None


def _env_threads() -> int | None:
    """$OMP_NUM_THREADS as a positive int (torch reads it too; torchrun sets it to 1 per process)."""
    try:
        n = int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:
        return None
    return n if n >= 1 else None


__all__ = ["HELP", "busy_cpus", "configure", "cpu_times", "default_threads", "option", "recorded", "usable_cpus"]

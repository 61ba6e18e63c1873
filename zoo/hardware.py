"""What this machine's CPU can compute natively: the facts every precision choice and benchmark rests on.

    >>> from zoo.hardware import cpu
    >>> cpu().name, cpu().flags                    # "Intel(R) Xeon(R) ...", {"avx512_vnni", "amx_int8", ...}
    >>> native_missing("bf16")                     # None where bfloat16 runs natively, else why not
    >>> usable_cpu_count()                         # 2 in a pod limited to 2 CPUs on a 64-core node

Read from /proc/cpuinfo (Linux; x86 flags and aarch64 features); elsewhere the flags are unknown and
reduced precision on the CPU is refused rather than guessed. Imports nothing heavy.
"""

from __future__ import annotations

import functools
import math
import os
import pathlib
import platform
from dataclasses import dataclass

# The flags every benchmark says yes or no to, beside the CPU's name (what decides int8 and bf16 speed on x86).
BENCHMARK_FLAGS = ("avx512_vnni", "amx_int8", "amx_bf16", "avx512_bf16")
# The flags that decide how fast reduced precision runs, as Linux names them (x86, then aarch64).
RELEVANT_FLAGS = (
    "avx2",
    "avx512f",
    "avx_vnni",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
    "asimddp",
    "bf16",
    "fphp",
    "i8mm",
)
# Native arithmetic per precision: any one of these flags (int8 and fp32 run everywhere).
NATIVE = {"bf16": ("avx512_bf16", "amx_bf16", "bf16"), "fp16": ("avx512_fp16", "amx_fp16", "fphp")}


@dataclass(frozen=True)
class Cpu:
    name: str
    flags: frozenset[str]
    cores: int | None

    @property
    def relevant_flags(self) -> list[str]:
        return [f for f in RELEVANT_FLAGS if f in self.flags]

    def to_dict(self) -> dict:
        return {"name": self.name, "flags": self.relevant_flags, "cores": self.cores, "machine": platform.machine()}


@functools.lru_cache(maxsize=1)
def cpu() -> Cpu:
    """This machine's CPU: model name and flags (from /proc/cpuinfo where it exists), and the CPUs this
    process may use (`usable_cpu_count`)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "cpu model") and name in ("", platform.machine(), platform.processor()):
                    name = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return Cpu(name or "unknown CPU", frozenset(flags), usable_cpu_count())


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity), else 0..cpu_count-1: the ones whose load
    zoo.threads watches. How many CPUs' worth it may use is `usable_cpu_count` (a quota may cap it)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def usable_cpu_count(root: str | os.PathLike = "/") -> int:
    """How many CPUs this process may keep busy: the CPUs it may run on (its affinity), capped by its
    cgroup's CPU quota (a container limited to 2 CPUs on a 64-core node: 2), rounded up, at least 1.
    Every CPU count in the package is this one. `root` is where /proc and /sys are (tests build a tree)."""
    cpus = len(usable_cpus())
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def cgroup_cpu_quota(root: str | os.PathLike = "/") -> float | None:
    """The CPU time this process's cgroups allow, in CPUs (quota / period; the smallest of its cgroup and
    their parents, in cgroup v2's cpu.max and v1's cpu.cfs_quota_us / cpu.cfs_period_us), or None where
    nothing limits it or it cannot be read. The cgroups are the ones /proc/self/cgroup names, under the
    usual mounts (/sys/fs/cgroup, and /sys/fs/cgroup/unified or /sys/fs/cgroup/<controllers> beside v1)."""
    root = pathlib.Path(root)
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    mounts, quotas = root / "sys/fs/cgroup", []
    for line in lines:  # "0::/PATH" (v2), "4:cpu,cpuacct:/PATH" (v1)
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "?", "")
        if controllers == "":
            places, name = (mounts, mounts / "unified"), "cpu.max"
        elif "cpu" in controllers.split(","):
            places, name = (mounts / controllers, mounts / "cpu"), "cpu.cfs_quota_us"
        else:
            continue
        for mount in places:
            cgroup = mount / path.strip().lstrip("/")
            for folder in (cgroup, *cgroup.parents):  # a parent's limit holds for its children too
                if not folder.is_relative_to(mount):
                    break
                quota = _quota(folder / name)
                if quota is not None:
                    quotas.append(quota)
    return min(quotas, default=None)


def _quota(file: pathlib.Path) -> float | None:
    """One cgroup's quota in CPUs: cpu.max ("200000 100000"; "max 100000": none), or cpu.cfs_quota_us
    (-1: none) over cpu.cfs_period_us beside it; None where there is none or the file is missing."""
    try:
        if file.name == "cpu.max":
            quota, _, period = file.read_text().strip().partition(" ")
        else:
            quota, period = file.read_text().strip(), (file.parent / "cpu.cfs_period_us").read_text().strip()
        if quota == "max" or int(quota) <= 0:
            return None
        return int(quota) / int(period or 100000)
    except (OSError, ValueError, ZeroDivisionError):
        return None


# x86 int8 dot products without VNNI go through a 16-bit intermediate that saturates (OpenVINO's "saturation
# issue": SSE, AVX2 and AVX-512 without VNNI); with any of these, int8 arithmetic is exact.
EXACT_INT8 = ("avx512_vnni", "avx_vnni", "amx_int8")


def int8_saturates(the_cpu: Cpu | None = None) -> bool:
    """Whether this CPU's int8 kernels may saturate: x86 (it has AVX2) without VNNI or AMX."""
    c = the_cpu or cpu()
    return "avx2" in c.flags and not c.flags & set(EXACT_INT8)


def native_missing(precision: str, the_cpu: Cpu | None = None) -> str | None:
    """None where this CPU computes `precision` natively; else one line saying what it lacks.

    bf16 needs AVX512-BF16 or AMX-BF16 (x86) or the BF16 extension (Arm); fp16 needs AVX512-FP16 or
    AMX-FP16 (x86) or FP16 arithmetic (Arm). Elsewhere those would be emulated, slower than fp32.
    """
    if precision not in NATIVE:
        return None
    c = the_cpu or cpu()
    wanted = NATIVE[precision]
    if c.flags & set(wanted):
        return None
    return (
        f"{precision} is not native on this CPU ({c.name}: no {' / '.join(wanted[:2])}); "
        "it would be emulated, slower than fp32: use fp32 or int8 here"
    )

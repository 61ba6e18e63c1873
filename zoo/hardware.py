"""What this machine's CPU can compute natively: the facts every precision choice and benchmark rests on.

    >>> from zoo.hardware import cpu
    >>> cpu().name, cpu().flags                    # "Intel(R) Xeon(R) ...", {"avx512_vnni", "amx_int8", ...}
    >>> native_missing("bf16")                     # None where bfloat16 runs natively, else why not

Read from /proc/cpuinfo (Linux; x86 flags and aarch64 features); elsewhere the flags are unknown and
reduced precision on the CPU is refused rather than guessed. Imports nothing heavy.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass

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
    """This machine's CPU: model name and flags (from /proc/cpuinfo where it exists)."""
    import os

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
    return Cpu(name or "unknown CPU", frozenset(flags), os.cpu_count())


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

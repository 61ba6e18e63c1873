"""Which device a `--device` / `device=` name means here: the one rule for every command and the library.

    >>> check("cuda:1")   # "cuda:1": a device name (auto, cpu, cuda, cuda:N), else DeviceError; no torch
    >>> resolve("auto")   # "cuda" where torch sees a CUDA device, else "cpu"
    >>> resolve("cuda")   # DeviceError on a machine without CUDA: one line, the fix in it

torch is imported by `resolve`, not by this module.
"""

from __future__ import annotations

import re

NAMES = ("auto", "cpu", "cuda")  # and cuda:N, the N-th CUDA device
_CUDA_N = re.compile(r"cuda:\d+")


class DeviceError(ValueError):
    """A device that is not here or not known; the message is one line and says what to use instead."""


def check(name: str) -> str:
    """`name` if it names a device (one of NAMES, or cuda:N), else DeviceError. Says nothing about
    whether the device is here (that is `resolve`), so it needs no torch."""
    if name in NAMES or _CUDA_N.fullmatch(name):
        return name
    raise DeviceError(f"--device {name}: use {', '.join(NAMES)} or cuda:N")


def cuda_index(name: str | None) -> int | None:
    """N for "cuda:N"; None for any other name (auto, cpu, cuda: the current device)."""
    return int(name.partition(":")[2]) if name and _CUDA_N.fullmatch(name) else None


def resolve(name: str | None = "auto") -> str:
    """ "auto" (or None): "cuda" where torch sees a CUDA device, else "cpu". "cpu" as it is; "cuda" or
    "cuda:N" as it is where CUDA is available, DeviceError where it is not; anything else DeviceError."""
    name = check(name or "auto")
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {name}: no CUDA device here (torch sees none); use --device cpu")
    return name

"""Which device a `--device` / `device=` name means here: the one rule for every command and the library.

    >>> resolve("auto")   # "cuda" where torch sees a CUDA device, else "cpu"
    >>> resolve("cuda")   # DeviceError on a machine without CUDA: one line, the fix in it

torch is imported by `resolve`, not by this module.
"""

from __future__ import annotations


class DeviceError(ValueError):
    """A device that is not here or not known; the message is one line and says what to use instead."""


def resolve(name: str | None = "auto") -> str:
    """ "auto" (or None): "cuda" where torch sees a CUDA device, else "cpu". "cpu" as it is; "cuda" or
    "cuda:N" as it is where CUDA is available, DeviceError where it is not; anything else DeviceError."""
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA device here (torch sees none); use --device cpu")
        return name
    raise DeviceError(f"--device {name}: use auto, cpu or cuda")

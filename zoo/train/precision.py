"""How a training run computes: float32, or mixed precision (`--amp`), and the memory format.

    p = choose("auto", torch.device("cpu"), model, make_batch, criterion)
    p.dtype, p.note        # "float32", "float32 (--amp auto: no native bfloat16 on this CPU, ...)"

`--amp on`: on CUDA, float16 autocast with a gradient scaler (as before); on the CPU, bfloat16 autocast,
only where the CPU computes bfloat16 natively (AVX512-BF16 or AMX, `zoo.hardware`), and a one-line
refusal elsewhere (emulated bfloat16 is slower than float32). `--amp bfloat16` asks for bfloat16 autocast
anywhere, emulated where not native (to check a model's accuracy in it before moving to a machine that
has it; the first line says it is emulated). `--amp auto` (the default) turns it on
where it is native and a short probe (a few training steps of the real model on a random batch, on a
copy of it) measures it faster than float32 by PROBE_MARGIN; `--amp off` never. The choice is recorded in
the checkpoint, so that `--resume` computes the same way without probing again.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable

import torch

from zoo import hardware
from zoo.precisions import DTYPES, precision_of

from .config import AMP_MODES, TrainError

PROBE_STEPS = 3  # timed training steps per precision, after one untimed
PROBE_MARGIN = 1.1  # auto turns mixed precision on where the probe measures it this much faster


@dataclass(frozen=True)
class Precision:
    # what the forward pass computes in, as the checkpoint and the card record it: a dtype of
    # zoo.precisions.DTYPES ("float32", "bfloat16" or "float16")
    dtype: str
    note: str  # how it was chosen, for the run's first line

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES.values():
            raise TrainError(f"unknown training precision {self.dtype!r}; use one of {', '.join(DTYPES.values())}")

    @property
    def name(self) -> str:
        """The precision as a card names it: fp32, bf16 or fp16."""
        return precision_of(self.dtype)

    @property
    def autocast(self) -> torch.dtype | None:
        """The autocast dtype (torch's, looked up by name), None for float32."""
        return None if self.dtype == DTYPES["fp32"] else getattr(torch, self.dtype)

    @property
    def scaled(self) -> bool:
        """Whether the loss needs a gradient scaler (float16: its small range underflows gradients)."""
        return self.dtype == DTYPES["fp16"]


FLOAT32 = Precision(DTYPES["fp32"], DTYPES["fp32"])


def mode(amp: str | bool) -> str:
    """--amp as one of AMP_MODES (the checkpoints of earlier versions stored a flag)."""
    if isinstance(amp, bool):
        return "on" if amp else "off"
    if amp not in AMP_MODES:
        raise TrainError(f"--amp {amp}: use one of {', '.join(AMP_MODES)}")
    return amp


def native(device: torch.device) -> tuple[str | None, str | None]:
    """(the reduced precision this device trains in natively, or None; why not, where None)."""
    if device.type == "cuda":
        return DTYPES["fp16"], None
    if device.type != "cpu":
        return None, f"no mixed precision on {device.type}"
    cpu = hardware.cpu()
    if hardware.native_missing("bf16", cpu) is None:
        return DTYPES["bf16"], None
    flags = " or ".join(f.upper().replace("_", "-") for f in hardware.NATIVE["bf16"][:2])
    return None, f"no native bfloat16 on this CPU, {cpu.name} (no {flags}): emulated, slower than float32"


def check(amp: str | bool, device: torch.device) -> str:
    """--amp as one of AMP_MODES; TrainError, one line, for `on` where `device` has no native reduced
    precision (before anything is loaded)."""
    amp = mode(amp)
    dtype, missing = native(device)
    if amp == "on" and dtype is None:
        raise TrainError(
            f"--amp on: {missing}; use --amp auto (the default) or off (--amp bfloat16 runs it emulated, "
            "to check accuracy)"
        )
    return amp


def choose(
    amp: str | bool,
    device: torch.device,
    model: torch.nn.Module,
    example: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    criterion: torch.nn.Module,
) -> Precision:
    """The run's precision for --amp `amp` (TrainError for `on` where it is not native). `example` makes
    one batch (inputs as the model takes them, labels) for auto's probe, where there is one."""
    amp = check(amp, device)
    if amp == "off":
        return FLOAT32
    dtype, missing = native(device)
    if amp == "bfloat16":
        bf16 = DTYPES["bf16"]
        emulated = "; emulated here: slower than float32" if dtype != bf16 and device.type == "cpu" else ""
        return Precision(bf16, f"bfloat16 autocast (--amp bfloat16{emulated})")
    if dtype is None:
        return Precision(DTYPES["fp32"], f"float32 (--amp auto: {missing})")
    if amp == "on":
        return Precision(dtype, f"{dtype} autocast (--amp on)")
    batch = example()
    fp32 = probe(model, batch, criterion, None)
    mixed = probe(model, batch, criterion, getattr(torch, dtype))
    speedup = fp32 / mixed
    if speedup >= PROBE_MARGIN:
        return Precision(dtype, f"{dtype} autocast (--amp auto: {speedup:.1f}x float32 in a probe)")
    return Precision(DTYPES["fp32"], f"float32 (--amp auto: {dtype} measured {speedup:.2f}x float32 in a probe)")


def probe(
    model: torch.nn.Module,
    example: tuple[torch.Tensor, torch.Tensor],
    criterion: torch.nn.Module,
    dtype: torch.dtype | None,
    steps: int = PROBE_STEPS,
) -> float:
    """Seconds per training step (forward, loss, backward) of a copy of `model` on `example`, in `dtype`
    autocast (None: float32), over `steps` after an untimed one; the model itself, its batch-norm
    statistics included, is left untouched."""
    net = copy.deepcopy(model).train()
    x, y = example
    device_type = x.device.type

    def step() -> None:
        with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = net(x)
            loss = criterion(out[0] if isinstance(out, tuple) else out, y)
        loss.backward()
        net.zero_grad(set_to_none=True)
        if device_type == "cuda":
            torch.cuda.synchronize()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def memory_format(arch: str) -> torch.memory_format:
    """channels_last where the family measured faster in it (its spec says), else contiguous."""
    from ..models import get_spec

    return torch.channels_last if get_spec(arch).channels_last else torch.contiguous_format

"""Per-layer summary of a model: output shapes, parameters, multiply-accumulates, activation memory.

Shapes are found by running the model on the `meta` device (no memory, no arithmetic), so even VGG-19 is
summarised in well under a second; MACs come from `torch.utils.flop_counter` (FLOPs / 2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .registry import ModelSpec, create, get_spec


class InputTooSmallError(ValueError):
    """The input size leaves some layer with an empty output."""


@dataclass
class LayerRow:
    name: str
    type: str
    output_shape: list[int]  # per image, without the batch axis
    params: int
    macs: int


@dataclass
class Summary:
    name: str
    input_size: list[int]  # [C, H, W]
    num_classes: int
    params: int
    trainable: int
    macs: int
    activation_bytes: int  # float32 outputs of every layer, one image
    layers: list[LayerRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _leaves(model: nn.Module):
    return [(n, m) for n, m in model.named_modules() if n and not list(m.children())]


def summarize(
    name: str,
    input_size: int | tuple[int, int] | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    model: nn.Module | None = None,
) -> Summary:
    """Summarise registered model `name` (or an already built `model` of that architecture)."""
    spec = get_spec(name)
    c = in_channels or spec.input_size[0]
    if input_size is None:
        h, w = spec.input_size[1:]
    elif isinstance(input_size, int):
        h = w = input_size
    else:
        h, w = input_size
    with torch.device("meta"):
        if model is None:
            model = create(spec.name, num_classes=num_classes, in_channels=c)
        else:
            model = model.to("meta")
        model.eval()
        x = torch.empty(1, c, h, w)

    out, rows, counter = _trace(model, x, spec)
    if any(d == 0 for r in rows for d in r.output_shape):
        bad = next(r for r in rows if 0 in r.output_shape)
        raise InputTooSmallError(
            f"{spec.name} cannot take a {h}x{w} input: the output of layer "
            f"{bad.name} ({bad.type}) would be empty {bad.output_shape}"
        )
    per_module = counter.get_flop_counts()
    root = type(model).__name__
    for r in rows:
        r.macs = int(sum(per_module.get(f"{root}.{r.name}", {}).values()) // 2)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    act = sum(4 * _numel(r.output_shape) for r in rows)
    return Summary(
        spec.name, [c, h, w], int(out.shape[1]), params, trainable, int(counter.get_total_flops() // 2), act, rows
    )


def _trace(model: nn.Module, x: torch.Tensor, spec: ModelSpec) -> tuple[torch.Tensor, list[LayerRow], FlopCounterMode]:
    """One forward pass of `x` with hooks on every leaf module and the FLOP counter on: (the output, a row
    per leaf module call (its MACs still 0), the counter). InputTooSmallError where a layer fails."""
    rows: list[LayerRow] = []
    seen: set[int] = set()
    current: list[tuple[str, nn.Module]] = []
    handles = []
    for lname, mod in _leaves(model):

        def pre(m, args, lname=lname):
            current.append((lname, m))

        def post(m, args, out, lname=lname):
            current.pop()
            first = id(m) not in seen
            seen.add(id(m))
            own = sum(p.numel() for p in m.parameters(recurse=False)) if first else 0
            if isinstance(out, torch.Tensor):
                rows.append(LayerRow(lname, type(m).__name__, list(out.shape[1:]), own, 0))

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))

    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            out = model(x)
    except RuntimeError as e:
        if current:
            lname, m = current[-1]
            h, w = x.shape[2:]
            raise InputTooSmallError(
                f"{spec.name} cannot take a {h}x{w} input: the output of layer {lname} "
                f"({type(m).__name__}) would be empty ({str(e).splitlines()[0]}); "
                f"use a larger --input-size (default {spec.input_size[1]})"
            ) from None
        raise
    finally:
        for hd in handles:
            hd.remove()
    return out, rows, counter


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def human(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {suffix}{unit}".rstrip()
    return f"{n:.0f} {unit}".rstrip()


def format_table(s: Summary) -> str:
    """The Keras-style table: Layer (type) | Output Shape | Param # | MACs, then the totals."""
    head = ("Layer (type)", "Output Shape", "Param #", "MACs")
    body = [(f"{r.name} ({r.type})", str(tuple(r.output_shape)), f"{r.params:,}", human(r.macs)) for r in s.layers]
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)

    def fmt(row):
        return "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))

    c, h, w = s.input_size
    out = [
        f'Model: "{s.name}"  input {c}x{h}x{w}, {s.num_classes} classes',
        line.replace("-", "="),
        fmt(head),
        line.replace("-", "="),
        *map(fmt, body),
        line.replace("-", "="),
    ]
    out += [
        f"Total params: {s.params:,}",
        f"Trainable params: {s.trainable:,}",
        f"Non-trainable params: {s.params - s.trainable:,}",
        f"MACs per image: {human(s.macs)} ({s.macs:,})",
        f"Activation memory per image (float32 forward): {s.activation_bytes / 2**20:.2f} MiB",
        f"Parameter memory (float32): {s.params * 4 / 2**20:.2f} MiB",
    ]
    return "\n".join(out)

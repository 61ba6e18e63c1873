"""Capture what each layer outputs for one image (forward hooks), and describe tensors in numbers."""

from __future__ import annotations

import torch
import torch.nn as nn

HIST_BINS = 60


def capture(model: nn.Module, x: torch.Tensor, modules: list[str]) -> tuple[torch.Tensor, dict]:
    """Run `model` on batch `x` once; return (output, {module name: a copy of its output}).

    Copies are taken inside the hook, before an in-place ReLU that follows can overwrite the tensor.
    A module that runs more than once keeps its last output.
    """
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name in dict.fromkeys(modules):

        def hook(mod, args, out, name=name):
            if isinstance(out, torch.Tensor):
                outputs[name] = out.detach().clone()

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, outputs


def stats(t: torch.Tensor, bins: int = HIST_BINS) -> dict:
    """mean / std / min / max / numel and a histogram (counts, edges) of every value of `t`."""
    t = t.detach().float().reshape(-1)
    lo, hi = float(t.min()), float(t.max())
    counts = torch.histc(t, bins=bins, min=lo, max=hi if hi > lo else lo + 1.0)
    step = ((hi if hi > lo else lo + 1.0) - lo) / bins
    return {
        "mean": float(t.mean()),
        "std": float(t.std()) if t.numel() > 1 else 0.0,
        "min": lo,
        "max": hi,
        "numel": t.numel(),
        "counts": counts.to(torch.int64).tolist(),
        "edges": [lo + i * step for i in range(bins + 1)],
    }


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """All values of `tensors` as one 1-D tensor (no copy for a single tensor)."""
    if len(tensors) == 1:
        return tensors[0].detach().reshape(-1)
    return torch.cat([t.detach().reshape(-1) for t in tensors])

"""Which layers `zoo visualize` shows, and what is drawn for each.

The layers and their paper names are the model spec's (`get_spec(arch).layers(model)`, declared beside
each family in zoo/models/; the `Layer` type is zoo/models/layers.py's). A layer's filters are those of its
first convolution with a kernel larger than 1x1 (of its only one otherwise); a block whose output
concatenates branches (an inception module) says so with a `channel_groups()` method.
"""

from __future__ import annotations

import torch.nn as nn

from ..models import ModelSpec
from ..models.layers import CONV, Layer


def _block(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name) if name else model


class UnknownLayerError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def select_layers(model: nn.Module, spec: ModelSpec, names: list[str]) -> list[Layer]:
    """The layers named in `names`: module names (`conv1`, `layer1`, `features.0`) or paper labels (`C1`).

    A name that is a default layer's module or label gives that layer (with its batch norm and ReLU);
    any other module name gives that module alone.
    """
    import difflib

    defaults = spec.layers(model)
    by_name = {layer.name: layer for layer in defaults}
    by_label = {layer.label.lower(): layer for layer in defaults}
    modules = dict(model.named_modules())
    chosen = []
    for name in names:
        if name in by_name:
            chosen.append(by_name[name])
        elif name in modules and name:
            chosen.append(Layer(name, name, [name]))
        elif name.lower() in by_label:
            chosen.append(by_label[name.lower()])
        else:
            known = [n for n in modules if n] + [layer.label for layer in defaults]
            close = difflib.get_close_matches(name, known, n=4, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownLayerError(
                f"no layer {name!r} in {spec.family} model{hint} (layers are module "
                f"names such as {defaults[0].name!r} or paper names such as "
                f"{defaults[0].label!r})"
            )
    return chosen


def filter_module(model: nn.Module, layer: Layer) -> nn.Module | None:
    """The convolution whose filters stand for the layer: its first with a kernel over 1x1, else its first."""
    convs = [m for name in layer.modules for m in _block(model, name).modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        return None
    return next((c for c in convs if max(c.kernel_size) > 1), convs[0])


def channel_groups(model: nn.Module, layer: Layer) -> list[tuple[str, int]] | None:
    """For a block whose output concatenates branches (an inception module): [(branch, channels)]."""
    if len(layer.modules) != 1:
        return None
    groups = getattr(_block(model, layer.modules[0]), "channel_groups", None)
    return groups() if callable(groups) else None


def weight_tensors(model: nn.Module, layer: Layer) -> list:
    """The weights (not biases, not batch-norm scales) of every convolution and linear layer in the block."""
    return [
        m.weight for name in layer.modules for m in _block(model, name).modules() if isinstance(m, (*CONV, nn.Linear))
    ]


def param_count(model: nn.Module, layer: Layer) -> int:
    return sum(p.numel() for name in layer.modules for p in _block(model, name).parameters())


def type_name(model: nn.Module, layer: Layer) -> str:
    """'Conv2d + BatchNorm2d + ReLU', 'BasicBlock', 'Inception', ..."""
    return " + ".join(type(_block(model, n)).__name__ for n in layer.modules)

"""The model registry: a decorator that records each constructor with its defaults, and `create`.

In the spirit of timm: a model's defaults (input size, mean/std, paper, year) are written beside its
definition, and callers ask the registry for them instead of retyping them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model is and how to feed it."""

    name: str
    family: str
    builder: Callable[..., nn.Module]
    input_size: tuple[int, int, int]  # (C, H, W) at which the paper / torchvision use it
    mean: tuple[float, ...]
    std: tuple[float, ...]
    paper: str
    year: int
    num_classes: int = 1000
    head: str = "fc"  # dotted name of the final classifier layer (for head surgery)
    aliases: tuple[str, ...] = field(default=())

    def mean_std(self, in_channels: int) -> tuple[list[float], list[float]]:
        """Mean and std for `in_channels` input channels (averaged when the channel count changes)."""
        if in_channels == len(self.mean):
            return list(self.mean), list(self.std)
        m = sum(self.mean) / len(self.mean)
        s = sum(self.std) / len(self.std)
        return [m] * in_channels, [s] * in_channels


_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


class UnknownModelError(KeyError):
    """An unknown model name; the message names the closest registered names."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


def register_model(*, family: str, input_size, mean, std, paper: str, year: int,
                   num_classes: int = 1000, head: str = "fc", aliases: tuple[str, ...] = ()):
    """Decorator: register a constructor `fn(num_classes=..., in_channels=..., **kw) -> nn.Module`."""

    def wrap(fn):
        spec = ModelSpec(fn.__name__, family, fn, tuple(input_size), tuple(mean), tuple(std), paper,
                         year, num_classes, head, tuple(aliases))
        if spec.name in _REGISTRY:
            raise ValueError(f"model {spec.name!r} registered twice")
        _REGISTRY[spec.name] = spec
        for alias in aliases:
            _ALIASES[alias] = spec.name
        return fn

    return wrap


def resolve(name: str) -> str:
    """The registered name for `name` (or an alias of it); UnknownModelError with suggestions otherwise."""
    key = name.lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key in _REGISTRY:
        return key
    close = difflib.get_close_matches(key, list(_REGISTRY) + list(_ALIASES), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(f"unknown model {name!r}{hint} (`zoo models` lists them all)")


def get_spec(name: str) -> ModelSpec:
    return _REGISTRY[resolve(name)]


def list_models() -> list[str]:
    """Registered names in registration order (families in the order the zoo presents them)."""
    return list(_REGISTRY)


def create(name: str, num_classes: int | None = None, in_channels: int | None = None,
           **kwargs) -> nn.Module:
    """Build model `name` with `num_classes` outputs and `in_channels` input channels."""
    spec = get_spec(name)
    return spec.builder(num_classes=spec.num_classes if num_classes is None else num_classes,
                        in_channels=spec.input_size[0] if in_channels is None else in_channels,
                        **kwargs)

"""The model registry: a decorator that records each constructor with its defaults, and `create`.

In the spirit of timm's default_cfgs and torchvision's weights enums: everything the rest of the zoo knows
about a model (input size, mean/std, paper, year, published weights, stages, paper layer names, auxiliary
heads) is written beside its definition, and callers ask the spec instead of switching on family names.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

from .layers import Layer, Stage

TORCHVISION_BASE = "https://download.pytorch.org/models/"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
_HEX = "0123456789abcdef"


@dataclass(frozen=True)
class Weights:
    """One published checkpoint (torchvision's IMAGENET1K_V1), downloaded by `zoo.download`."""

    file: str  # e.g. "resnet18-f37072fd.pth", under TORCHVISION_BASE; the 8 hex digits start its SHA-256
    sha256: str | None = None  # the full digest where known (say where it comes from); else the 8 digits
    mean: tuple[float, ...] | None = None  # the input mean/std the weights expect, where not the spec's
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.sha256 is not None and not (
            len(self.sha256) == 64 and set(self.sha256) <= set(_HEX) and self.sha256.startswith(self.prefix)
        ):
            raise ValueError(f"{self.file}: sha256 must be 64 hex digits starting with {self.prefix}")

    @property
    def prefix(self) -> str:
        """The 8 hex digits of the file's name (torchvision publishes only those)."""
        return self.file.rsplit("-", 1)[1].split(".")[0]

    @property
    def digest(self) -> str:
        """What the download is checked against: the full SHA-256 where known, else the name's prefix."""
        return self.sha256 or self.prefix

    def url(self, base: str | None = None) -> str:
        """The file's URL under `base` (a mirror) or torchvision's."""
        return (base or TORCHVISION_BASE).rstrip("/") + "/" + self.file


@dataclass(frozen=True)
class AuxHeads:
    """Training-only auxiliary classifiers. `create(name, **{switch: True})` adds them; the model then
    returns (logits, *aux_logits) in training mode, and plain logits in eval mode and without them."""

    switch: str  # the builder's keyword argument that adds them, e.g. "aux_logits"
    modules: tuple[str, ...]  # their module names, e.g. ("aux1", "aux2")
    classifier: str  # each one's final linear layer, relative to it (a new head when the classes change)


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model is, how to feed it, and what the rest of the zoo asks about it."""

    name: str
    family: str
    builder: Callable[..., nn.Module]
    input_size: tuple[int, int, int]  # (C, H, W) at which the paper / torchvision use it
    mean: tuple[float, ...]
    std: tuple[float, ...]
    paper: str
    year: int
    weights: Weights | None  # the published ImageNet checkpoint (`--pretrained imagenet`), None if none
    body_stages: Callable[[nn.Module], list[Stage]]  # the stages before the head, in forward order
    layers: Callable[[nn.Module], list[Layer]]  # the paper's layers, in forward order (`zoo visualize`)
    num_classes: int = 1000
    head: str = "fc"  # dotted name of the final classifier layer (for head surgery)
    aliases: tuple[str, ...] = field(default=())
    aux: AuxHeads | None = None  # training-only auxiliary classifiers
    # trains faster with channels_last activations (NHWC), as measured: benchmarks/train.md
    channels_last: bool = False
    # training options that beat the defaults on a kind of data (`zoo.data.datasets.kind`): {kind: options}
    recipes: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    @property
    def training_kwargs(self) -> dict:
        """The builder's keyword arguments for training (auxiliary heads on, where the model has them)."""
        return {self.aux.switch: True} if self.aux else {}

    def aux_modules(self, model: nn.Module) -> list[str]:
        """The auxiliary heads `model` was built with (none without `training_kwargs`)."""
        return [n for n in (self.aux.modules if self.aux else ()) if getattr(model, n, None) is not None]

    def heads(self, model: nn.Module) -> list[tuple[str, str]]:
        """The heads `model` has, as (module, classifier layer) dotted names: the main head first (its own
        classifier layer), then each auxiliary head (its final linear layer). The "head" stage trains the
        modules; transfer learning gives the classifier layers a new shape when the class count changes."""
        auxiliary = [(n, f"{n}.{self.aux.classifier}") for n in self.aux_modules(model)]
        return [(self.head, self.head), *auxiliary]

    def stages(self, model: nn.Module) -> list[Stage]:
        """The network's stages in forward order, for freezing and layer-wise learning rates: the family's
        body stages that hold parameters, then "head" (the classifier and any auxiliary classifiers)."""
        heads = [model.get_submodule(module) for module, _ in self.heads(model)]
        body = [(n, ms) for n, ms in self.body_stages(model) if any(True for m in ms for _ in m.parameters())]
        return body + [("head", heads)]

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


def register_model(
    *,
    family: str,
    input_size: tuple[int, int, int],
    mean: Sequence[float],
    std: Sequence[float],
    paper: str,
    year: int,
    weights: Weights | None,
    stages: Callable[[nn.Module], list[Stage]],
    layers: Callable[[nn.Module], list[Layer]],
    num_classes: int = 1000,
    head: str = "fc",
    aliases: tuple[str, ...] = (),
    aux: AuxHeads | None = None,
    channels_last: bool = False,
    recipes: Mapping[str, Mapping[str, object]] | None = None,
) -> Callable:
    """Decorator: register a constructor `fn(num_classes=..., in_channels=..., **kw) -> nn.Module`.

    `weights` (None where nothing is published), `stages` (the body's stages, head excluded) and `layers`
    (the paper's layer names) are required, so that every family says what it has."""

    def wrap(fn):
        spec = ModelSpec(
            fn.__name__,
            family,
            fn,
            tuple(input_size),
            tuple(mean),
            tuple(std),
            paper,
            year,
            weights,
            stages,
            layers,
            num_classes,
            head,
            tuple(aliases),
            aux,
            channels_last,
            dict(recipes or {}),
        )
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


def create(name: str, num_classes: int | None = None, in_channels: int | None = None, **kwargs) -> nn.Module:
    """Build model `name` with `num_classes` outputs and `in_channels` input channels."""
    spec = get_spec(name)
    return spec.builder(
        num_classes=spec.num_classes if num_classes is None else num_classes,
        in_channels=spec.input_size[0] if in_channels is None else in_channels,
        **kwargs,
    )

"""The zoo's networks: one module per family, all registered by name.

    >>> from zoo.models import create
    >>> model = create("resnet18", num_classes=10)
"""

from . import lenet, alexnet, vgg, googlenet, resnet  # noqa: F401  (registers the families, in order)
from .layers import Layer  # noqa: F401
from .registry import (AuxHeads, ModelSpec, UnknownModelError, Weights, create, get_spec,  # noqa: F401
                       list_models, register_model, resolve)

"""The zoo's networks: one module per family, all registered by name.

    >>> from zoo.models import create
    >>> model = create("resnet18", num_classes=10)
"""

from . import lenet, alexnet, vgg, googlenet, resnet  # noqa: F401  (registers the families, in order)
from .registry import (ModelSpec, UnknownModelError, create, get_spec, list_models,  # noqa: F401
                       register_model, resolve)

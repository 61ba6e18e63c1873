"""The zoo's networks: one module per family, all registered by name.

>>> from zoo.models import create
>>> model = create("resnet18", num_classes=10)
"""

# isort: off
# Importing a family registers its models; this order is the order `zoo models` presents them in.
from . import lenet, alexnet, vgg, googlenet, resnet

# isort: on
from .layers import Layer
from .registry import (
    AuxHeads,
    ModelSpec,
    UnknownModelError,
    Weights,
    create,
    get_spec,
    list_models,
    register_model,
    resolve,
)

"""cnnzoo inference: `load(path, backend="auto")` -> a Predictor (infer/predictor.py, chosen by infer/policy.py).

Imports nothing heavy: torch, onnxruntime and tensorrt are imported by the backend that needs them.
"""

from zoo.card import PRECISIONS  # noqa: F401

from .policy import Option, choose, load, options
from .predictor import BACKENDS, BackendUnavailable, ModelFileError, Predictor, tensorrt_missing  # noqa: F401

"""cnnzoo inference: `load(path, backend="auto")` -> a Predictor (see infer/predictor.py and DESIGN.md).

Imports nothing heavy: torch, onnxruntime and tensorrt are imported by the backend that needs them.
"""

from .predictor import (
    BACKENDS,
    PRECISIONS,
    BackendUnavailable,
    ModelFileError,
    Option,
    Predictor,  # noqa: F401
    choose,
    load,
    options,
    tensorrt_missing,
)

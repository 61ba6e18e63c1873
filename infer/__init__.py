"""cnnzoo inference: `load(path, backend="auto")` -> a Predictor (see infer/predictor.py and DESIGN.md).

Imports nothing heavy: torch, onnxruntime and tensorrt are imported by the backend that needs them.
"""

from .predictor import (BACKENDS, ENGINE_FILE, ONNX_FILE, ONNX_FP16_FILE, BackendUnavailable,  # noqa: F401
                        ModelFileError, Predictor, engine_card_path, load, tensorrt_missing)

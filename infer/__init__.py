"""cnnzoo inference: `load(path, backend="auto")` -> a Predictor (see infer/predictor.py and DESIGN.md).

Imports nothing heavy: torch, onnxruntime and tensorrt are imported by the backend that needs them.
"""

from .predictor import (BACKENDS, ENGINE_FILE, ENGINE_INT8_FILE, ONNX_FILE, ONNX_FP16_FILE,  # noqa: F401
                        ONNX_INT8_FILE, PRECISIONS, BackendUnavailable, ModelFileError, Option, Predictor,
                        choose, engine_card_path, load, options, tensorrt_missing)

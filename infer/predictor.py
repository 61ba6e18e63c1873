"""One Predictor over four runtimes and four precisions (`infer.load` picks which: infer/policy.py), the
errors of loading one, and which runtimes' libraries are here.

    >>> p = infer.load("runs/lenet5-20261121-101500")
    >>> logits = p.predict(batch)                              # float32 NCHW -> float32 [N, classes]

A model is a run directory (weights + card.json, and whatever `zoo export` wrote beside them:
model.onnx, model.fp16.onnx, model.int8.onnx, model.engine, model.int8.engine), a `.safetensors` file
with card.json beside it, a `.onnx` file (the card rides in its metadata) or a `.engine` file (with
`model.engine.json` beside it).

Precisions (zoo.card.PRECISIONS): fp32; bf16 and fp16 (computed by the runtime from the float32 model, where the
hardware has them natively, or an fp16 file on a GPU); int8 (a quantize-dequantize file from
`zoo export --int8`, verified for accuracy). Runtimes (BACKENDS): `tensorrt` (an engine; NVIDIA GPU),
`openvino` (CPU), `onnxruntime` (TensorRT and CUDA execution providers first where installed, CPU
otherwise), `torch` (CPU or CUDA). Which files a path holds: infer/files.py; the `auto` policy that
chooses among them: infer/policy.py.
This module imports neither torch, onnxruntime nor openvino at import time: each backend imports its
own library when used, so the ONNX Runtime path runs where torch is not installed.
"""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np

from zoo import rundir
from zoo.card import ModelCard
from zoo.text import first_line

BACKENDS = ("tensorrt", "openvino", "onnxruntime", "torch")

GPU_HINT = "pip install 'cnnzoo[gpu]' on a machine with an NVIDIA GPU"


class ModelFileError(ValueError):
    """The path is not a model this package can load; the message says what to do."""


class BackendUnavailable(RuntimeError):
    """The backend's library or hardware is missing; the message says what to install."""


class Predictor:
    """A loaded model: `.predict(float32 NCHW) -> float32 logits [N, num_classes]`.

    Attributes: `card` (zoo.card.ModelCard), `backend` ("torch", "onnxruntime" or "tensorrt"),
    `name` (the run directory's name), `path` (the file it runs), `device` (what it runs on),
    `max_batch_size` (None where any batch fits in one call; larger batches are split otherwise),
    `selection` (why `load` chose this backend). `predict` may be called from several threads (the
    TensorRT backend serializes them: it has one execution context).
    """

    backend = "?"
    precision = "fp32"  # the arithmetic it computes in: one of PRECISIONS
    max_batch_size: int | None = None

    def __init__(self, path: pathlib.Path, card: ModelCard, device: str):
        self.path = pathlib.Path(path)
        self.card = card
        self.device = device
        self.name = rundir.model_name(self.path)
        self.selection = f"{self.backend} (asked for)"

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits for a float32 batch of shape [N, C, H, W] (C, H, W as the card says)."""
        x = self.check_input(x)
        if len(x) == 0:
            return np.zeros((0, self.card.num_classes), np.float32)
        step = self.max_batch_size or len(x)
        parts = [self._run(x[i : i + step]) for i in range(0, len(x), step)]
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return np.asarray(out, dtype=np.float32)

    __call__ = predict

    def _run(self, x: np.ndarray) -> np.ndarray:  # one batch of at most max_batch_size
        raise NotImplementedError

    def check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        want = tuple(self.card.input_shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(
                f"{self.name} takes a batch of shape [N, {', '.join(map(str, want))}], got {list(x.shape)}"
            )
        return np.ascontiguousarray(x, dtype=np.float32)

    def describe(self) -> str:
        """One line: model, precision, backend, device, file."""
        return (
            f"{self.name}: {self.card.architecture} in {self.precision} on {self.backend} ({self.device}) "
            f"from {self.path}"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def tensorrt_missing() -> str | None:
    """None where TensorRT engines can be built and run here; otherwise why not, in one line. Imports
    tensorrt only where it is installed (its libraries missing is a reason, not a crash)."""
    if not installed("tensorrt"):
        reason = "the tensorrt package is not installed"
    else:
        try:
            import tensorrt  # noqa: F401
        except (ImportError, OSError) as e:  # e.g. libnvinfer.so.10: cannot open shared object file
            detail = first_line(e)
            reason = f"the tensorrt package cannot be imported: {detail}"
        else:
            try:
                import torch

                reason = None if torch.cuda.is_available() else "no CUDA device is visible"
            except ImportError:
                reason = "torch (for CUDA buffers) is not installed"
    if reason is None:
        return None
    return f"TensorRT needs an NVIDIA GPU and the tensorrt package ({reason}): {GPU_HINT}"

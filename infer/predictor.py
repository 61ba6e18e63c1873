"""One Predictor over three backends, and `load`, which picks the file and the backend.

    >>> import infer
    >>> p = infer.load("runs/lenet5-20261121-101500")        # auto: engine > ONNX > weights
    >>> logits = p.predict(batch)                              # float32 NCHW -> float32 [N, classes]

A model is a run directory (weights + card.json, and whatever `zoo export` wrote beside them:
model.onnx, model.engine), a `.safetensors` file with card.json beside it, a `.onnx` file (the card
rides in its metadata) or a `.engine` file (with `model.engine.json` beside it).

Backends, fastest first: `tensorrt` (an engine; needs tensorrt and a CUDA device), `onnxruntime`
(TensorRT and CUDA execution providers first where installed, CPU otherwise), `torch` (CPU or CUDA).
This module imports neither torch nor onnxruntime: each backend imports its own library when used,
so the ONNX Runtime path runs where torch is not installed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pathlib

import numpy as np

from zoo import rundir
from zoo.card import ModelCard

log = logging.getLogger(__name__)

BACKENDS = ("tensorrt", "onnxruntime", "torch")  # the order `auto` tries them in
ONNX_FILE = "model.onnx"
ONNX_FP16_FILE = "model.fp16.onnx"
ENGINE_FILE = "model.engine"
ENGINE_SUFFIX = ".engine"
CARD_SUFFIX = ".json"  # an engine's card: model.engine -> model.engine.json

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
    max_batch_size: int | None = None

    def __init__(self, path: pathlib.Path, card: ModelCard, device: str):
        self.path = pathlib.Path(path)
        self.card = card
        self.device = device
        self.name = model_name(self.path)
        self.selection = f"{self.backend} (asked for)"

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits for a float32 batch of shape [N, C, H, W] (C, H, W as the card says)."""
        x = self.check_input(x)
        if len(x) == 0:
            return np.zeros((0, self.card.num_classes), np.float32)
        step = self.max_batch_size or len(x)
        parts = [self._run(x[i:i + step]) for i in range(0, len(x), step)]
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return np.asarray(out, dtype=np.float32)

    __call__ = predict

    def _run(self, x: np.ndarray) -> np.ndarray:  # one batch of at most max_batch_size
        raise NotImplementedError

    def check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        want = tuple(self.card.input_shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"{self.name} takes a batch of shape [N, {', '.join(map(str, want))}], "
                             f"got {list(x.shape)}")
        return np.ascontiguousarray(x, dtype=np.float32)

    def describe(self) -> str:
        """One line: model, backend, device, file."""
        return f"{self.name}: {self.card.architecture} on {self.backend} ({self.device}) from {self.path}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def model_name(path: pathlib.Path) -> str:
    """A model's name from its path: the run directory's name (runs/lenet5-2026.../model.onnx ->
    "lenet5-2026..."), or the Triton model's (repo/lenet5/1/model.onnx -> "lenet5"), or the file's stem."""
    path = pathlib.Path(path).resolve()
    if path.is_dir():
        return path.name
    parent = path.parent
    if parent.name.isdigit():  # a Triton version directory
        parent = parent.parent
    if path.stem.split(".")[0] == "model" or path.name == rundir.WEIGHTS:
        return parent.name
    return path.stem


def engine_card_path(engine: str | os.PathLike) -> pathlib.Path:
    engine = pathlib.Path(engine)
    return engine.parent / (engine.name + CARD_SUFFIX)


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def tensorrt_missing() -> str | None:
    """None where TensorRT engines can be built and run here; otherwise why not, in one line."""
    if not installed("tensorrt"):
        reason = "the tensorrt package is not installed"
    else:
        try:
            import torch

            reason = None if torch.cuda.is_available() else "no CUDA device is visible"
        except ImportError:
            reason = "torch (for CUDA buffers) is not installed"
    if reason is None:
        return None
    return f"TensorRT needs an NVIDIA GPU and the tensorrt package ({reason}): {GPU_HINT}"


def _candidates(path: pathlib.Path) -> dict[str, pathlib.Path]:
    """backend -> the file it would run, for what exists at `path`."""
    if path.is_dir():
        found = {"tensorrt": path / ENGINE_FILE, "onnxruntime": path / ONNX_FILE,
                 "torch": path / rundir.WEIGHTS}
        return {b: f for b, f in found.items() if f.is_file()}
    if not path.exists():
        raise ModelFileError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    if suffix == ENGINE_SUFFIX or suffix == ".plan":
        return {"tensorrt": path}
    if suffix == ".onnx":
        return {"onnxruntime": path}
    if suffix == ".safetensors":
        return {"torch": path}
    raise ModelFileError(f"{path}: expected a run directory, a .safetensors, .onnx or .engine file")


def _usable(backend: str) -> str | None:
    """None where `backend` can run here, otherwise why not."""
    if backend == "tensorrt":
        return tensorrt_missing()
    module = {"onnxruntime": "onnxruntime", "torch": "torch"}[backend]
    if not installed(module):
        extra = "pip install 'cnnzoo[cpu]' (or [gpu])" if module == "onnxruntime" else "pip install torch"
        return f"{module} is not installed: {extra}"
    return None


def _stale(exported: pathlib.Path, weights: pathlib.Path | None) -> str | None:
    """Why an exported file in a run directory must not stand for the weights: they are newer."""
    if weights is None or exported == weights or exported.stat().st_mtime >= weights.stat().st_mtime:
        return None
    return f"older than {weights.name} (run `zoo export` again)"


_HOW_TO_MAKE = {"tensorrt": "build one with `zoo export {path} --trt`",
                "onnxruntime": "export one with `zoo export {path} --onnx`",
                "torch": "train one with `zoo train` (a .onnx or .engine file runs on its own backend)"}


def load(path: str | os.PathLike, backend: str = "auto", *, device: str | None = None,
         threads: int | None = None, providers: list | None = None,
         spin_wait: bool = True) -> Predictor:
    """A Predictor for a run directory, .safetensors, .onnx or .engine file.

    backend: "auto" (the fastest that is present, usable here and not older than the run's weights:
    tensorrt > onnxruntime > torch), or one of BACKENDS. device: "cpu" or "cuda" for torch (default: cuda where available).
    threads: intra-op threads for torch / ONNX Runtime (default: the library's). providers: ONNX Runtime
    execution providers, overriding the default order (TensorRT, CUDA, CPU: those installed).
    spin_wait=False: ONNX Runtime's threads sleep between runs rather than spin (what a server wants).
    The chosen backend and why is logged, and kept in `predictor.selection`.
    """
    path = pathlib.Path(path)
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use auto, {', '.join(BACKENDS)}")
    found = _candidates(path)
    if backend == "auto":
        skipped = []
        for b in BACKENDS:
            if b not in found:
                continue
            why = _usable(b) or _stale(found[b], found.get("torch"))
            if why is None:
                backend = b
                break
            skipped.append(f"{found[b].name} skipped: {why}")
        else:
            if not found:
                raise ModelFileError(f"{path}: no {ENGINE_FILE}, {ONNX_FILE} or {rundir.WEIGHTS} "
                                     "(is this a finished `zoo train` run?)")
            raise BackendUnavailable("; ".join(skipped))
        selection = f"auto chose {backend} ({found[backend].name})" + (
            f"; {'; '.join(skipped)}" if skipped else "")
    else:
        why = _usable(backend)
        if why:
            raise BackendUnavailable(why)
        if backend not in found:
            raise ModelFileError(f"{path}: nothing for the {backend} backend here; "
                                 + _HOW_TO_MAKE[backend].format(path=path))
        selection = f"{backend} ({found[backend].name}, asked for)"
    file = found[backend]
    if backend == "torch":
        from .backend_torch import TorchPredictor as cls
    elif backend == "onnxruntime":
        from .backend_ort import OrtPredictor as cls
    else:
        from .backend_trt import TensorRTPredictor as cls
    options = {"spin_wait": spin_wait} if backend == "onnxruntime" else {}
    predictor = cls(file, device=device, threads=threads, providers=providers, **options)
    if path.is_dir():
        predictor.name = path.resolve().name
    predictor.selection = selection
    log.info("%s: %s", predictor.name, selection)
    return predictor

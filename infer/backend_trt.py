"""The TensorRT backend: a serialized engine from `zoo export --trt`, with its card beside it.

Written against the TensorRT 10/11 Python API (named I/O tensors, `execute_async_v3`); device buffers
are torch CUDA tensors. The engine's first optimization profile bounds the batch: larger batches are
split into chunks of its maximum, smaller ones than its minimum are padded. `engine_mismatch` says,
from the engine's card alone, whether an engine can run here (TensorRT version, GPU).
"""

from __future__ import annotations

import json
import os
import pathlib
import threading

import numpy as np

from zoo import devices, rundir
from zoo.card import ModelCard

from .predictor import BackendUnavailable, ModelFileError, Predictor, tensorrt_missing

REBUILD = "rebuild it here with `zoo export RUN --trt`"


def _major_minor(version: str) -> tuple[int, int] | None:
    try:
        major, minor = str(version).split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def engine_mismatch(
    engine_path: str | os.PathLike,
    *,
    tensorrt_version: str | None = None,
    compute_capability: str | tuple[int, int] | None = None,
) -> str | None:
    """Why this engine cannot run here, or None, from its card `<engine>.json` alone (the engine is not
    deserialized). It can run where the installed TensorRT has the major.minor version it was built
    with (or a later one, for an engine built version-compatible) and the GPU has its compute
    capability. `tensorrt_version` ("10.14.1") and `compute_capability` ("8.6" or (8, 6)) default to
    the installed tensorrt's and the current CUDA device's, looked up only when needed."""
    card_path = rundir.engine_card(engine_path)
    try:
        info = json.loads(card_path.read_text(encoding="utf-8"))
        built_version, built_cc = info["tensorrt_version"], str(info["compute_capability"])
    except FileNotFoundError:
        return f"its card {card_path.name} is missing ({REBUILD})"
    except (OSError, ValueError, KeyError, TypeError):
        return f"its card {card_path.name} does not say which TensorRT and GPU it was built for ({REBUILD})"
    if tensorrt_version is None:
        try:
            import tensorrt

            tensorrt_version = tensorrt.__version__
        except (ImportError, OSError) as e:
            return f"tensorrt cannot be imported ({type(e).__name__})"
    built, here = _major_minor(built_version), _major_minor(tensorrt_version)
    if built is None or here is None:
        return f"its TensorRT version {built_version!r} is not comparable to {tensorrt_version!r} ({REBUILD})"
    runs_here = here >= built if info.get("version_compatible") else here == built
    if not runs_here:
        return f"built with TensorRT {built_version}, this machine has TensorRT {tensorrt_version} ({REBUILD})"
    if compute_capability is None:
        try:
            import torch

            compute_capability = torch.cuda.get_device_capability()
        except Exception:  # no torch, or torch without CUDA: it raises AssertionError or RuntimeError
            return "no CUDA device is visible"
    if not isinstance(compute_capability, str):
        compute_capability = ".".join(map(str, compute_capability))
    if built_cc != compute_capability:
        return f"built for a GPU of compute capability {built_cc}, this one has {compute_capability} ({REBUILD})"
    return None


class TensorRTPredictor(Predictor):
    backend = "tensorrt"

    def __init__(
        self,
        path: pathlib.Path,
        *,
        device: str | None = None,
        threads: int | None = None,
        providers=None,
        precision: str | None = None,
    ):
        why = tensorrt_missing()
        if why:
            raise BackendUnavailable(why)
        import tensorrt as trt
        import torch

        index = devices.cuda_index(device)
        # buffers and stream live on the current device (without CUDA, the runtime's own check says so below)
        if index is not None and torch.cuda.is_available() and index != torch.cuda.current_device():
            raise BackendUnavailable(
                f"--device {device}: a TensorRT engine runs on the current CUDA device here; "
                f"choose the GPU with CUDA_VISIBLE_DEVICES={index} and --device cuda"
            )
        card_path = rundir.engine_card(path)
        if not card_path.is_file():
            raise ModelFileError(
                f"{path}: the engine's card {card_path.name} is missing beside it (rebuild with `zoo export RUN --trt`)"
            )
        try:
            info = json.loads(card_path.read_text(encoding="utf-8"))
            card = ModelCard.from_dict(info)
        except (ValueError, TypeError) as e:
            raise ModelFileError(f"{path}: the engine's card {card_path.name} is not a model card ({e})") from None
        self._torch = torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        try:
            self._runtime = trt.Runtime(self._logger)
        except TypeError:  # pybind's "factory function returned nullptr": TensorRT could not start CUDA
            raise BackendUnavailable(
                f"TensorRT {trt.__version__} could not start CUDA (is the NVIDIA driver installed and a GPU visible?)"
            ) from None
        why = engine_mismatch(path, tensorrt_version=trt.__version__)
        if why:
            raise ModelFileError(f"{path}: {why}")
        if info.get("version_compatible"):  # the plan carries its lean runtime: code from our own export
            self._runtime.engine_host_code_allowed = True
        self.engine = self._runtime.deserialize_cuda_engine(pathlib.Path(path).read_bytes())
        if self.engine is None:
            raise ModelFileError(
                f"{path}: TensorRT {trt.__version__} cannot load this engine "
                "(built by another TensorRT version or for another GPU? rebuild it here)"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = self.engine.get_tensor_mode
        self.input_name = next(n for n in names if mode(n) == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if mode(n) == trt.TensorIOMode.OUTPUT)
        lo, _, hi = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch_size, self.max_batch_size = int(lo[0]), int(hi[0])
        self._out_dtype = torch.from_numpy(
            np.empty(0, trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        ).dtype
        self._stream = torch.cuda.Stream()
        self._lock = threading.Lock()  # one execution context: one batch at a time
        super().__init__(path, card, f"cuda:{torch.cuda.current_device()} {torch.cuda.get_device_name()}")
        self.precision = card.precision

    def _run(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._execute(x)

    def _execute(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        n = len(x)
        if n < self.min_batch_size:  # pad up to the profile's minimum, drop the padding after
            x = np.concatenate([x, np.zeros((self.min_batch_size - n, *x.shape[1:]), x.dtype)])
        with torch.cuda.stream(self._stream):
            xt = torch.from_numpy(x).to("cuda", non_blocking=False)
            self.context.set_input_shape(self.input_name, tuple(xt.shape))
            out = torch.empty(
                tuple(self.context.get_tensor_shape(self.output_name)), dtype=self._out_dtype, device="cuda"
            )
            self.context.set_tensor_address(self.input_name, xt.data_ptr())
            self.context.set_tensor_address(self.output_name, out.data_ptr())
            if not self.context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"{self.path}: TensorRT execution failed")
            result = out[:n].float().cpu()
        self._stream.synchronize()
        return result.numpy()

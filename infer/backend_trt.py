"""The TensorRT backend: a serialized engine from `zoo export --trt`, with its card beside it.

Written against the TensorRT 10/11 Python API (named I/O tensors, `execute_async_v3`); device buffers
are torch CUDA tensors. The engine's first optimization profile bounds the batch: larger batches are
split into chunks of its maximum, smaller ones than its minimum are padded.
"""

from __future__ import annotations

import pathlib
import threading

import numpy as np

from zoo.card import ModelCard

from .predictor import BackendUnavailable, ModelFileError, Predictor, engine_card_path, tensorrt_missing


class TensorRTPredictor(Predictor):
    backend = "tensorrt"

    def __init__(self, path: pathlib.Path, *, device: str | None = None, threads: int | None = None,
                 providers=None, precision: str | None = None):
        why = tensorrt_missing()
        if why:
            raise BackendUnavailable(why)
        import tensorrt as trt
        import torch

        card_path = engine_card_path(path)
        if not card_path.is_file():
            raise ModelFileError(f"{path}: the engine's card {card_path.name} is missing beside it "
                                 "(rebuild with `zoo export RUN --trt`)")
        card = ModelCard.load(card_path)
        self._torch = torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(pathlib.Path(path).read_bytes())
        if self.engine is None:
            raise ModelFileError(f"{path}: TensorRT {trt.__version__} cannot load this engine "
                                 "(built by another TensorRT version or for another GPU? rebuild it here)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = self.engine.get_tensor_mode
        self.input_name = next(n for n in names if mode(n) == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if mode(n) == trt.TensorIOMode.OUTPUT)
        lo, _, hi = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch_size, self.max_batch_size = int(lo[0]), int(hi[0])
        self._out_dtype = torch.from_numpy(
            np.empty(0, trt.nptype(self.engine.get_tensor_dtype(self.output_name)))).dtype
        self._stream = torch.cuda.Stream()
        self._lock = threading.Lock()  # one execution context: one batch at a time
        super().__init__(path, card, f"cuda:{torch.cuda.current_device()} {torch.cuda.get_device_name()}")

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
            out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)),
                              dtype=self._out_dtype, device="cuda")
            self.context.set_tensor_address(self.input_name, xt.data_ptr())
            self.context.set_tensor_address(self.output_name, out.data_ptr())
            if not self.context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"{self.path}: TensorRT execution failed")
            result = out[:n].float().cpu()
        self._stream.synchronize()
        return result.numpy()

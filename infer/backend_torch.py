"""The torch backend: a run directory's weights on CPU or CUDA, eager mode.

Precision fp32, or bf16 / fp16 through `torch.autocast`; `infer.load` only asks for those where they are
native. The memory format is the one the model's family trains in (its spec's `channels_last`, as
`zoo.train.precision.memory_format` says), whatever the precision.
"""

from __future__ import annotations

import pathlib

import numpy as np

from zoo import devices, rundir
from zoo.precisions import DTYPES

from .predictor import BackendUnavailable, Predictor


class TorchPredictor(Predictor):
    backend = "torch"

    def __init__(
        self, path: pathlib.Path, *, device: str | None = None, threads: int | None = None, precision: str = "fp32", **_
    ):
        import torch

        from zoo.train.precision import memory_format

        try:
            device = devices.resolve(device)
        except devices.DeviceError as e:
            raise BackendUnavailable(str(e)) from None
        self._threads = threads  # torch's thread count is the process's: set only during our calls
        self._torch = torch
        self.model, card = rundir.load_model(path, device=device)
        self._autocast = None if precision == "fp32" else getattr(torch, DTYPES[precision])
        self._memory_format = memory_format(card.architecture)
        self.model = self.model.to(memory_format=self._memory_format)
        super().__init__(path, card, device)
        self.precision = precision

    def _run(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        previous = torch.get_num_threads()
        if not self._threads or self._threads == previous:
            return self._forward(x)
        torch.set_num_threads(self._threads)
        try:
            return self._forward(x)
        finally:
            torch.set_num_threads(previous)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(x).to(self.device).contiguous(memory_format=self._memory_format)
        with torch.inference_mode():
            if self._autocast is None:
                return self.model(x).float().cpu().numpy()
            with torch.autocast(torch.device(self.device).type, dtype=self._autocast):
                return self.model(x).float().cpu().numpy()

"""The torch backend: a run directory's weights on CPU or CUDA, eager mode."""

from __future__ import annotations

import pathlib

import numpy as np

from zoo import rundir

from .predictor import BackendUnavailable, Predictor


class TorchPredictor(Predictor):
    backend = "torch"

    def __init__(self, path: pathlib.Path, *, device: str | None = None, threads: int | None = None,
                 providers=None):
        import torch

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("no CUDA device is visible to torch; use device='cpu'")
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.model, card = rundir.load_model(path, device=device)
        super().__init__(path, card, device)

    def _run(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            return self.model(torch.from_numpy(x).to(self.device)).float().cpu().numpy()

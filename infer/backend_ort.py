"""The ONNX Runtime backend: a .onnx file from `zoo export`, its card read from the file's metadata.

Execution providers: TensorRT, then CUDA, then CPU, each where the installed build has it. Imports
onnxruntime and NumPy only (no torch, no onnx).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from zoo.card import ONNX_METADATA_KEY, ModelCard

from .predictor import ModelFileError, Predictor

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
TRT_CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "cnnzoo" / "ort-trt"


def default_providers() -> list:
    """The preferred execution providers this onnxruntime build has, fastest first."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    providers = []
    for p in PREFERRED_PROVIDERS:
        if p not in have:
            continue
        if p == "TensorrtExecutionProvider":  # building an engine is slow: keep it between runs
            providers.append((p, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(TRT_CACHE)}))
        else:
            providers.append(p)
    return providers


def session_options(threads: int | None = None, spin_wait: bool = True):
    """spin_wait=False: ONNX Runtime's intra-op threads sleep between runs instead of spinning (its
    default), which leaves the CPU to a server's event loop between batches."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        so.intra_op_num_threads = threads
    if not spin_wait:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def card_of(session, path) -> ModelCard:
    meta = session.get_modelmeta().custom_metadata_map
    if ONNX_METADATA_KEY not in meta:
        raise ModelFileError(f"{path}: no model card in the ONNX metadata (key {ONNX_METADATA_KEY!r}); "
                             "export it with `zoo export RUN --onnx`")
    return ModelCard.from_json(meta[ONNX_METADATA_KEY])


class OrtPredictor(Predictor):
    backend = "onnxruntime"

    def __init__(self, path: pathlib.Path, *, device: str | None = None, threads: int | None = None,
                 providers: list | None = None, spin_wait: bool = True, precision: str | None = None):
        import onnxruntime as ort

        providers = list(providers) if providers else default_providers()
        if device == "cpu":
            providers = ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), sess_options=session_options(threads, spin_wait),
                                                providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for a bad file
            raise ModelFileError(f"{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0]})") from None
        card = card_of(self.session, path)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        used = self.session.get_providers()
        super().__init__(path, card, ",".join(p.replace("ExecutionProvider", "") for p in used))
        self.precision = card.precision

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]

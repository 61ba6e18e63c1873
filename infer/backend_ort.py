"""The ONNX Runtime backend: a .onnx file from `zoo export`, its card read from the file's metadata.

Execution providers: TensorRT, then CUDA, then CPU, each where the installed build has it. Imports
onnxruntime and NumPy only (no torch, no onnx).
"""

from __future__ import annotations

import os
import pathlib
from typing import TYPE_CHECKING

import numpy as np

from zoo import devices
from zoo.card import ONNX_METADATA_KEY, ModelCard

from .files import metadata_card
from .predictor import ModelFileError, Predictor

if TYPE_CHECKING:
    import onnxruntime as ort

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
TRT_CACHE = "ort-trt"  # under the project's cache root: $ZOO_CACHE/ort-trt/<sha256 of the .onnx file>/


def trt_cache_dir(path: str | os.PathLike, root: str | os.PathLike | None = None) -> pathlib.Path:
    """The TensorRT provider's engine cache for this ONNX file: a folder per content hash, under `root`
    (None: the project's cache root, zoo.download.cache_dir). The provider names its engines after the
    file and node names, not the weights, so one shared folder would hand a re-exported or retrained
    model of the same architecture the first model's engine."""
    from zoo.download import cache_dir, file_digest

    digest = file_digest(path)[:16]
    return cache_dir(TRT_CACHE, digest) if root is None else pathlib.Path(root, TRT_CACHE, digest)


def trt_provider_options(path: str | os.PathLike | None, root: str | os.PathLike | None = None) -> dict:
    """TensorRT provider options: an engine cache keyed by the file's bytes, created before the session
    (a missing folder makes the provider fail and ONNX Runtime print its fall-back notice on stdout);
    no cache where there is no file to key it by or the folder cannot be made."""
    if path is None:
        return {}
    try:
        folder = trt_cache_dir(path, root)
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return {}
    return {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(folder)}


def default_providers(path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> list:
    """The preferred execution providers this onnxruntime build has, fastest first; `path` is the .onnx
    file the session will run (it keys TensorRT's engine cache, kept under `cache_dir` where given)."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    providers = []
    for p in PREFERRED_PROVIDERS:
        if p not in have:
            continue
        if p == "TensorrtExecutionProvider":  # building an engine is slow: keep it between runs
            providers.append((p, trt_provider_options(path, cache_dir)))
        else:
            providers.append(p)
    return providers


GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def on_device(providers: list, device: str | None) -> list:
    """`providers` for `device`: the CPU provider alone for "cpu"; for "cuda:N", the GPU providers on
    device N (their `device_id`); for auto, cuda or None, as they are."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    index = devices.cuda_index(device)
    if index is None:
        return providers
    placed = []
    for p in providers:
        name, options = p if isinstance(p, tuple) else (p, {})
        placed.append((name, {**options, "device_id": index}) if name in GPU_PROVIDERS else p)
    return placed


def session_options(threads: int | None = None, spin_wait: bool = True) -> ort.SessionOptions:
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


def card_of(session: ort.InferenceSession, path: str | os.PathLike) -> ModelCard:
    """The card in the session's ONNX metadata (ModelFileError where it is missing or damaged)."""
    return metadata_card(session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY), path)


class OrtPredictor(Predictor):
    backend = "onnxruntime"

    def __init__(
        self,
        path: pathlib.Path,
        *,
        device: str | None = None,
        threads: int | None = None,
        providers: list | None = None,
        spin_wait: bool = True,
        precision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
    ):
        import onnxruntime as ort

        providers = on_device(list(providers) if providers else default_providers(path, cache_dir), device)
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=session_options(threads, spin_wait), providers=providers
            )
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

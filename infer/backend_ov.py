"""The OpenVINO backend: a .onnx file from `zoo export` compiled for the CPU by OpenVINO.

OpenVINO reads our ONNX files directly (the card comes through as the model's runtime info). The
precision is OpenVINO's inference precision hint: fp32 computes in float32 (OpenVINO's own default on a
CPU with AMX is bf16, so fp32 is set explicitly), bf16 / fp16 in reduced precision where the CPU has it
natively, int8 runs a quantize-dequantize file (`model.int8.onnx`) with int8 kernels and float32 for
the rest. Imports openvino and NumPy only.
"""

from __future__ import annotations

import functools
import pathlib
import threading

import numpy as np

from zoo.card import ONNX_METADATA_KEY
from zoo.hardware import usable_cpus
from zoo.precisions import float_dtype

from .files import metadata_card
from .predictor import ModelFileError, Predictor

OPENVINO_CACHE = "openvino"  # the folder of OpenVINO's compiled models in a cache_dir (infer.load's)
OPENVINO_TYPES = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}  # a float dtype as OpenVINO names it


@functools.lru_cache(maxsize=1)
def _core():
    """One OpenVINO Core for the process. A Core per model unloaded and reloaded the CPU plugin as models
    came and went, and a process that did so for long enough crashed later in unrelated code (seen as a
    segmentation fault in the test suite; a single Core keeps the plugin loaded)."""
    import openvino as ov

    return ov.Core()


def _what_is_wrong(error: Exception) -> str:
    """The line of OpenVINO's message that says what is wrong: it opens with the places in its C++ where it
    failed ("Exception from src/.../core.cpp:84:", "Check '...' failed at ..."), and lists its front ends."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(("Exception from ", "Check '"))] or lines or [repr(error)]
    return said[0].split(" Available frontends:")[0].strip()


class OpenVINOPredictor(Predictor):
    backend = "openvino"

    def __init__(
        self,
        path: pathlib.Path,
        *,
        precision: str = "fp32",
        threads: int | None = None,
        cache_dir: str | pathlib.Path | None = None,
        **_,
    ):
        core = _core()
        try:
            model = core.read_model(str(path))
        except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own for a bad file
            raise ModelFileError(f"{path}: OpenVINO cannot read it ({_what_is_wrong(e)})") from None
        key = ["framework", ONNX_METADATA_KEY]
        card = metadata_card(model.get_rt_info(key).astype(str) if model.has_rt_info(key) else None, path)
        hint = OPENVINO_TYPES[float_dtype(precision)]  # int8: the layers that are not int8
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
            # OpenVINO pins an inference's threads to the first CPUs of the process's mask while it runs. Fewer
            # threads than CPUs means other processes share them (Ray actors, serve workers, a pod's quota on a
            # big node), each pinning to the same first CPUs: pin only where the threads take every CPU.
            config["ENABLE_CPU_PINNING"] = int(threads) >= len(usable_cpus())
        if cache_dir is not None:  # the compiled model is kept there, and the next start reads it back
            config["CACHE_DIR"] = str(pathlib.Path(cache_dir, OPENVINO_CACHE))
        self.compiled = core.compile_model(model, "CPU", config)
        self._local = threading.local()  # one infer request per calling thread
        computes = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # f32, bf16, f16
        super().__init__(path, card, f"CPU, {computes} where not int8" if precision == "int8" else f"CPU, {computes}")
        self.precision = precision

    def _run(self, x: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request.infer({0: x}, share_inputs=True)[0].copy()

"""Build a TensorRT engine from an exported ONNX file (TensorRT 10 and 11 Python API).

ONNX parser -> strongly typed network -> one optimization profile over the batch axis (min:opt:max)
-> serialized engine, and beside it `<engine>.json`: the model card plus the precision, TensorRT
version, GPU and batch profile the engine was built for (an engine runs only on the TensorRT version
and GPU compute capability it was built with, unless built version-compatible).

The precision is the ONNX file's (`card.precision`), never a builder flag: model.onnx -> fp32,
model.fp16.onnx -> fp16 (float32 I/O), model.int8.onnx -> int8 through its QuantizeLinear /
DequantizeLinear nodes (explicit quantization: no INT8 flag, no calibrator; TensorRT 11 has neither).
fp32/fp16 engines are `model.engine`, int8 ones `model.int8.engine` (`engine_file`).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Callable

from infer.files import kind_of
from zoo import atomic, rundir
from zoo.card import ModelCard

from .onnx import ExportError

DEFAULT_BATCH = (1, 8, 32)
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def engine_file(precision: str) -> str:
    """The engine's file name for a card precision: model.int8.engine for int8, model.engine otherwise."""
    return rundir.MODEL_FILES[kind_of("engine", precision)]


def qdq_problem(onnx_path: str | os.PathLike) -> str | None:
    """Why TensorRT cannot build an int8 engine from this file, or None: it must have Q/DQ nodes, and
    their zero points must be int8 zeros (TensorRT's quantization is symmetric: its ONNX parser
    refuses a non-zero zero point and uint8 Q/DQ outside DLA)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path), load_external_data=False)
    nodes = [n for n in model.graph.node if n.op_type in QDQ_OPS]
    if not nodes:
        return f"{onnx_path} has no QuantizeLinear/DequantizeLinear nodes: not an int8 (QDQ) model"
    initializers = {t.name: t for t in model.graph.initializer}
    for node in nodes:
        zero_point = initializers.get(node.input[2]) if len(node.input) > 2 else None
        if zero_point is None:
            continue
        if zero_point.data_type != onnx.TensorProto.INT8:
            kind = onnx.TensorProto.DataType.Name(zero_point.data_type).lower()
            return (
                f"{onnx_path}: {node.op_type} {node.name!r} quantizes to {kind}; TensorRT takes "
                "symmetric int8 only (quantize activations and weights as QInt8, symmetric)"
            )
        if numpy_helper.to_array(zero_point).any():
            return (
                f"{onnx_path}: {node.op_type} {node.name!r} has a non-zero zero point; TensorRT takes "
                "symmetric int8 only (quantize activations and weights as QInt8, symmetric)"
            )
    return None


def parse_batch(text: str) -> tuple[int, int, int]:
    """ "min:opt:max" (or one number N for N:N:N) -> (min, opt, max); ValueError says what is wrong."""
    parts = text.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise ValueError(f"--batch {text!r}: expected MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, e.g. 1:8:32")
    return tuple(values)


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    card: ModelCard,
    batch: tuple[int, int, int] = DEFAULT_BATCH,
    *,
    version_compatible: bool = False,
    log: Callable[[str], None] | None = print,
) -> pathlib.Path:
    """Build and write `engine_path` and its card `engine_path + ".json"`; returns the engine path.

    version_compatible: build with BuilderFlag.VERSION_COMPATIBLE (the lean runtime goes into the plan),
    so a later TensorRT runs it, e.g. a Triton server's (started with
    `--backend-config=tensorrt,version-compatible=true`); such engines may be a little slower.
    """
    trt = _import_tensorrt()
    precision = card.precision
    if precision == "int8":
        why = qdq_problem(onnx_path)
        if why:
            raise ExportError(why)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = _builder(trt, logger)
    network = _parse_network(trt, builder, logger, onnx_path)
    config = _builder_config(trt, builder, card, batch, version_compatible)
    if log:
        lo, opt, hi = batch
        log(
            f"building a TensorRT {trt.__version__} {precision} engine from {onnx_path} (batch {lo}:{opt}:{hi}"
            f"{', version-compatible' if version_compatible else ''}); this takes a while"
        )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"{onnx_path}: TensorRT could not build an engine (its log above says why)")
    return _write_engine(trt, serialized, onnx_path, engine_path, card, batch, version_compatible, log)


def _import_tensorrt() -> Any:
    """The tensorrt module, or ExportError where it is missing or older than TensorRT 10."""
    from infer.predictor import tensorrt_missing

    why = tensorrt_missing()
    if why:
        raise ExportError(why)
    import tensorrt as trt

    major = int(trt.__version__.split(".")[0])
    if major < 10:
        raise ExportError(
            f"TensorRT {trt.__version__} is too old: this needs TensorRT 10 or 11 (pip install 'cnnzoo[gpu]')"
        )
    return trt


def _builder(trt: Any, logger: Any) -> Any:
    """A trt.Builder, or ExportError where TensorRT could not start CUDA."""
    try:
        return trt.Builder(logger)
    except TypeError:  # pybind's "factory function returned nullptr": TensorRT could not start CUDA
        raise ExportError(
            f"TensorRT {trt.__version__} could not start CUDA (is the NVIDIA driver installed and a GPU visible?)"
        ) from None


def _parse_network(trt: Any, builder: Any, logger: Any, onnx_path: str | os.PathLike) -> Any:
    """The strongly typed network TensorRT's ONNX parser makes of `onnx_path`."""
    # TensorRT 10: strongly typed is a flag; TensorRT 11: always on (the flag is kept, ignored, and
    # may go): set it where it exists.
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    return network


def _builder_config(
    trt: Any, builder: Any, card: ModelCard, batch: tuple[int, int, int], version_compatible: bool
) -> Any:
    """The builder config: one optimization profile over the batch axis, version-compatible if asked."""
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    lo, opt, hi = batch
    shape = tuple(card.input_shape)
    profile.set_shape(rundir.INPUT_TENSOR, (lo, *shape), (opt, *shape), (hi, *shape))
    config.add_optimization_profile(profile)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    return config


def _write_engine(
    trt: Any,
    serialized: Any,
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    card: ModelCard,
    batch: tuple[int, int, int],
    version_compatible: bool,
    log: Callable[[str], None] | None,
) -> pathlib.Path:
    """Write the serialized engine and, beside it, its card with what the engine is bound to."""
    import torch

    lo, opt, hi = batch
    engine_path = pathlib.Path(engine_path)
    atomic.write_bytes(engine_path, bytes(memoryview(serialized)))
    info = card.to_dict()  # the card's fields, then what the engine is bound to
    info.update(
        {
            "precision": card.precision,
            "version_compatible": version_compatible,
            "tensorrt_version": trt.__version__,
            "gpu_name": torch.cuda.get_device_name(),
            "compute_capability": ".".join(map(str, torch.cuda.get_device_capability())),
            "batch_profile": {"min": lo, "opt": opt, "max": hi},
            "onnx": pathlib.Path(onnx_path).name,
        }
    )
    atomic.write_text(rundir.engine_card(engine_path), json.dumps(info, indent=2) + "\n")
    if log:
        log(
            f"wrote {engine_path} and {rundir.engine_card(engine_path).name} "
            f"(TensorRT {trt.__version__}, {info['gpu_name']})"
        )
    return engine_path

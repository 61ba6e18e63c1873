"""Build a TensorRT engine from an exported ONNX file (TensorRT 10 and 11 Python API).

ONNX parser -> strongly typed network (the precision is the ONNX file's: export with --fp16 for a
half-precision engine; TensorRT 11 has no FP16 builder flag) -> one optimization profile over the
batch axis (min:opt:max) -> serialized engine `model.engine`, and beside it `model.engine.json`: the
model card plus the TensorRT version, GPU and batch profile the engine was built for (an engine runs
only on the TensorRT version and GPU model it was built with).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Callable

from zoo import atomic
from zoo.card import ModelCard

from .onnx import INPUT_NAME, ExportError

DEFAULT_BATCH = (1, 8, 32)


def parse_batch(text: str) -> tuple[int, int, int]:
    """"min:opt:max" (or one number N for N:N:N) -> (min, opt, max); ValueError says what is wrong."""
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


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, card: ModelCard,
                 batch: tuple[int, int, int] = DEFAULT_BATCH, *,
                 log: Callable[[str], None] | None = print) -> pathlib.Path:
    """Build and write `engine_path` and its card `engine_path + ".json"`; returns the engine path."""
    from infer.predictor import engine_card_path, tensorrt_missing

    why = tensorrt_missing()
    if why:
        raise ExportError(why)
    import tensorrt as trt
    import torch

    major = int(trt.__version__.split(".")[0])
    if major < 10:
        raise ExportError(f"TensorRT {trt.__version__} is too old: this needs TensorRT 10 or 11 "
                          "(pip install 'cnnzoo[gpu]')")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10: strongly typed is a flag; TensorRT 11: always on (the flag is kept, ignored, and
    # may go): set it where it exists.
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    lo, opt, hi = batch
    shape = tuple(card.input_shape)
    profile.set_shape(INPUT_NAME, (lo, *shape), (opt, *shape), (hi, *shape))
    config.add_optimization_profile(profile)
    if log:
        log(f"building a TensorRT {trt.__version__} engine from {onnx_path} (batch {lo}:{opt}:{hi}); "
            "this takes a while")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"{onnx_path}: TensorRT could not build an engine (its log above says why)")
    engine_path = pathlib.Path(engine_path)
    atomic.write_bytes(engine_path, bytes(memoryview(serialized)))
    info = card.to_dict()  # the card's fields, then what the engine is bound to
    info.update({"tensorrt_version": trt.__version__, "gpu_name": torch.cuda.get_device_name(),
                 "compute_capability": ".".join(map(str, torch.cuda.get_device_capability())),
                 "batch_profile": {"min": lo, "opt": opt, "max": hi},
                 "onnx": pathlib.Path(onnx_path).name})
    atomic.write_text(engine_card_path(engine_path), json.dumps(info, indent=2) + "\n")
    if log:
        log(f"wrote {engine_path} and {engine_card_path(engine_path).name} "
            f"(TensorRT {trt.__version__}, {info['gpu_name']})")
    return engine_path

"""A Triton Inference Server model repository for an exported model.

    DIR/<name>/config.pbtxt       platform, max batch size, input/output names, types and dims,
                                  dynamic batching, the model card as a parameter
    DIR/<name>/labels.txt         the class names (Triton's classification extension reads them)
    DIR/<name>/1/model.onnx       (platform onnxruntime_onnx), or
    DIR/<name>/1/model.plan       (platform tensorrt_plan: a TensorRT engine)

The same layout serves on KServe's Triton runtime. config.pbtxt is protobuf text format of Triton's
`inference.ModelConfig` message.

A TensorRT plan runs only on the server's TensorRT if it was built version-compatible (the server then
needs `--backend-config=tensorrt,version-compatible=true`) or with the same TensorRT version, and only
on a GPU of the compute capability it was built for. Its batch profile must start at 1: Triton's
dynamic batcher sends batches of any size up to max_batch_size and does not pad them.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
from typing import Callable

from zoo import atomic, rundir
from zoo.card import ONNX_METADATA_KEY, ModelCard

from .onnx import ExportError


def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    from google.protobuf import text_encoding

    return '"' + text_encoding.CEscape(text.encode("utf-8"), as_utf8=True) + '"'


def triton_name(name: str) -> str:
    """A model name Triton accepts as a directory and in URLs: letters, digits, '_', '-', '.'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "model"


def check_plan_batch(batch: tuple[int, int, int]) -> None:
    """ExportError unless a TensorRT plan for Triton takes batches from 1 (MIN of --batch is 1)."""
    if batch[0] > 1:
        raise ExportError(
            f"--batch {':'.join(map(str, batch))}: a TensorRT plan for Triton needs MIN 1 "
            f"(Triton sends batches smaller than {batch[0]} unpadded and the engine would "
            f"refuse them); use --batch 1:{batch[1]}:{batch[2]}"
        )


def config_pbtxt(name: str, card: ModelCard, platform: str, batch: tuple[int, int, int]) -> str:
    _, opt, hi = batch
    dims = ", ".join(map(str, card.input_shape))
    preferred = ", ".join(str(b) for b in sorted({opt, hi}))
    lines = [
        f"name: {_quote(name)}",
        f"platform: {_quote(platform)}",
        f"max_batch_size: {hi}",
        "input [",
        "  {",
        f"    name: {_quote(rundir.INPUT_TENSOR)}",
        "    data_type: TYPE_FP32",
        f"    dims: [ {dims} ]",
        "  }",
        "]",
        "output [",
        "  {",
        f"    name: {_quote(rundir.OUTPUT_TENSOR)}",
        "    data_type: TYPE_FP32",
        f"    dims: [ {card.num_classes} ]",
        f"    label_filename: {_quote(rundir.TRITON_LABELS)}",
        "  }",
        "]",
        "dynamic_batching {",
        f"  preferred_batch_size: [ {preferred} ]",
        "  max_queue_delay_microseconds: 2000",
        "}",
    ]
    if platform == "tensorrt_plan":
        lines += ["instance_group [ { kind: KIND_GPU, count: 1 } ]"]
    lines += [
        "parameters {",
        f"  key: {_quote(ONNX_METADATA_KEY)}",
        f"  value {{ string_value: {_quote(card.to_json(indent=None))} }}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def write_repository(
    repo: str | os.PathLike,
    name: str,
    model_file: str | os.PathLike,
    card: ModelCard,
    batch: tuple[int, int, int],
    *,
    log: Callable[[str], None] | None = print,
) -> pathlib.Path:
    """Write model `name` into Triton repository `repo` from `model_file` (.onnx or .engine/.plan);
    returns the model's directory."""
    model_file = pathlib.Path(model_file)
    platform, target = rundir.TRITON_FILES[model_file.suffix.lower()]
    if platform == "tensorrt_plan":
        check_plan_batch(batch)
    model_dir = pathlib.Path(repo) / triton_name(name)
    dst = model_dir / rundir.TRITON_VERSION / target
    atomic.write_with(dst, lambda tmp: shutil.copyfile(model_file, tmp))
    atomic.write_text(model_dir / rundir.TRITON_LABELS, "".join(f"{c}\n" for c in card.class_names))
    atomic.write_text(model_dir / rundir.TRITON_CONFIG, config_pbtxt(model_dir.name, card, platform, batch))
    if log:
        log(f"wrote Triton model {model_dir} ({platform}, max batch {batch[2]}, dynamic batching)")
        if platform == "tensorrt_plan":
            log(plan_note(model_file))
    return model_dir


def plan_note(plan: pathlib.Path) -> str:
    """One line on what Triton server can run this TensorRT plan, from the engine's card beside it."""
    try:
        info = json.loads(rundir.engine_card(plan).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    version, cc = info.get("tensorrt_version", "?"), info.get("compute_capability", "?")
    if info.get("version_compatible"):
        return (
            f"the plan is version-compatible (built with TensorRT {version}): start tritonserver with "
            f"--backend-config=tensorrt,version-compatible=true, on a GPU of compute capability {cc}"
        )
    return (
        f"the plan runs only on a Triton server with TensorRT {version} and a GPU of compute capability "
        f"{cc} (`zoo export RUN --trt --triton DIR` builds a version-compatible one)"
    )

"""Export a model to ONNX, with its card inside, and verify it against PyTorch with ONNX Runtime.

    >>> from export.onnx import export_run
    >>> export_run("runs/lenet5-20261121-101500")          # -> runs/lenet5-.../model.onnx, verified

The file: input `input` [batch, C, H, W] float32, output `logits` [batch, num_classes] float32, the
batch axis dynamic; the model card as JSON in `metadata_props` under zoo.card.ONNX_METADATA_KEY, so
the file alone says how to preprocess and what the classes are. `onnx.checker` (full check) must pass,
then ONNX Runtime (CPU) runs a random batch of another size than the traced one, and the export fails
if its logits differ from PyTorch's by more than the tolerance.

`to_fp16` writes the float16 variant (float32 input and output kept, through Cast nodes): the way a
strongly typed TensorRT network gets reduced precision.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from zoo import atomic, rundir
from zoo.card import ONNX_METADATA_KEY, ModelCard

if TYPE_CHECKING:
    import onnx
    import torch

TRACE_BATCH = 2  # the batch traced; verification uses another, which proves the axis is dynamic
VERIFY_BATCH = 3
FP32_TOLERANCE = (1e-4, 1e-3)  # (atol, rtol): pass if max|a-b| <= atol + rtol * max|reference|
FP16_TOLERANCE = (1e-3, 5e-2)  # float16 keeps ~3 digits; deep nets lose more


class ExportError(RuntimeError):
    """Export or verification failed; the message says where."""


@dataclass
class Verification:
    """How far ONNX Runtime's logits are from the reference (PyTorch's) on one random batch."""

    batch: int
    max_abs: float  # max |onnx - reference|
    max_rel: float  # max_abs / max |reference|: the error relative to the logits' scale
    scale: float  # max |reference|
    atol: float
    rtol: float

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.atol + self.rtol * self.scale

    def __str__(self) -> str:
        return (
            f"batch {self.batch}: max abs diff {self.max_abs:.3g}, max rel diff {self.max_rel:.3g} "
            f"(tolerance {self.atol:g} + {self.rtol:g} x {self.scale:.3g}): " + ("ok" if self.ok else "FAILED")
        )


def random_batch(card: ModelCard, batch: int, seed: int = 0) -> np.ndarray:
    """A float32 [batch, C, H, W] batch of standard-normal values, reproducible by seed."""
    return np.random.default_rng(seed).standard_normal((batch, *card.input_shape)).astype(np.float32)


@contextlib.contextmanager
def _quiet_exporter():
    """The torch.export-based exporter warns about things that do not concern these models
    (torchvision's ops not installed, deprecations inside torch): keep the user's terminal clean."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def checked(proto: onnx.ModelProto, what: str) -> bytes:
    """The serialized model, once `onnx.checker` (full check: with strict shape inference) passed."""
    import onnx

    data = proto.SerializeToString()
    try:
        onnx.checker.check_model(data, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"{what}: onnx.checker rejects the export: {e}") from e
    return data


def to_onnx(model: torch.nn.Module, card: ModelCard, opset: int | None = None) -> onnx.ModelProto:
    """The ModelProto of `model` (eval mode, on CPU) with the card in its metadata."""
    import torch

    model = model.eval().cpu()
    x = torch.from_numpy(random_batch(card, TRACE_BATCH))
    with _quiet_exporter(), torch.inference_mode(False):
        try:
            program = torch.onnx.export(
                model,
                (x,),
                input_names=[rundir.INPUT_TENSOR],
                output_names=[rundir.OUTPUT_TENSOR],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                opset_version=opset,
                dynamo=True,
                optimize=True,
                verbose=False,
            )
        except Exception as e:  # the exporter raises many types; all mean the same to the user
            raise ExportError(f"{card.architecture}: torch.onnx.export failed: {str(e).strip().splitlines()[0]}") from e
    proto = program.model_proto
    proto.producer_name = "cnnzoo"
    proto.doc_string = f"{card.architecture}, {card.num_classes} classes, input {card.input_shape}"
    set_card(proto, card)
    return proto


def set_card(proto: onnx.ModelProto, card: ModelCard) -> None:
    """Put `card` into the ModelProto's metadata (replacing what was there)."""
    import onnx

    del proto.metadata_props[:]
    proto.metadata_props.append(onnx.StringStringEntryProto(key=ONNX_METADATA_KEY, value=card.to_json(indent=None)))


def card_of(path: str | os.PathLike) -> ModelCard:
    """The model card inside an ONNX file (infer.files.onnx_card's, as an ExportError)."""
    from infer.files import onnx_card
    from infer.predictor import ModelFileError

    try:
        return onnx_card(path)
    except ModelFileError as e:
        raise ExportError(str(e)) from None


def write_card(path: str | os.PathLike, card: ModelCard) -> None:
    """Replace the model card inside ONNX file `path` (atomically: a reader sees the old file or the new)."""
    import onnx

    proto = onnx.load(str(path))
    set_card(proto, card)
    atomic.write_bytes(path, proto.SerializeToString())


def ort_logits(path: str | os.PathLike, x: np.ndarray) -> np.ndarray:
    """Run an ONNX file on ONNX Runtime's CPU provider (the reference build every machine has)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([rundir.OUTPUT_TENSOR], {rundir.INPUT_TENSOR: x})[0]


def compare(got: np.ndarray, reference: np.ndarray, tolerance: tuple[float, float]) -> Verification:
    if got.shape != reference.shape:
        raise ExportError(f"output shape {list(got.shape)} differs from PyTorch's {list(reference.shape)}")
    diff = np.abs(got.astype(np.float64) - reference.astype(np.float64))
    scale = float(np.abs(reference).max())
    max_abs = float(diff.max())
    return Verification(len(got), max_abs, max_abs / scale if scale else max_abs, scale, *tolerance)


def torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model.eval().cpu()(torch.from_numpy(x)).float().numpy()


def verify(
    path: str | os.PathLike,
    reference: np.ndarray,
    x: np.ndarray,
    tolerance: tuple[float, float] = FP32_TOLERANCE,
    name: str | os.PathLike | None = None,
    logits: np.ndarray | None = None,
) -> Verification:
    """ONNX Runtime's logits for `x` (`logits` where the caller has them already) against `reference`;
    ExportError (naming `name`, default `path`) if over the tolerance."""
    v = compare(ort_logits(path, x) if logits is None else logits, reference, tolerance)
    if not v.ok:
        raise ExportError(f"{name or path}: ONNX Runtime's logits differ from the reference: {v}")
    return v


def export_model(
    model: torch.nn.Module,
    card: ModelCard,
    path: str | os.PathLike,
    *,
    opset: int | None = None,
    tolerance: tuple[float, float] = FP32_TOLERANCE,
    verify_batch: int = VERIFY_BATCH,
    log: Callable[[str], None] | None = print,
) -> Verification:
    """Export `model` (described by `card`) to `path`, check and verify it; the verification.

    The file is first written beside `path` under a temporary name and only renamed into place
    once it has passed, so a failed export leaves no model file behind.
    """
    path = pathlib.Path(path)
    proto = to_onnx(model, card, opset)
    data = checked(proto, card.architecture)
    x = random_batch(card, verify_batch, seed=1)
    reference = torch_logits(model, x)
    with atomic.atomic_path(path) as tmp:
        tmp.write_bytes(data)
        ort = ort_logits(tmp, x)  # one ONNX Runtime session checks the file against both (2 s for VGG)
        v = verify(tmp, reference, x, tolerance, name=path, logits=ort)
        ov = verify_openvino(tmp, x, tolerance, name=path, ort=ort)
    if log:
        log(
            f"wrote {path} (opset {proto.opset_import[0].version}); verified against PyTorch on {v}"
            + (f"; OpenVINO fp32 agrees with ONNX Runtime ({ov})" if ov else "")
        )
    return v


def verify_openvino(
    path: str | os.PathLike,
    x: np.ndarray,
    tolerance: tuple[float, float] = FP32_TOLERANCE,
    name: str | os.PathLike | None = None,
    ort: np.ndarray | None = None,
) -> Verification | None:
    """Where openvino is installed: its float32 logits for `x` against ONNX Runtime's on the same file
    (`ort`, where the caller ran it already; ExportError if over the tolerance); None where it is not
    installed."""
    from infer.predictor import installed

    if not installed("openvino"):
        return None
    from infer.backend_ov import OpenVINOPredictor

    got = OpenVINOPredictor(pathlib.Path(path), precision="fp32").predict(x)
    v = compare(got, ort_logits(path, x) if ort is None else ort, tolerance)
    if not v.ok:
        raise ExportError(f"{name or path}: OpenVINO's float32 logits differ from ONNX Runtime's: {v}")
    return v


def to_fp16(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    model: torch.nn.Module | None = None,
    tolerance: tuple[float, float] = FP16_TOLERANCE,
    verify_batch: int = VERIFY_BATCH,
    log: Callable[[str], None] | None = print,
) -> Verification:
    """Write the float16 variant of ONNX file `src` to `dst` (float32 input and output kept) and
    verify it on ONNX Runtime CPU against PyTorch's logits (`model`) or else `src`'s, with a looser
    tolerance."""
    import onnx
    from onnxconverter_common import float16

    proto = onnx.load(str(src))
    card = card_of(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns about every weight it clamps to the fp16 range
        half = float16.convert_float_to_float16(proto, keep_io_types=True)
    card.precision = "fp16"
    set_card(half, card)
    data = checked(half, f"{card.architecture} (float16)")
    x = random_batch(card, verify_batch, seed=2)
    reference = torch_logits(model, x) if model is not None else ort_logits(src, x)
    dst = pathlib.Path(dst)
    with atomic.atomic_path(dst) as tmp:
        tmp.write_bytes(data)
        try:
            v = verify(tmp, reference, x, tolerance, name=dst)
        except ExportError as e:
            raise ExportError(
                f"{e}; float16 is too coarse for this model's activations: use the float32 {pathlib.Path(src).name}"
            ) from None
    if log:
        log(
            f"wrote {dst} (float16 weights and activations, float32 input/output); verified against "
            f"{'PyTorch' if model is not None else 'the float32 model'} on {v}"
        )
    return v


def export_run(
    run: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    *,
    opset: int | None = None,
    fp16: bool = False,
    log: Callable[[str], None] | None = print,
) -> dict[str, pathlib.Path]:
    """Export a run directory's model to OUTPUT_DIR/model.onnx (default: the run directory), and with
    `fp16` also model.fp16.onnx; returns {"onnx": path, ["onnx_fp16": path]}."""
    model, card = rundir.load_model(run)
    out = pathlib.Path(output_dir) if output_dir is not None else pathlib.Path(run)
    if out.suffix == ".safetensors":  # a weights file: write beside it
        out = out.parent
    if output_dir is not None:
        out = atomic.directory(out)  # a link to a folder followed; a file there refused (OutputError)
    written = {"onnx": out / rundir.ONNX}
    export_model(model, card, written["onnx"], opset=opset, log=log)
    if fp16:
        written["onnx_fp16"] = out / rundir.ONNX_FP16
        to_fp16(written["onnx"], written["onnx_fp16"], model=model, log=log)
    return written

"""The export plan: which files `zoo export` writes from a run, as one library call.

    >>> from export.plan import ExportPlan, Int8Options, run_plan
    >>> plan = ExportPlan(fp16=True, int8=Int8Options(), triton="models/")
    >>> done = run_plan("runs/lenet5-20261121-101500", plan, log=print)
    >>> done.onnx, done.onnx_fp16, done.onnx_int8, done.engines, done.triton

The order, each file verified before it is renamed into place: model.onnx (against PyTorch), with
`fp16` model.fp16.onnx; with `int8` model.int8.onnx (`export.quantize`: its calibration and held-out
images are found and decoded first, so missing data stops the plan before anything is written); with
`trt` a TensorRT engine from the float file (fp16 where asked) and, with `int8`, model.int8.engine from
a symmetric-int8 variant quantized and verified the same way (in a temporary file); with `triton` a
Triton model repository serving the last of them (an engine built version-compatible for it).
`ExportPlan.check` refuses, before anything is written, what cannot run here or does not fit together.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from dataclasses import dataclass, field
from typing import Callable

from zoo import atomic, rundir, runlock
from zoo.card import ModelCard

from . import quantize
from .onnx import ExportError, card_of, export_run
from .tensorrt import DEFAULT_BATCH, build_engine, engine_file
from .triton import check_plan_batch, write_repository


class PlanError(ExportError):
    """Options that do not fit together (on the command line: a usage error, exit code 2)."""


@dataclass(frozen=True)
class Int8Options:
    """How model.int8.onnx is calibrated and verified (`export.quantize`)."""

    calibration: str | None = None  # a --data value or a plain folder of images; None: the run's training split
    images: int = quantize.DEFAULT_IMAGES  # how many images calibrate
    method: str = quantize.DEFAULT_METHOD  # one of quantize.METHODS
    max_accuracy_drop: float = quantize.DEFAULT_MAX_DROP  # points of top-1 int8 may lose against fp32
    verify_data: str | None = None  # None: the run's held-out split


@dataclass(frozen=True)
class ExportPlan:
    """What to write from a run: model.onnx always, and the rest as asked."""

    output: str | os.PathLike | None = None  # where the files go (default: the run directory)
    opset: int | None = None  # None: the exporter's own
    fp16: bool = False  # model.fp16.onnx (and an fp16 engine / Triton model from it)
    int8: Int8Options | None = None  # model.int8.onnx (and with `trt` model.int8.engine)
    trt: bool = False  # TensorRT engines
    batch: tuple[int, int, int] = DEFAULT_BATCH  # the engines' (min, opt, max) profile; Triton's max batch
    triton: str | os.PathLike | None = None  # a Triton model repository to write the model into

    def check(self) -> None:
        """ExportError where TensorRT is asked for and cannot run here; PlanError where the options do not
        fit together (a TensorRT plan for Triton whose batch profile does not start at 1)."""
        from infer.predictor import tensorrt_missing

        if self.int8 is not None:
            quantize.check_options(self.int8.method, self.int8.max_accuracy_drop)
        if self.trt:
            why = tensorrt_missing()
            if why:
                raise ExportError(why)
            if self.triton:  # Triton does not pad small batches up to the profile's MIN
                try:
                    check_plan_batch(self.batch)
                except ExportError as e:
                    raise PlanError(str(e)) from None


@dataclass
class Exported:
    """What `run_plan` wrote."""

    onnx: pathlib.Path  # model.onnx
    onnx_fp16: pathlib.Path | None = None
    int8: quantize.Result | None = None  # model.int8.onnx: its path, how it was made, its verification
    int8_tensorrt: quantize.Result | None = None  # the variant model.int8.engine came from (a temporary file)
    engines: list[pathlib.Path] = field(default_factory=list)
    triton: pathlib.Path | None = None  # the model's directory in the Triton repository

    @property
    def onnx_int8(self) -> pathlib.Path | None:
        return self.int8.path if self.int8 else None

    @property
    def served(self) -> pathlib.Path:
        """The file a Triton repository serves: the last engine, else the int8, fp16 or float32 ONNX file."""
        return (self.engines or [self.onnx_int8 or self.onnx_fp16 or self.onnx])[-1]


def run_plan(run: str | os.PathLike, plan: ExportPlan, *, log: Callable[[str], None] | None = print) -> Exported:
    """Write what `plan` asks for from run directory (or weights file) `run`; what it wrote. ExportError
    (QuantizeError, PlanError), rundir.RunError or zoo.atomic.OutputError (a file where an output
    folder goes), one line, where it cannot; what fails with the plan's options, the run's card or the
    int8 data fails before anything is written. A run that `zoo train` is still writing is refused
    (runlock.RunBusy, a RunError naming the process)."""
    plan.check()
    folder = pathlib.Path(run) if pathlib.Path(run).is_dir() else pathlib.Path(run).parent
    runlock.check_idle(folder, "export it once the run has finished")
    card = rundir.read_card(run)  # a damaged card stops here, before anything is written
    prepared = None
    if plan.int8 is not None:  # the data to calibrate and verify on must be there before anything is written
        o = plan.int8
        prepared = quantize.prepare(card, calibration=o.calibration, images=o.images, verify_data=o.verify_data)
    if plan.triton:  # a file where its folder goes is refused before anything is written
        atomic.directory(plan.triton)
    written = export_run(run, plan.output, opset=plan.opset, fp16=plan.fp16, log=log)
    done = Exported(written["onnx"], written.get("onnx_fp16"))
    if plan.int8 is not None:
        done.int8 = _int8(done.onnx, plan.int8, prepared, tensorrt=False, log=log)
    if plan.trt:
        _engines(done, plan, prepared, log)
    if plan.triton:
        done.triton = write_repository(plan.triton, rundir.model_name(run), done.served, card, plan.batch, log=log)
    return done


def _int8(
    onnx_file: pathlib.Path,
    options: Int8Options,
    prepared: quantize.Prepared,
    *,
    tensorrt: bool,
    log: Callable[[str], None] | None,
    dst: pathlib.Path | None = None,
) -> quantize.Result:
    return quantize.quantize(
        onnx_file,
        dst,
        method=options.method,
        max_accuracy_drop=options.max_accuracy_drop,
        prepared=prepared,
        tensorrt=tensorrt,
        log=log,
    )


def _engines(
    done: Exported, plan: ExportPlan, prepared: quantize.Prepared | None, log: Callable[[str], None] | None
) -> None:
    """Build the TensorRT engines the plan asks for into `done.engines`: from the float file (fp16 where
    asked) unless only int8 is, and with int8 from the symmetric-int8 variant of the QDQ file (verified too)."""
    version_compatible = bool(plan.triton)
    if plan.int8 is None or plan.fp16:  # float32 or float16, from the file above (its card says which)
        onnx_file = done.onnx_fp16 or done.onnx
        done.engines.append(_engine(onnx_file, done.onnx.parent, card_of(onnx_file), plan, version_compatible, log))
    if plan.int8 is not None:
        with tempfile.TemporaryDirectory(prefix="zoo-int8-trt-") as tmp:
            variant = _int8(
                done.onnx, plan.int8, prepared, tensorrt=True, log=log, dst=pathlib.Path(tmp) / rundir.ONNX_INT8
            )
            done.int8_tensorrt = variant
            engine = _engine(variant.path, done.onnx.parent, card_of(variant.path), plan, version_compatible, log)
            done.engines.append(engine)


def _engine(
    onnx_file: pathlib.Path,
    folder: pathlib.Path,
    card: ModelCard,
    plan: ExportPlan,
    version_compatible: bool,
    log: Callable[[str], None] | None,
) -> pathlib.Path:
    """The engine of `onnx_file` in `folder`, named after its card's precision."""
    return build_engine(
        onnx_file,
        folder / engine_file(card.precision),
        card,
        plan.batch,
        version_compatible=version_compatible,
        log=log,
    )

"""Why a way of running a model is not taken: a value (`Reason`), and the one function that words it.

The policy (infer/policy.py) decides with reasons, never with their text: the kind says which error a
refusal raises (`Reason.error`), what is missing is in the fields (the runtime, the precision, the model
named; the library's or the hardware's own words in `detail`). `describe` turns a reason into the line
the user reads, with the `zoo export` or `pip` command that makes the missing thing, where there is one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .predictor import BackendUnavailable, ModelFileError


class Kind(enum.Enum):
    NO_FILE = "no-file"  # no file for this precision on this runtime
    UNSUPPORTED = "unsupported"  # the runtime does not compute the precision at all
    UNVERIFIED = "unverified"  # `auto` takes a reduced precision only where the export verified it
    LIBRARY_MISSING = "library-missing"
    HARDWARE_MISSING = "hardware-missing"  # or the device asked for, or an engine built for another
    STALE = "stale"  # the exported file is older than the weights
    SLOWER = "slower"  # measured slower on this CPU at export
    NOT_TIMED = "not-timed"  # runnable, but the export timed others, and auto takes the fastest it timed

    @property
    def error(self) -> type[Exception]:
        """The error a refusal for this reason raises."""
        return ModelFileError if self is Kind.NO_FILE else BackendUnavailable


class Unverified(enum.Enum):
    """Which verification a reduced precision lacks."""

    NO_RECORD = "no-record"  # an int8 file whose card has no quantization record
    INT8_ON_GPU = "int8-on-gpu"  # model.int8.onnx is verified for the CPU runtimes
    NOT_MEASURED = "not-measured"  # bf16 / fp16 from the float32 model: its accuracy never measured
    FP16_ON_CPU = "fp16-on-cpu"  # an fp16 file, which pays on a GPU only


@dataclass(frozen=True)
class Reason:
    """Why `precision` on `runtime` is not taken (`str()` says it in words)."""

    kind: Kind
    runtime: str
    precision: str
    detail: str = ""  # LIBRARY_MISSING, HARDWARE_MISSING: the check's own line; STALE: the newer file's name;
    # NOT_TIMED: the option taken instead
    model: str = ""  # NO_FILE: the model as named (the command that makes the file names it)
    unverified: Unverified | None = None  # UNVERIFIED: which verification is missing
    measured: tuple[float, float] = (0.0, 0.0)  # SLOWER: its img/s and the fastest one's; NOT_TIMED: (0, the fastest's)

    @property
    def error(self) -> type[Exception]:
        return self.kind.error

    def __str__(self) -> str:
        return describe(self)


# (runtime, precision) -> what to do instead, for the pairs no runtime computes
UNSUPPORTED = {
    ("onnxruntime", "bf16"): "ONNX Runtime has no bfloat16 convolutions on the CPU; use openvino",
    ("tensorrt", "bf16"): "export an fp16 or int8 engine instead",
    ("torch", "int8"): "export with `zoo export --int8` and run onnxruntime or openvino",
}
_HOW_TO_MAKE = {
    "tensorrt": "build one with `zoo export {model} --trt{flag}`",
    "onnxruntime": "export one with `zoo export {model}{flag}`",
    "openvino": "export one with `zoo export {model}{flag}`",
    "torch": "train one with `zoo train` (a .onnx or .engine file runs on its own backend)",
}
_FLAG = {"fp16": " --fp16", "int8": " --int8"}  # the export flag that writes a precision's file
_UNVERIFIED = {
    Unverified.NO_RECORD: "no quantization record in its card (write it with `zoo export --int8`)",
    Unverified.INT8_ON_GPU: "model.int8.onnx (uint8 activations) is for CPU runtimes: on a GPU, build a TensorRT "
    "engine with `zoo export --trt --int8`",
    Unverified.NOT_MEASURED: "accuracy not verified at export (`zoo export --int8` measures it where it is native)",
    Unverified.FP16_ON_CPU: "an fp16 file pays on a GPU only (ONNX Runtime's CPU provider computes it through float32)",
}


def describe(reason: Reason) -> str:
    """The reason in one line, as the user reads it (in `selection`, a refusal, `zoo bench`'s skipped)."""
    kind, runtime, precision = reason.kind, reason.runtime, reason.precision
    if kind is Kind.NO_FILE:
        flag = _FLAG.get(precision, "" if runtime == "tensorrt" else " --onnx")
        return f"no file for {precision} on {runtime}: " + _HOW_TO_MAKE[runtime].format(model=reason.model, flag=flag)
    if kind is Kind.UNSUPPORTED:
        return f"{runtime} does not compute {precision}: {UNSUPPORTED[runtime, precision]}"
    if kind is Kind.UNVERIFIED:
        return _UNVERIFIED[reason.unverified]
    if kind is Kind.STALE:
        return f"older than {reason.detail} (run `zoo export` again)"
    if kind is Kind.SLOWER:
        mine, best = reason.measured
        return f"slower on this CPU as measured at export ({mine:,.0f} img/s vs {best:,.0f})"
    if kind is Kind.NOT_TIMED:
        return f"not timed at export, where {reason.detail} measured fastest ({reason.measured[1]:,.0f} img/s)"
    return reason.detail  # LIBRARY_MISSING, HARDWARE_MISSING: the check's own words

"""`auto`: which runtime computes in which precision from which file, and why (`options`, `choose`),
and `load`, which runs the choice.

    >>> import infer
    >>> p = infer.load("runs/lenet5-20261121-101500")        # auto: fastest verified precision, fastest runtime
    >>> p.precision, p.backend, p.selection                   # "int8", "openvino", "auto chose int8 on ..."

Precisions (zoo.card.PRECISIONS): fp32; bf16 and fp16 (computed by the runtime from the float32 model,
where the hardware has them natively, or an fp16 file on a GPU); int8 (a quantize-dequantize file,
verified for accuracy at export). RUNTIMES gives, per precision, the order `auto` tries them in
(measured: benchmarks/infer.md; the rule and its reasons: DESIGN.md). Every option that cannot run
carries a `Reason` (infer/reasons.py): the policy decides on reasons' kinds, never on their words.
Imports neither torch, onnxruntime nor openvino at import time.
"""

from __future__ import annotations

import logging
import os
import pathlib
from dataclasses import dataclass

from zoo import rundir
from zoo.card import PRECISIONS
from zoo.verification import Verification

from . import files as model_files
from .predictor import BACKENDS, BackendUnavailable, ModelFileError, Predictor, installed, tensorrt_missing
from .reasons import UNSUPPORTED, Kind, Reason, Unverified

log = logging.getLogger(__name__)

# `auto`: the fastest precision first (int8 kernels beat bf16 ones on AMX, and fp16 on a GPU; a reduced
# precision is taken only where the export verified it), then per precision the fastest runtime first.
AUTO_PRECISIONS = ("int8", "bf16", "fp16", "fp32")
RUNTIMES = {
    "int8": ("tensorrt", "openvino", "onnxruntime"),
    "bf16": ("openvino", "torch"),
    "fp16": ("tensorrt", "onnxruntime", "openvino", "torch"),
    "fp32": ("tensorrt", "onnxruntime", "openvino", "torch"),
}
_GPU_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}


@dataclass
class Option:
    """One way to run a model here: a runtime computing in a precision from a file, and, where it cannot
    run, why (`reason`; `problem` says it in words)."""

    backend: str
    precision: str
    file: pathlib.Path | None
    reason: Reason | None = None

    @property
    def problem(self) -> str | None:
        """Why it cannot run here, in one line (None: it can)."""
        return None if self.reason is None else str(self.reason)

    def __str__(self) -> str:
        return f"{self.precision} on {self.backend}" + (f" ({self.file.name})" if self.file else "")


def library_missing(backend: str) -> str | None:
    """None where `backend`'s library (and, for TensorRT, a GPU) is here, otherwise why not."""
    if backend == "tensorrt":
        return tensorrt_missing()
    if not installed(_MODULES[backend]):
        return f"{_MODULES[backend]} is not installed: {_INSTALL[backend]}"
    return None


_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "torch": "torch"}
_INSTALL = {
    "onnxruntime": "pip install 'cnnzoo[cpu]' (or [gpu])",
    "openvino": "pip install 'cnnzoo[openvino]'",
    "torch": "pip install torch",
}


def _ort_has(providers: set[str]) -> bool:
    """Whether the installed onnxruntime build has any of these execution providers."""
    if not installed("onnxruntime"):
        return False
    import onnxruntime as ort

    return bool(providers & set(ort.get_available_providers()))


def _hardware_missing(backend: str, precision: str, device: str | None, file: pathlib.Path) -> str | None:
    """Why `backend` cannot compute `precision` natively here, or run `file` (None: it can)."""
    from zoo.hardware import native_missing

    if backend == "openvino" and device and device.startswith("cuda"):
        return "openvino runs on the CPU here (device cuda asked for)"
    if backend == "tensorrt" and device == "cpu":
        return "TensorRT runs on a GPU (device cpu asked for)"
    if backend == "tensorrt":  # an engine runs on the TensorRT version and GPU it was built for
        from .backend_trt import engine_mismatch

        return engine_mismatch(file)
    if precision in ("bf16", "fp16") and backend == "openvino":
        return native_missing(precision)
    if backend == "torch" and precision in ("bf16", "fp16"):
        import torch

        on_gpu = torch.cuda.is_available() and device != "cpu"
        if precision == "fp16" and not on_gpu:
            return "torch computes fp16 on a GPU only; use openvino on a CPU with native fp16"
        return None if on_gpu else native_missing("bf16")
    return None


def _unverified(option: Option, files: dict[str, pathlib.Path], device: str | None) -> Unverified | None:
    """For `auto`: None where the export verified `option`'s precision, else which verification it lacks.

    fp32 needs nothing; an int8 file exists only once its accuracy passed at export; bf16 and fp16
    computed from the float32 model need the accuracy the int8 export measured for them (the ONNX
    card's verification record); an fp16 file is verified at export, and pays on a GPU only."""
    p = option.precision
    if p == "fp32":
        return None
    if p == "int8":
        if "quantization" not in model_files.card_of(option.file).provenance:
            return Unverified.NO_RECORD
        if option.backend == "onnxruntime" and device != "cpu" and _ort_has(_GPU_PROVIDERS):
            return Unverified.INT8_ON_GPU
        return None
    if option.backend in model_files.FROM_FLOAT32:
        record = _verification(option, files)
        return None if record is not None and p in record.verified else Unverified.NOT_MEASURED
    if option.backend == "onnxruntime" and not _ort_has(_GPU_PROVIDERS):
        return Unverified.FP16_ON_CPU
    return None


def _verification(option: Option, files: dict[str, pathlib.Path]) -> Verification | None:
    """The record of what `zoo export` measured for the model `option` runs (None where there is none):
    an int8 file's own, else the float32 ONNX file's."""
    if option.precision == "int8":
        return Verification.from_card(model_files.card_of(option.file))
    if "onnx" in files:
        return Verification.from_card(model_files.onnx_card(files["onnx"]))
    return None


def _reason(
    option: Option, path: pathlib.Path, files: dict, backend: str, precision: str, device: str | None
) -> Reason | None:
    """Why `option` (with a file) cannot run here, the first of: not verified (for `auto`), library or
    hardware missing, older than the weights (for `auto`); None: it can."""
    b, p, file = option.backend, option.precision, option.file
    chosen_file = path.is_file() and file == path and p == model_files.own_precision(file)
    if precision == "auto" and not chosen_file:  # a file named by itself runs in its own precision
        unverified = _unverified(option, files, device)
        if unverified is not None:
            return Reason(Kind.UNVERIFIED, b, p, unverified=unverified)
    missing = library_missing(b)
    if missing:
        return Reason(Kind.LIBRARY_MISSING, b, p, detail=missing)
    missing = _hardware_missing(b, p, device, file)
    if missing:
        return Reason(Kind.HARDWARE_MISSING, b, p, detail=missing)
    weights = files.get("weights")
    if backend == "auto" and model_files.stale(file, weights):
        return Reason(Kind.STALE, b, p, detail=weights.name)
    return None


def options(
    path: str | os.PathLike, backend: str = "auto", precision: str = "auto", *, device: str | None = None
) -> list[Option]:
    """Every way to run `path` that the arguments allow, in `auto`'s order of preference (the fastest
    precision first, then the fastest runtime for it), each with the reason it cannot run here, if any.

    With precision "auto", a reduced precision is taken only where the export verified its accuracy.
    """
    path = pathlib.Path(path)
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use auto, {', '.join(BACKENDS)}")
    if precision != "auto" and precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use auto, {', '.join(PRECISIONS)}")
    files = model_files.found(path)
    result = []
    for prec in AUTO_PRECISIONS if precision == "auto" else (precision,):
        for b in RUNTIMES[prec] if backend == "auto" else (backend,):
            if (b, prec) in UNSUPPORTED:
                result.append(Option(b, prec, None, Reason(Kind.UNSUPPORTED, b, prec)))
                continue
            option = Option(b, prec, model_files.file_for(b, prec, files))
            if option.file is None:
                option.reason = Reason(Kind.NO_FILE, b, prec, model=str(path))
            else:
                option.reason = _reason(option, path, files, backend, precision, device)
            result.append(option)
    return result


def _explain(chosen: Option, skipped: list[Option], asked: bool, record: Verification | None) -> str:
    """One line: what runs, and why (the accuracy that verified a reduced precision; faster options
    present here and why they were passed over)."""
    text = ("" if asked else "auto chose ") + str(chosen) + (", asked for" if asked else "")
    acc = record.accuracy if record is not None else {}
    if chosen.precision != "fp32" and chosen.precision in acc and "fp32" in acc:
        text += (
            f"; {chosen.precision} verified at export: {100 * acc[chosen.precision]:.2f}% top-1 vs fp32 "
            f"{100 * acc['fp32']:.2f}% on {record.images()}"
        )
    passed: dict[str, list[str]] = {}  # problem -> the options it ruled out, in order
    for o in skipped:
        if o.file is not None:  # an option with no file here is no news
            passed.setdefault(o.problem, []).append(str(o))
    return text + "".join(f"; {', '.join(opts)} skipped: {problem}" for problem, opts in passed.items())


def load(
    path: str | os.PathLike,
    backend: str = "auto",
    *,
    precision: str = "auto",
    device: str | None = None,
    threads: int | None = None,
    providers: list | None = None,
    spin_wait: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> Predictor:
    """A Predictor for a run directory, .safetensors, .onnx or .engine file.

    backend: "auto" (the fastest runtime installed for the precision) or one of BACKENDS.
    precision: "auto" (the fastest precision whose accuracy the export verified and that this machine
    computes natively: int8 > bf16 > fp16 > fp32) or one of PRECISIONS; a precision this machine cannot
    compute natively (bf16 without AVX512-BF16/AMX, say) is refused, never emulated.
    device: "cpu" or "cuda" (default: a GPU where the runtime has one). threads: intra-op threads.
    providers: ONNX Runtime execution providers, overriding the default order (TensorRT, CUDA, CPU:
    those installed). spin_wait=False: ONNX Runtime's threads sleep between runs (what a server wants).
    cache_dir: a writable folder for what runtimes compile (OpenVINO's compiled models in openvino/,
    ONNX Runtime's TensorRT engines in ort-trt/; None: OpenVINO keeps none, the engines go under
    zoo.download.cache_dir()). The choice and why is logged and kept in `predictor.selection`.
    """
    path = pathlib.Path(path)
    chosen, selection = choose(path, backend, precision, device=device)
    cls = _predictor_class(chosen.backend)
    kwargs = {"device": device, "threads": threads, "providers": providers, "precision": chosen.precision}
    if chosen.backend == "onnxruntime":
        kwargs["spin_wait"] = spin_wait
    if chosen.backend in ("onnxruntime", "openvino"):
        kwargs["cache_dir"] = cache_dir
    predictor = cls(chosen.file, **kwargs)
    predictor.precision = chosen.precision
    if path.is_dir():
        predictor.name = path.resolve().name
    predictor.selection = selection
    log.info("%s: %s", predictor.name, selection)
    return predictor


def choose(
    path: str | os.PathLike, backend: str = "auto", precision: str = "auto", *, device: str | None = None
) -> tuple[Option, str]:
    """What `load` would run (nothing is loaded): the option and the line that says why; the errors of
    `load` where nothing the arguments allow can run here."""
    path = pathlib.Path(path)
    found = options(path, backend, precision, device=device)
    chosen = next((o for o in found if o.reason is None), None)
    if chosen is None:
        _refuse(path, found, backend, precision)
    files = model_files.found(path)
    if precision == "auto":
        chosen = _fastest_measured(found, chosen, files)
    asked = backend != "auto" and precision != "auto"
    skipped = found[: found.index(chosen)]
    return chosen, _explain(chosen, skipped, asked, _verification(chosen, files))


def _fastest_measured(found: list[Option], first: Option, files: dict[str, pathlib.Path]) -> Option:
    """The runnable option `zoo export` measured fastest on a CPU of this model, where it timed `first`
    (auto's static choice) and others; else `first`. Options passed over get the measured reason.

    The static order holds for large models, but not everywhere: ONNX Runtime's int8 kernels lose to its
    fp32 ones on a model as small as LeNet, for one (benchmarks/quantize.md)."""
    from zoo.hardware import cpu

    def speed(o: Option) -> float | None:
        record = _verification(o, files)
        measured_here = record is not None and record.speed.cpu == cpu().name
        return record.speed.of(o.precision, o.backend) if measured_here else None

    runnable = [o for o in found if o.reason is None]
    timed = {str(o): speed(o) for o in runnable}
    if not timed[str(first)]:
        return first
    best = max((o for o in runnable if timed[str(o)]), key=lambda o: timed[str(o)])
    fastest = f"{best.precision} on {best.backend}"
    for o in runnable[: runnable.index(best)]:  # each passed over says why, timed or not
        if timed[str(o)]:
            o.reason = Reason(Kind.SLOWER, o.backend, o.precision, measured=(timed[str(o)], timed[str(best)]))
        else:
            o.reason = Reason(Kind.NOT_TIMED, o.backend, o.precision, fastest, measured=(0.0, timed[str(best)]))
    return best


def _refuse(path: pathlib.Path, found: list[Option], backend: str, precision: str) -> None:
    """Raise the one error that says best why nothing the arguments allow can run `path` here."""
    if not model_files.found(path):
        raise ModelFileError(
            f"{path}: no {rundir.ENGINE}, {rundir.ONNX} or {rundir.WEIGHTS} (is this a finished `zoo train` run?)"
        )
    missing = library_missing(backend) if backend != "auto" else None
    if missing:
        raise BackendUnavailable(missing)
    present = [o for o in found if o.file is not None]
    if not present:  # the last option is the plainest one asked for (fp32 when the precision is auto)
        last = found[-1].reason
        raise last.error(f"{path}: {last}")
    what = " on ".join(w for w in (precision, backend) if w != "auto") or "it"
    reasons = "; ".join(dict.fromkeys(f"{o}: {o.problem}" for o in present))
    raise BackendUnavailable(f"{path}: cannot run {what} here: {reasons}")


def _predictor_class(backend: str) -> type[Predictor]:
    if backend == "torch":
        from .backend_torch import TorchPredictor as cls
    elif backend == "onnxruntime":
        from .backend_ort import OrtPredictor as cls
    elif backend == "openvino":
        from .backend_ov import OpenVINOPredictor as cls
    else:
        from .backend_trt import TensorRTPredictor as cls
    return cls

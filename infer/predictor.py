"""One Predictor over four runtimes and four precisions, and `load`, which picks the file, the runtime
and the precision, and says why.

    >>> import infer
    >>> p = infer.load("runs/lenet5-20261121-101500")        # auto: fastest verified precision, fastest runtime
    >>> p.precision, p.backend, p.selection                   # "int8", "openvino", "auto chose int8 on ..."
    >>> logits = p.predict(batch)                              # float32 NCHW -> float32 [N, classes]

A model is a run directory (weights + card.json, and whatever `zoo export` wrote beside them:
model.onnx, model.fp16.onnx, model.int8.onnx, model.engine, model.int8.engine), a `.safetensors` file
with card.json beside it, a `.onnx` file (the card rides in its metadata) or a `.engine` file (with
`model.engine.json` beside it).

Precisions (PRECISIONS): fp32; bf16 and fp16 (computed by the runtime from the float32 model, where the
hardware has them natively, or an fp16 file on a GPU); int8 (a quantize-dequantize file from
`zoo export --int8`, verified for accuracy). Runtimes (BACKENDS): `tensorrt` (an engine; NVIDIA GPU),
`openvino` (CPU), `onnxruntime` (TensorRT and CUDA execution providers first where installed, CPU
otherwise), `torch` (CPU or CUDA). RUNTIMES gives, per precision, the order `auto` tries them in
(measured: benchmarks/infer.md; the rule and its reasons: DESIGN.md).
This module imports neither torch, onnxruntime nor openvino at import time: each backend imports its
own library when used, so the ONNX Runtime path runs where torch is not installed.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import pathlib
from dataclasses import dataclass

import numpy as np

from zoo import rundir
from zoo.card import ONNX_METADATA_KEY, PRECISIONS, CardError, ModelCard

log = logging.getLogger(__name__)

BACKENDS = ("tensorrt", "openvino", "onnxruntime", "torch")

GPU_HINT = "pip install 'cnnzoo[gpu]' on a machine with an NVIDIA GPU"

# `auto`: the fastest precision first (int8 kernels beat bf16 ones on AMX, and fp16 on a GPU; a reduced
# precision is taken only where the export verified it), then per precision the fastest runtime first.
AUTO_PRECISIONS = ("int8", "bf16", "fp16", "fp32")
RUNTIMES = {
    "int8": ("tensorrt", "openvino", "onnxruntime"),
    "bf16": ("openvino", "torch"),
    "fp16": ("tensorrt", "onnxruntime", "openvino", "torch"),
    "fp32": ("tensorrt", "onnxruntime", "openvino", "torch"),
}
UNSUPPORTED = {
    ("onnxruntime", "bf16"): "ONNX Runtime has no bfloat16 convolutions on the CPU; use openvino",
    ("tensorrt", "bf16"): "export an fp16 or int8 engine instead",
    ("torch", "int8"): "export with `zoo export --int8` and run onnxruntime or openvino",
}
_HOW_TO_MAKE = {
    "tensorrt": "build one with `zoo export {path} --trt{flag}`",
    "onnxruntime": "export one with `zoo export {path}{flag}`",
    "openvino": "export one with `zoo export {path}{flag}`",
    "torch": "train one with `zoo train` (a .onnx or .engine file runs on its own backend)",
}
_FLAG = {"fp16": " --fp16", "int8": " --int8"}  # the export flag that writes a precision's file


class ModelFileError(ValueError):
    """The path is not a model this package can load; the message says what to do."""


class BackendUnavailable(RuntimeError):
    """The backend's library or hardware is missing; the message says what to install."""


class Predictor:
    """A loaded model: `.predict(float32 NCHW) -> float32 logits [N, num_classes]`.

    Attributes: `card` (zoo.card.ModelCard), `backend` ("torch", "onnxruntime" or "tensorrt"),
    `name` (the run directory's name), `path` (the file it runs), `device` (what it runs on),
    `max_batch_size` (None where any batch fits in one call; larger batches are split otherwise),
    `selection` (why `load` chose this backend). `predict` may be called from several threads (the
    TensorRT backend serializes them: it has one execution context).
    """

    backend = "?"
    precision = "fp32"  # the arithmetic it computes in: one of PRECISIONS
    max_batch_size: int | None = None

    def __init__(self, path: pathlib.Path, card: ModelCard, device: str):
        self.path = pathlib.Path(path)
        self.card = card
        self.device = device
        self.name = rundir.model_name(self.path)
        self.selection = f"{self.backend} (asked for)"

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits for a float32 batch of shape [N, C, H, W] (C, H, W as the card says)."""
        x = self.check_input(x)
        if len(x) == 0:
            return np.zeros((0, self.card.num_classes), np.float32)
        step = self.max_batch_size or len(x)
        parts = [self._run(x[i : i + step]) for i in range(0, len(x), step)]
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return np.asarray(out, dtype=np.float32)

    __call__ = predict

    def _run(self, x: np.ndarray) -> np.ndarray:  # one batch of at most max_batch_size
        raise NotImplementedError

    def check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        want = tuple(self.card.input_shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(
                f"{self.name} takes a batch of shape [N, {', '.join(map(str, want))}], got {list(x.shape)}"
            )
        return np.ascontiguousarray(x, dtype=np.float32)

    def describe(self) -> str:
        """One line: model, precision, backend, device, file."""
        return (
            f"{self.name}: {self.card.architecture} in {self.precision} on {self.backend} ({self.device}) "
            f"from {self.path}"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def tensorrt_missing() -> str | None:
    """None where TensorRT engines can be built and run here; otherwise why not, in one line. Imports
    tensorrt only where it is installed (its libraries missing is a reason, not a crash)."""
    if not installed("tensorrt"):
        reason = "the tensorrt package is not installed"
    else:
        try:
            import tensorrt  # noqa: F401
        except (ImportError, OSError) as e:  # e.g. libnvinfer.so.10: cannot open shared object file
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            reason = f"the tensorrt package cannot be imported: {detail}"
        else:
            try:
                import torch

                reason = None if torch.cuda.is_available() else "no CUDA device is visible"
            except ImportError:
                reason = "torch (for CUDA buffers) is not installed"
    if reason is None:
        return None
    return f"TensorRT needs an NVIDIA GPU and the tensorrt package ({reason}): {GPU_HINT}"


def _found(path: pathlib.Path) -> dict[str, pathlib.Path]:
    """file kind ("engine", "engine_int8", "onnx", "onnx_fp16", "onnx_int8", "weights") -> the file, for
    what exists at `path`. A single file is one kind, named after its precision."""
    if path.is_dir():
        found = {kind: path / name for kind, name in rundir.MODEL_FILES.items()}
        return {k: f for k, f in found.items() if f.is_file()}
    if not path.exists():
        raise ModelFileError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    if suffix in rundir.ENGINE_SUFFIXES:
        return {"engine_int8" if _engine_precision(path) == "int8" else "engine": path}
    if suffix == ".onnx":
        precision = onnx_card(path).precision
        return {{"fp32": "onnx", "fp16": "onnx_fp16", "int8": "onnx_int8"}.get(precision, "onnx"): path}
    if suffix == ".safetensors":
        return {"weights": path}
    raise ModelFileError(f"{path}: expected a run directory, a .safetensors, .onnx or .engine file")


def onnx_card(path: str | os.PathLike) -> ModelCard:
    """The card in an ONNX file's metadata (onnx reads the file; weights are not kept); read once while
    the file is unchanged, and each caller gets a copy of its own."""
    path = pathlib.Path(path)
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _CARDS:
        import onnx

        from zoo.card import ONNX_METADATA_KEY

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # a truncated or foreign file: onnx raises DecodeError and others
            raise ModelFileError(f"{path}: not a readable ONNX file ({str(e).splitlines()[0]})") from None
        meta = {p.key: p.value for p in proto.metadata_props}
        if ONNX_METADATA_KEY not in meta:
            raise ModelFileError(
                f"{path}: no model card in the ONNX metadata (key {ONNX_METADATA_KEY!r}); "
                "export it with `zoo export RUN --onnx`"
            )
        _CARDS[key] = metadata_card(meta[ONNX_METADATA_KEY], path)
    return copy.deepcopy(_CARDS[key])  # the caller's own, to change at will


def metadata_card(text: str, path: str | os.PathLike) -> ModelCard:
    """The card a model file carries in its metadata; ModelFileError naming the file where it is damaged."""
    try:
        return ModelCard.from_json(text)
    except CardError as e:
        raise ModelFileError(f"{path}: damaged model card in its metadata (key {ONNX_METADATA_KEY!r}): {e}") from None


_CARDS: dict = {}


def _engine_precision(engine: pathlib.Path) -> str:
    import json

    try:
        return json.loads(rundir.engine_card(engine).read_text()).get("precision", "fp32")
    except (OSError, ValueError, AttributeError):
        return "fp32"


def _own_precision(file: pathlib.Path) -> str:
    """The precision a model file computes in by itself (an engine's, an ONNX file's card's)."""
    if file.suffix.lower() in rundir.ENGINE_SUFFIXES:
        return _engine_precision(file)
    if file.suffix.lower() == ".onnx":
        return onnx_card(file).precision
    return "fp32"


def _library_missing(backend: str) -> str | None:
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
    if precision == "bf16" and backend == "openvino":
        return native_missing("bf16")
    if precision == "fp16" and backend == "openvino":
        return native_missing("fp16")
    if backend == "torch" and precision in ("bf16", "fp16"):
        import torch

        on_gpu = torch.cuda.is_available() and device != "cpu"
        if precision == "fp16" and not on_gpu:
            return "torch computes fp16 on a GPU only; use openvino on a CPU with native fp16"
        return None if on_gpu else native_missing("bf16")
    return None


def _stale(exported: pathlib.Path, weights: pathlib.Path | None) -> str | None:
    """Why an exported file in a run directory must not stand for the weights: they are newer."""
    if weights is None or exported == weights or exported.stat().st_mtime >= weights.stat().st_mtime:
        return None
    return f"older than {weights.name} (run `zoo export` again)"


def _verified(option: "Option", found: dict[str, pathlib.Path], device: str | None) -> str | None:
    """For `auto`: None where the export verified `option`'s precision, else why it is not taken.

    fp32 needs nothing; an int8 file exists only once its accuracy passed at export; bf16 and fp16
    computed from the float32 model need the accuracy `zoo export --int8` measured for them (the ONNX
    card's provenance["verification"]); an fp16 file is verified at export, and pays on a GPU only."""
    p = option.precision
    if p == "fp32":
        return None
    if p == "int8":
        if "quantization" not in _card_of(option).provenance:
            return "no quantization record in its card (write it with `zoo export --int8`)"
        if (
            option.backend == "onnxruntime"
            and device != "cpu"
            and _ort_has({"CUDAExecutionProvider", "TensorrtExecutionProvider"})
        ):
            return (
                "model.int8.onnx (uint8 activations) is for CPU runtimes: on a GPU, build a TensorRT "
                "engine with `zoo export --trt --int8`"
            )
        return None
    if option.backend in ("openvino", "torch"):  # computed from the float32 model
        onnx_file = found.get("onnx")
        if onnx_file is not None and p in verified_precisions(onnx_card(onnx_file)):
            return None
        return "accuracy not verified at export (`zoo export --int8` measures it where it is native)"
    if option.backend == "onnxruntime" and not _ort_has({"CUDAExecutionProvider", "TensorrtExecutionProvider"}):
        return "an fp16 file pays on a GPU only (ONNX Runtime's CPU provider computes it through float32)"
    return None


def _verification(option: "Option", found: dict[str, pathlib.Path]) -> dict:
    """The accuracies `zoo export` measured for the model `option` runs (empty where none)."""
    if option.precision == "int8":
        card = _card_of(option)
    elif "onnx" in found:
        card = onnx_card(found["onnx"])
    else:
        return {}
    return card.provenance.get("verification", {})


def _card_of(option: "Option") -> ModelCard:
    if option.file.suffix == ".onnx":
        return onnx_card(option.file)
    engine = option.file.suffix in rundir.ENGINE_SUFFIXES
    card = rundir.engine_card(option.file) if engine else option.file.parent / rundir.CARD
    try:
        return ModelCard.load(card)
    except CardError as e:  # its message names the file
        raise ModelFileError(str(e)) from None


def verified_precisions(card: ModelCard) -> list[str]:
    """The precisions `zoo export` verified for this card's model, within its accuracy limit."""
    return list(card.provenance.get("verification", {}).get("verified", ["fp32"]))


def _file_for(backend: str, precision: str, found: dict[str, pathlib.Path]) -> pathlib.Path | None:
    """The file `backend` runs to compute in `precision`, among those found (None: there is none)."""
    if backend == "tensorrt":
        kind = "engine_int8" if precision == "int8" else "engine"
        engine = found.get(kind)
        return engine if engine is not None and _engine_precision(engine) == precision else None
    kinds = {
        "onnxruntime": {"fp32": "onnx", "fp16": "onnx_fp16", "int8": "onnx_int8"},
        "openvino": {"fp32": "onnx", "bf16": "onnx", "fp16": "onnx", "int8": "onnx_int8"},
        "torch": {"fp32": "weights", "bf16": "weights", "fp16": "weights"},
    }[backend]
    return found.get(kinds.get(precision, ""))


@dataclass
class Option:
    """One way to run a model here: a runtime computing in a precision from a file, and, where it cannot
    run, why (`problem`)."""

    backend: str
    precision: str
    file: pathlib.Path | None
    problem: str | None = None

    def __str__(self) -> str:
        return f"{self.precision} on {self.backend}" + (f" ({self.file.name})" if self.file else "")


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
    found = _found(path)
    weights = found.get("weights")
    result = []
    for prec in AUTO_PRECISIONS if precision == "auto" else (precision,):
        for b in RUNTIMES[prec] if backend == "auto" else (backend,):
            if (b, prec) in UNSUPPORTED:
                result.append(Option(b, prec, None, f"{b} does not compute {prec}: {UNSUPPORTED[b, prec]}"))
                continue
            file = _file_for(b, prec, found)
            option = Option(b, prec, file)
            if file is None:
                how = _HOW_TO_MAKE[b].format(path=path, flag=_FLAG.get(prec, "" if b == "tensorrt" else " --onnx"))
                option.problem = f"no file for {prec} on {b}: {how}"
            else:
                # a file named by itself is run in its own precision: the user chose it
                chosen_file = path.is_file() and file == path and prec == _own_precision(file)
                option.problem = (
                    (_verified(option, found, device) if precision == "auto" and not chosen_file else None)
                    or _library_missing(b)
                    or _hardware_missing(b, prec, device, file)
                    or (_stale(file, weights) if backend == "auto" else None)
                )
            result.append(option)
    return result


def _explain(chosen: Option, skipped: list[Option], asked: bool, verification: dict) -> str:
    """One line: what runs, and why (the accuracy that verified a reduced precision; faster options
    present here and why they were passed over)."""
    text = ("" if asked else "auto chose ") + str(chosen) + (", asked for" if asked else "")
    acc = verification.get("accuracy", {})
    if chosen.precision != "fp32" and chosen.precision in acc and "fp32" in acc:
        split = verification.get("split")
        text += (
            f"; {chosen.precision} verified at export: {100 * acc[chosen.precision]:.2f}% top-1 vs fp32 "
            f"{100 * acc['fp32']:.2f}% on {verification.get('n', 0):,} "
            f"{split + ' ' if split and split != 'all' else ''}images"
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
) -> Predictor:
    """A Predictor for a run directory, .safetensors, .onnx or .engine file.

    backend: "auto" (the fastest runtime installed for the precision) or one of BACKENDS.
    precision: "auto" (the fastest precision whose accuracy the export verified and that this machine
    computes natively: int8 > bf16 > fp16 > fp32) or one of PRECISIONS; a precision this machine cannot
    compute natively (bf16 without AVX512-BF16/AMX, say) is refused, never emulated.
    device: "cpu" or "cuda" (default: a GPU where the runtime has one). threads: intra-op threads.
    providers: ONNX Runtime execution providers, overriding the default order (TensorRT, CUDA, CPU:
    those installed). spin_wait=False: ONNX Runtime's threads sleep between runs (what a server wants).
    The choice and why is logged and kept in `predictor.selection`.
    """
    path = pathlib.Path(path)
    chosen, selection = choose(path, backend, precision, device=device)
    cls = _predictor_class(chosen.backend)
    kwargs = {"device": device, "threads": threads, "providers": providers, "precision": chosen.precision}
    if chosen.backend == "onnxruntime":
        kwargs["spin_wait"] = spin_wait
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
    chosen = next((o for o in found if o.problem is None), None)
    if chosen is None:
        _refuse(path, found, backend, precision)
    files = _found(path)
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
        measured = _verification(o, files).get("speed", {})
        return (
            measured.get("img_s", {}).get(f"{o.precision} on {o.backend}")
            if measured.get("cpu") == cpu().name
            else None
        )

    runnable = [o for o in found if o.problem is None]
    timed = {str(o): speed(o) for o in runnable}
    if not timed[str(first)]:
        return first
    best = max((o for o in runnable if timed[str(o)]), key=lambda o: timed[str(o)])
    for o in runnable[: runnable.index(best)]:
        if timed[str(o)]:
            o.problem = (
                f"slower on this CPU as measured at export ({timed[str(o)]:,.0f} img/s vs {timed[str(best)]:,.0f})"
            )
    return best


def _refuse(path: pathlib.Path, found: list[Option], backend: str, precision: str) -> None:
    """Raise the one error that says best why nothing the arguments allow can run `path` here."""
    if not _found(path):
        raise ModelFileError(
            f"{path}: no {rundir.ENGINE}, {rundir.ONNX} or {rundir.WEIGHTS} (is this a finished `zoo train` run?)"
        )
    if backend != "auto" and _library_missing(backend):
        raise BackendUnavailable(_library_missing(backend))
    present = [o for o in found if o.file is not None]
    if not present:  # the last option is the plainest one asked for (fp32 when the precision is auto)
        error = ModelFileError if found[-1].problem.startswith("no file") else BackendUnavailable
        raise error(f"{path}: {found[-1].problem}")
    what = " on ".join(w for w in (precision, backend) if w != "auto") or "it"
    reasons = "; ".join(dict.fromkeys(f"{o}: {o.problem}" for o in present))
    raise BackendUnavailable(f"{path}: cannot run {what} here: {reasons}")


def _predictor_class(backend: str):
    if backend == "torch":
        from .backend_torch import TorchPredictor as cls
    elif backend == "onnxruntime":
        from .backend_ort import OrtPredictor as cls
    elif backend == "openvino":
        from .backend_ov import OpenVINOPredictor as cls
    else:
        from .backend_trt import TensorRTPredictor as cls
    return cls

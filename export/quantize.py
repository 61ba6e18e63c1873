"""Post-training static int8 quantization of an exported model to a QDQ ONNX file, verified for accuracy.

    >>> from export.quantize import quantize
    >>> r = quantize("runs/lenet5-20261121-101500/model.onnx")     # -> .../model.int8.onnx, verified
    >>> r.verification["accuracy"]                                  # {"fp32": 0.981, "int8": 0.981, "bf16": ...}

The file: the float32 model with QuantizeLinear/DequantizeLinear pairs around every convolution, matrix
product and addition (ONNX Runtime's `quantize_static`, QDQ format):
weights int8 per output channel, symmetric; activations uint8 per tensor with a zero point (ACTIVATIONS:
the form ONNX Runtime's x86 kernels run fast, and OpenVINO's too); biases left float32. ONNX Runtime and
OpenVINO run it with int8 kernels. TensorRT takes symmetric int8 only (zero point 0, no int32 bias
DequantizeLinear): `tensorrt=True` writes that variant (ACTIVATIONS_TENSORRT), from the same calibration,
verified the same way, for `zoo export --trt --int8` to build model.int8.engine from. Why two forms and
not one: measured in benchmarks/quantize.md (scripts/compare_quantizers.py).

Calibration: the activation ranges come from `images` (default 300) pictures of the run's own training
split (never its validation or test split), or of `calibration` (any `--data` value, or a plain folder
of images): `zoo.data.calibration` picks them; standardized exactly as training does, fed one batch at
a time. `method` (METHODS) turns the observed values into ranges; the default is the one measured best
on our models.

Verification: top-1 accuracy of fp32 (ONNX Runtime on the float32 file) and int8 (ONNX Runtime and,
where installed, OpenVINO on the new file: the worst counts) on the run's held-out test split, else its
validation split (or `verify_data`), as `zoo.data.heldout` picks them. Over `max_accuracy_drop`
points: QuantizeError, nothing written. Where the CPU computes bf16 / fp16 natively and OpenVINO is
installed, those are measured too (OpenVINO on the float32 file), so that `infer.load(...,
precision="auto")` may take them. The results go into the int8 file's card (`provenance["quantization"]`,
`provenance["verification"]`) and the same verification into the float32 file's card
(`zoo.verification.Verification` reads it).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import pathlib
import tempfile
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from zoo import rundir
from zoo.card import ModelCard
from zoo.text import first_line, plural

from .onnx import ExportError, card_of, checked, set_card, write_card

if TYPE_CHECKING:
    import onnx

    from zoo.data.datasets import ImageSet
    from zoo.data.heldout import Images

METHODS = ("minmax", "entropy", "percentile")  # ONNX Runtime's calibration methods, by our names
DEFAULT_METHOD = "percentile"  # measured best on our models: benchmarks/quantize.md
DEFAULT_IMAGES = 300
DEFAULT_MAX_DROP = 1.0  # points of top-1 accuracy
WEIGHTS = "int8 per-channel symmetric"
# Activations in the file the CPU runtimes run: uint8 with a zero point, ONNX Runtime's fast x86 form (its
# int8-activation kernels ran slower than float32 here: benchmarks/quantize.md). TensorRT takes symmetric
# int8 only (zero point 0): `tensorrt=True` writes that variant, for `zoo export --trt --int8`.
ACTIVATIONS = "uint8 per-tensor asymmetric"
ACTIVATIONS_TENSORRT = "int8 per-tensor symmetric"
CALIBRATION_BATCH = 10  # images per calibration step: ranges and histograms are merged step by step
EVALUATION_BATCH = 32
REDUCED = ("bf16", "fp16")  # computed by OpenVINO from the float32 file, where the CPU has them natively


class QuantizeError(ExportError):
    """Quantization or its verification failed, or its data is missing; one line for the user."""


def calibration_images(card: ModelCard, calibration: str | None = None, count: int = DEFAULT_IMAGES) -> Images:
    """`count` images to calibrate on (`zoo.data.calibration`: the run's training split, or
    `calibration`; never its held-out images); QuantizeError, one line, where there are none."""
    from zoo.data.calibration import calibration_images as pick
    from zoo.data.datasets import DataError

    try:
        return pick(card, calibration, count)
    except DataError as e:
        raise QuantizeError(str(e)) from None


def held_out_images(card: ModelCard, verify_data: str | None = None) -> Images:
    """The images int8 is verified on (`zoo.data.heldout.held_out`): the run's test split, else its
    validation split, never the images it trained on; or `verify_data`'s test split, else all of it."""
    from zoo.data.datasets import DataError
    from zoo.data.heldout import held_out
    from zoo.data.provenance import TrainingData, same_data

    run = TrainingData.of(card)
    own = verify_data is None or (run is not None and same_data(verify_data, run.data))
    if own and run is None:
        raise QuantizeError(
            "the run's card names no held-out data to verify int8's accuracy on (it was not "
            "trained by `zoo train`): pass --verify-data DATA (images it never trained on)"
        )
    try:
        images = held_out(card, None if own else verify_data, remedy="--verify-data DATA")
    except DataError as e:
        raise QuantizeError(str(e) if own else f"--verify-data {verify_data}: {e}") from None
    if own and not images.held_out:
        raise QuantizeError(
            f"the run has neither a test nor a validation split of {run.data} to "
            "verify int8's accuracy on: pass --verify-data DATA (images it never trained on)"
        )
    if not own and images.split == "train":  # other data without a test split: all of it
        return replace(images, split="all")
    return images


def decode(images: Images, card: ModelCard, what: str, option: str | None = None) -> tuple[ImageSet, list[str]]:
    """The images as a uint8 ImageSet at the card's input shape, and the files that could not be read.
    `what` ("calibration", "held-out") names them in an error, `option` the option that chose them."""
    from zoo.data.datasets import DataError, Source

    source = Source(images.data, list(card.class_names), {what: images.raw})
    try:
        sets, skipped = source.load(card, progress=False)
    except DataError as e:
        why = str(e).removeprefix(f"{images.data}: ")
        raise QuantizeError(f"{option or 'the ' + what + ' data'} {images.data}: no usable images: {why}") from None
    return sets[what], skipped


class CalibrationReader:
    """ONNX Runtime's CalibrationDataReader over an ImageSet: standardized float32 batches, exactly as
    training feeds the model. `set_range` (in batches) lets the calibration go step by step."""

    def __init__(
        self, image_set, card: ModelCard, input_name: str = rundir.INPUT_TENSOR, batch: int = CALIBRATION_BATCH
    ):
        import torch

        self.images = image_set.images
        if self.images is None:  # a set too large to keep decoded: calibration sets are a few hundred images
            self.images = torch.cat([x for x, _ in image_set.batches(256)])
        self.card, self.input_name, self.batch = card, input_name, batch
        self.count = -(-len(self.images) // batch)
        self.set_range(0, self.count)

    def __len__(self) -> int:
        return self.count

    def set_range(self, start_index: int, end_index: int) -> None:
        self.next, self.end = start_index, min(end_index, self.count)

    def get_next(self) -> dict | None:
        from zoo.data.datasets import standardize, to_unit

        if self.next >= self.end:
            return None
        i = self.next * self.batch
        self.next += 1
        x = self.images[i : i + self.batch]
        return {self.input_name: standardize(to_unit(x), self.card).numpy()}

    def __iter__(self):
        while (item := self.get_next()) is not None:
            yield item


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantization tools print progress on stdout and warn through `logging.warning`,
    which would also give the root logger a handler for good: keep both to themselves."""
    root, quiet = logging.getLogger(), logging.NullHandler()
    level = root.level
    root.setLevel(logging.ERROR)
    root.addHandler(quiet)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeHandler(quiet)
        root.setLevel(level)


def library() -> str:
    import onnxruntime

    return "onnxruntime " + ".".join(onnxruntime.__version__.split(".")[:2])


def quantize_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    reader: CalibrationReader,
    method: str = DEFAULT_METHOD,
    *,
    symmetric: bool = False,
) -> None:
    """ONNX Runtime's static QDQ quantization of `src` to `dst` (no card, no verification), calibrated on
    `reader` one batch at a time, so memory does not grow with the number of images. (Its
    `quant_pre_process` is not run: on our exports, already shape-inferred with batch norm folded, it
    changed nothing in the quantized graph but its opset imports.)

    Activations uint8 with a zero point (ACTIVATIONS), or with `symmetric` int8 with zero point 0
    (ACTIVATIONS_TENSORRT: the form TensorRT takes; ONNX Runtime runs it slower on x86)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in METHODS:
        raise QuantizeError(f"calibration method {method!r}: use one of {', '.join(METHODS)}")
    calibrate = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    with _quiet():
        reader.set_range(0, len(reader))
        quantize_static(
            str(src),
            str(dst),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calibrate,
            extra_options={
                "ActivationSymmetric": symmetric,
                "WeightSymmetric": True,
                "QuantizeBias": False,  # float bias: TensorRT refuses int32 DequantizeLinear
                "CalibStridedMinMax": 1,
            },
        )  # one batch at a time, for every method


def top1(
    path: pathlib.Path, backend: str, precision: str, card: ModelCard, image_set: ImageSet
) -> tuple[float, np.ndarray, float | None]:
    """(top-1 accuracy, predicted classes, img/s) of `path` on `backend` (on the CPU) in `precision`,
    through the one evaluation (zoo.train.evaluate) with the card's preprocessing. img/s: the model's
    own calls at batch EVALUATION_BATCH after the first (a warm-up), what `auto` ranks by on this CPU."""
    import time

    import torch

    import infer
    from zoo.train.evaluate import evaluate

    predictor = infer.load(path, backend, precision=precision, device="cpu")  # CPU runtimes only
    predicted, timed = [], []

    def model(x):
        x = x.numpy()
        start = time.perf_counter()
        logits = predictor.predict(x)
        timed.append((len(x), time.perf_counter() - start))
        predicted.append(logits.argmax(1))
        return torch.from_numpy(logits)

    result = evaluate(model, card, image_set, batch_size=EVALUATION_BATCH)
    calls = timed[1:] or timed
    seconds = sum(t for _, t in calls)
    img_s = sum(n for n, _ in calls) / seconds if seconds > 0 else None
    return result.accuracy, np.concatenate(predicted) if predicted else np.zeros(0, np.int64), img_s


def runtimes() -> list[str]:
    """The CPU runtimes installed here that run an int8 QDQ file."""
    from infer.predictor import installed

    return [r for r in ("onnxruntime", "openvino") if installed(r)]


@dataclass
class Result:
    path: pathlib.Path
    quantization: dict
    verification: dict
    summary: str


def _points(a: float, b: float) -> float:
    """a - b in points of accuracy (accuracies are fractions)."""
    return round(100 * (a - b), 4)


def _signed(points: float) -> str:
    return f"{points + 0.0:+.2f}" if round(points, 2) != 0 else "0.00"


@dataclass
class Prepared:
    """The decoded images one quantization calibrates and verifies on."""

    calibration: Images
    held_out: Images
    calibration_set: ImageSet
    held_out_set: ImageSet
    skipped: list[str]


def prepare(
    card: ModelCard, *, calibration: str | None = None, images: int = DEFAULT_IMAGES, verify_data: str | None = None
) -> Prepared:
    """Find and decode the calibration and held-out images (QuantizeError when either is missing or has no
    usable image): what can fail with the data fails here, before anything is written."""
    calib, held = calibration_images(card, calibration, images), held_out_images(card, verify_data)
    calib_set, skipped = decode(calib, card, "calibration", "--calibration" if calibration else None)
    held_set, _ = decode(held, card, "held-out", "--verify-data" if verify_data else None)
    return Prepared(calib, held, calib_set, held_set, skipped)


def _top1_everywhere(src: pathlib.Path, candidate: pathlib.Path, card: ModelCard, held_set, tensorrt: bool):
    """(top-1 accuracy by precision and runtime, int8 predictions by runtime, img/s by option): fp32 on
    ONNX Runtime (the reference every machine has), int8 on every CPU runtime installed, and, for the
    CPU file, fp32 and the natively supported reduced precisions on OpenVINO."""
    from infer.predictor import installed
    from zoo.hardware import native_missing

    by_runtime: dict[str, dict[str, float]] = {"fp32": {}, "int8": {}}
    predicted, img_s = {}, {}

    def measure(path, runtime, precision):
        acc, pred, speed = top1(path, runtime, precision, card, held_set)
        by_runtime.setdefault(precision, {})[runtime] = acc
        img_s[precision, runtime] = speed
        return pred

    measure(src, "onnxruntime", "fp32")
    for runtime in runtimes():
        predicted[runtime] = measure(candidate, runtime, "int8")
    if installed("openvino") and not tensorrt:
        measure(src, "openvino", "fp32")
        for precision in REDUCED:
            if native_missing(precision) is None:
                measure(src, "openvino", precision)
    return by_runtime, predicted, img_s


def _emulators(tensorrt: bool) -> frozenset[str]:
    """The runtimes whose int8 answers do not count for the TensorRT variant here: on a CPU whose int8
    kernels saturate (no VNNI), ONNX Runtime's signed-activation kernels lose accuracy that TensorRT, the
    file's target, does not (the CPU file, for the CPU runtimes, counts every one of them)."""
    from zoo.hardware import int8_saturates

    return frozenset({"onnxruntime"}) if tensorrt and int8_saturates() else frozenset()


def _judged(
    by_runtime: dict,
    held,
    n: int,
    title: str,
    max_accuracy_drop: float,
    method: str,
    dst: pathlib.Path,
    uncounted: frozenset[str] = frozenset(),
) -> tuple[dict, list[str], str]:
    """(accuracy by precision (the worst runtime counts, but those in `uncounted`), verified precisions,
    summary line); QuantizeError where int8 loses more than `max_accuracy_drop` points."""
    fp32 = by_runtime["fp32"]["onnxruntime"]  # the reference: every machine has it
    counted = {p: {k: a for k, a in r.items() if k not in uncounted} or r for p, r in by_runtime.items()}
    accuracy = {"fp32": fp32, **{p: min(r.values()) for p, r in counted.items() if p != "fp32"}}
    drop = _points(fp32, accuracy["int8"])
    each = ", ".join(
        f"{r} {100 * a:.2f}%" + (" not counted: its int8 saturates on a CPU without VNNI" if r in uncounted else "")
        for r, a in by_runtime["int8"].items()
    )
    images_of = f"{n:,} {'' if held.split == 'all' else held.split + ' '}images of {held.data}"
    summary = (
        f"{title}: top-1 {100 * accuracy['int8']:.2f}%"
        + (f" ({each})" if len(by_runtime["int8"]) > 1 else "")
        + f" vs fp32 {100 * fp32:.2f}% on {images_of} ({_signed(-drop)} points)"
    )
    if drop > max_accuracy_drop:
        others = ", ".join(m for m in METHODS if m != method)
        raise QuantizeError(
            f"{summary}: int8 loses more than --max-accuracy-drop {max_accuracy_drop:g} points, "
            f"so {dst.name} was not written; try another --calibration-method ({others}), "
            "more --calibration-images, or a larger --max-accuracy-drop"
        )
    verified = ["fp32"] + [
        p for p in ("int8", *REDUCED) if p in accuracy and _points(fp32, accuracy[p]) <= max_accuracy_drop
    ]
    return accuracy, verified, summary


def _log_verified(
    log: Callable[[str], None],
    summary: str,
    accuracy: dict,
    verified: list[str],
    src: pathlib.Path,
    dst: pathlib.Path,
    activations: str,
    tensorrt: bool,
) -> None:
    fp32 = accuracy["fp32"]
    log(summary)
    for p in REDUCED:
        if p in accuracy:
            log(
                f"{p} (OpenVINO from {src.name}): top-1 {100 * accuracy[p]:.2f}% vs fp32 {100 * fp32:.2f}% "
                f"({_signed(-_points(fp32, accuracy[p]))} points): "
                + ("verified" if p in verified else "over the limit, so `auto` will not take it")
            )
    log(
        f"wrote {dst} (QDQ: weights {WEIGHTS}, activations {activations}); verified: {', '.join(verified)}"
        + ("" if tensorrt else f", recorded in the cards of {dst.name} and {src.name}")
    )


def check_options(method: str, max_accuracy_drop: float) -> None:
    """QuantizeError unless `method` is one of METHODS and `max_accuracy_drop` is 0 or more."""
    if method not in METHODS:
        raise QuantizeError(f"--calibration-method {method}: use one of {', '.join(METHODS)}")
    if max_accuracy_drop < 0:
        raise QuantizeError(f"--max-accuracy-drop {max_accuracy_drop:g}: must be 0 or more (points of top-1)")


def _float32_card(src: pathlib.Path, method: str, max_accuracy_drop: float) -> ModelCard:
    """The card of the float32 file to quantize, once the options are checked (QuantizeError otherwise)."""
    check_options(method, max_accuracy_drop)
    card = card_of(src)
    if card.precision != "fp32":
        raise QuantizeError(f"{src}: a {card.precision} file; quantize the float32 model.onnx")
    return card


def _quantization(method: str, activations: str, calib: Images, images: int) -> dict:
    """What the int8 file's card records about how it was made."""
    return {
        "library": library(),
        "format": "QDQ",
        "weights": WEIGHTS,
        "activations": activations,
        "bias": "float32",
        "method": method,
        "calibration": {"source": calib.data, "split": calib.split, "images": images, "seed": calib.seed},
    }


def _verification(
    held: Images,
    n: int,
    max_accuracy_drop: float,
    accuracy: dict,
    by_runtime: dict,
    verified: list,
    img_s: dict,
    predicted: dict,
) -> dict:
    """What both cards record about the verification (zoo.verification's record): `auto` reads it."""
    from zoo.hardware import cpu
    from zoo.verification import Speed, Verification

    # how fast each ran while verified, on this CPU model: `auto` ranks by it there
    speed = Speed(cpu=cpu().name, batch_size=EVALUATION_BATCH, img_s=img_s)
    record = Verification(
        data=held.data,
        split=held.split,
        n=n,
        max_accuracy_drop=max_accuracy_drop,
        accuracy=accuracy,
        by_runtime=by_runtime,
        verified=verified,
        speed=speed,
    )
    if len(predicted) > 1:  # how often the runtimes' int8 answers agree
        first, *rest = predicted.values()
        record.int8_agreement = min(float(np.mean(first == other)) for other in rest)
    return record.to_dict()


def quantize(
    src: str | os.PathLike,
    dst: str | os.PathLike | None = None,
    *,
    calibration: str | None = None,
    images: int = DEFAULT_IMAGES,
    method: str = DEFAULT_METHOD,
    max_accuracy_drop: float = DEFAULT_MAX_DROP,
    verify_data: str | None = None,
    prepared: Prepared | None = None,
    tensorrt: bool = False,
    log: Callable[[str], None] | None = print,
) -> Result:
    """Quantize float32 ONNX file `src` (from `zoo export`) to `dst` (default: model.int8.onnx beside it),
    verify it and record the verification in both files' cards; QuantizeError (nothing written) when
    data is missing or int8 loses more than `max_accuracy_drop` points of top-1 accuracy.

    prepared: the images from `prepare` (else found from `calibration`, `images`, `verify_data`).
    tensorrt: the variant TensorRT builds an engine from (symmetric int8 activations), verified the same
    way on the CPU runtimes; `src`'s card is left as it is and bf16 / fp16 are not measured."""
    src = pathlib.Path(src)
    dst = pathlib.Path(dst) if dst is not None else src.parent / rundir.ONNX_INT8
    card = _float32_card(src, method, max_accuracy_drop)
    prepared = prepared or prepare(card, calibration=calibration, images=images, verify_data=verify_data)
    calib, calib_set = prepared.calibration, prepared.calibration_set
    if log and prepared.skipped and not tensorrt:
        log(
            f"calibration: {plural(len(prepared.skipped), 'file')} could not be read and were left out "
            f"(first: {prepared.skipped[0]})"
        )
    activations = ACTIVATIONS_TENSORRT if tensorrt else ACTIVATIONS
    quantization = _quantization(method, activations, calib, len(calib_set))
    qcard = _int8_card(card, quantization)
    what = f"{method}, {len(calib_set):,} calibration images from {calib.describe()}"
    name = "int8 for TensorRT" if tensorrt else "int8"
    if log:
        log(f"quantizing {src.name} to {name} ({what}; activations {activations}) with {library()} ...")
    with tempfile.TemporaryDirectory(prefix="zoo-int8-") as tmp:
        candidate = pathlib.Path(tmp) / rundir.ONNX_INT8
        proto = _quantized(src, candidate, CalibrationReader(calib_set, card), qcard, method, tensorrt)
        accuracy, verified, summary, verification = _verified(
            src, candidate, card, prepared, f"{name} ({what})", max_accuracy_drop, method, dst, tensorrt
        )
        qcard.provenance["verification"] = verification
        set_card(proto, qcard)
        data = checked(proto, f"{card.architecture} (int8)")
    from zoo import atomic

    atomic.write_bytes(dst, data)
    if not tensorrt:
        card.provenance["verification"] = verification
        write_card(src, card)
    if log:
        _log_verified(log, summary, accuracy, verified, src, dst, activations, tensorrt)
    return Result(dst, quantization, verification, summary)


def _int8_card(card: ModelCard, quantization: dict) -> ModelCard:
    """The int8 file's card: the float32 file's, saying how it was quantized (verification to come)."""
    qcard = copy.deepcopy(card)
    qcard.precision = "int8"
    qcard.provenance.pop("verification", None)
    qcard.provenance["quantization"] = quantization
    return qcard


def _quantized(
    src: pathlib.Path, candidate: pathlib.Path, reader: CalibrationReader, qcard: ModelCard, method: str, tensorrt: bool
) -> onnx.ModelProto:
    """Quantize `src` to `candidate` (a temporary file), with `qcard` inside; its proto, checked."""
    import onnx

    try:
        quantize_file(src, candidate, reader, method, symmetric=tensorrt)
    except Exception as e:  # the tools raise many kinds; all mean the same to the user
        raise QuantizeError(f"{src}: ONNX Runtime's quantization failed: {first_line(e)}") from e
    proto = onnx.load(str(candidate))
    set_card(proto, qcard)
    candidate.write_bytes(checked(proto, f"{qcard.architecture} (int8)"))
    return proto


def _verified(
    src: pathlib.Path,
    candidate: pathlib.Path,
    card: ModelCard,
    prepared: Prepared,
    title: str,
    max_accuracy_drop: float,
    method: str,
    dst: pathlib.Path,
    tensorrt: bool,
) -> tuple[dict, list[str], str, dict]:
    """(accuracy by precision, verified precisions, summary line, the cards' verification record) of the
    int8 `candidate` against float32 `src` on the held-out images; QuantizeError over the limit."""
    held, held_set = prepared.held_out, prepared.held_out_set
    by_runtime, predicted, img_s = _top1_everywhere(src, candidate, card, held_set, tensorrt)
    accuracy, verified, summary = _judged(
        by_runtime, held, len(held_set), title, max_accuracy_drop, method, dst, _emulators(tensorrt)
    )
    verification = _verification(
        held, len(held_set), max_accuracy_drop, accuracy, by_runtime, verified, img_s, predicted
    )
    return accuracy, verified, summary, verification

"""`zoo export --int8`: a QDQ file calibrated on the run's training images, verified for accuracy on its
held-out split in every installed CPU runtime, recorded in the cards, taken by `infer.load` (auto); and the
one-line refusals, with nothing written."""

import pathlib
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

import infer
from export.onnx import card_of
from export.quantize import (
    ACTIVATIONS,
    ACTIVATIONS_TENSORRT,
    DEFAULT_IMAGES,
    DEFAULT_METHOD,
    METHODS,
    WEIGHTS,
    quantize,
    runtimes,
)
from zoo import rundir
from zoo.card import ModelCard
from zoo.cli import main
from zoo.hardware import native_missing

HELD_OUT = 2000  # MNIST-small's test split (in the package): the run's held-out digits, never trained on


def zoo(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def listing(root: pathlib.Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def as_trained_on(run: pathlib.Path, data: str, **splits) -> pathlib.Path:
    """Give a run's card the data record `zoo train` writes (provenance["training"]), so that `--int8`
    finds its training split to calibrate on and its held-out split to verify on."""
    card = ModelCard.load(run / rundir.CARD)
    training = {"data": data, "val_split": 0.0, "val_dir": None, "test_dir": None, "test_split": None, "seed": 0}
    card.provenance.update(training={**training, **splits}, seed=0, data={"source": data})
    card.save(run / rundir.CARD)
    return run


def qdq_nodes(path: pathlib.Path):
    import onnx

    model = onnx.load(str(path))
    return model, {t.name: t for t in model.graph.initializer}


def held_out_batch(card: ModelCard, count: int) -> tuple[np.ndarray, np.ndarray]:
    from serving import mnist_small

    from zoo.data.preprocess import normalize

    images, labels = mnist_small("test")
    images, labels = images[-count:], labels[-count:]
    return np.stack([normalize(im, card) for im in images]), labels


@pytest.fixture(scope="module")
def lenet_int8(tmp_path_factory):
    """A LeNet trained for a moment on MNIST-small's training digits (tests/serving.py), its card naming
    mnist-small, whose 2,000 test digits are its held-out split; then `zoo export RUN --int8`."""
    from serving import trained_lenet_run

    run = trained_lenet_run(tmp_path_factory.mktemp("int8") / "lenet5-mnist")
    as_trained_on(run, "mnist-small")
    result = zoo("export", run, "--int8")
    return run, result


@pytest.mark.slow
def test_int8_export_is_verified_and_recorded(lenet_int8):
    run, r = lenet_int8
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if x.startswith("int8 ("))
    assert f"int8 ({DEFAULT_METHOD}, {DEFAULT_IMAGES} calibration images from" in line
    assert "vs fp32" in line and f"on {HELD_OUT:,} test images" in line and "points)" in line

    card = card_of(run / rundir.ONNX_INT8)
    assert card.precision == "int8"
    q = card.provenance["quantization"]
    assert q["library"].startswith("onnxruntime ") and q["format"] == "QDQ"
    assert (q["weights"], q["activations"], q["method"]) == (WEIGHTS, ACTIVATIONS, DEFAULT_METHOD)
    assert q["calibration"] == {
        "source": "mnist-small",
        "split": "train",
        "images": DEFAULT_IMAGES,
        "seed": 0,
    }
    v = card.provenance["verification"]
    assert (v["split"], v["n"], v["max_accuracy_drop"]) == ("test", HELD_OUT, 1.0)
    assert set(v["by_runtime"]["int8"]) == set(runtimes())
    assert v["accuracy"]["int8"] == min(v["by_runtime"]["int8"].values())
    assert v["accuracy"]["fp32"] > 0.9  # the model learned something: the comparison means something
    # accuracies are k / 2000: the drop is a whole number of images (measured 1), compared as one, since
    # 100 * (a - b) of exactly 1 point (20 images) is 1.0000000000000009 in float64 for most k
    assert round((v["accuracy"]["fp32"] - v["accuracy"]["int8"]) * HELD_OUT) <= HELD_OUT // 100
    assert v["verified"][:2] == ["fp32", "int8"]
    for precision in ("bf16", "fp16"):  # measured (OpenVINO from model.onnx) only where native
        assert (precision in v["accuracy"]) == ("openvino" in runtimes() and native_missing(precision) is None)
    # the float32 file's card carries the same verification (bf16 / fp16 measured where native)
    assert card_of(run / rundir.ONNX).provenance["verification"] == v
    assert card_of(run / rundir.ONNX).precision == "fp32"
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left


def check_qdq(path: pathlib.Path, activation_type: int) -> None:
    """Q/DQ pairs; every Conv/Gemm weight an int8 constant dequantized with one scale per output channel
    and zero points 0 (symmetric); every activation QuantizeLinear of `activation_type`."""
    model, init = qdq_nodes(path)
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    producers = {n.output[0]: n for n in model.graph.node}
    for node in (n for n in model.graph.node if n.op_type in ("Conv", "Gemm")):
        dq = producers[node.input[1]]
        assert dq.op_type == "DequantizeLinear"
        q, scale, zero = (init[name] for name in dq.input)
        assert q.data_type == zero.data_type == onnx_type("INT8")
        assert len(scale.dims) == 1 and scale.dims[0] == q.dims[0] > 1
        assert not np.any(numpy_helper.to_array(zero))
        if len(node.input) > 2:  # the bias stays float32 (TensorRT refuses an int32 DequantizeLinear)
            assert node.input[2] in init and init[node.input[2]].data_type == onnx_type("FLOAT")
    for q in (n for n in model.graph.node if n.op_type == "QuantizeLinear"):
        assert init[q.input[2]].data_type == activation_type


def onnx_type(name: str) -> int:
    import onnx

    return onnx.TensorProto.DataType.Value(name)


@pytest.mark.slow
def test_int8_file_is_qdq_with_per_channel_symmetric_weights(lenet_int8):
    run, r = lenet_int8
    assert r.exit_code == 0, r.output
    check_qdq(run / rundir.ONNX_INT8, onnx_type("UINT8"))  # uint8 activations: ONNX Runtime's fast x86 form


@pytest.mark.slow
def test_tensorrt_variant_is_symmetric_int8_and_verified(lenet_int8, tmp_path):
    """What `zoo export --trt --int8` builds the engine from (TensorRT itself is not needed to check it)."""
    from export.tensorrt import qdq_problem

    run, r = lenet_int8
    assert r.exit_code == 0, r.output
    before = card_of(run / rundir.ONNX)
    result = quantize(run / rundir.ONNX, tmp_path / rundir.ONNX_INT8, tensorrt=True, log=None)
    check_qdq(result.path, onnx_type("INT8"))
    assert qdq_problem(result.path) is None and qdq_problem(run / rundir.ONNX_INT8) is not None
    card = card_of(result.path)
    assert card.precision == "int8" and card.provenance["quantization"]["activations"] == ACTIVATIONS_TENSORRT
    assert card.provenance["verification"]["verified"] == ["fp32", "int8"]
    assert card_of(run / rundir.ONNX) == before  # the float32 file's card keeps the CPU file's verification


@pytest.mark.slow
def test_int8_runs_and_agrees_in_every_installed_cpu_runtime(lenet_int8):
    run, r = lenet_int8
    assert r.exit_code == 0, r.output
    fp32 = infer.load(run / rundir.ONNX, "onnxruntime", precision="fp32")
    x, labels = held_out_batch(fp32.card, 500)
    reference = fp32.predict(x).argmax(1)
    for runtime in runtimes():
        p = infer.load(run / rundir.ONNX_INT8, runtime, precision="int8")
        assert (p.backend, p.precision) == (runtime, "int8")
        top1 = p.predict(x).argmax(1)
        # counts of 500, compared as integers (the float k / 500 - 0.02 can round over the boundary);
        # measured: 500 of 500 agree, 468 right both ways, with 1 and 2 threads
        assert 100 * np.sum(top1 == reference) >= 98 * len(x), runtime
        assert 100 * np.sum(top1 == labels) >= 100 * np.sum(reference == labels) - 2 * len(x), runtime


@pytest.mark.slow
def test_auto_takes_the_verified_int8_file(lenet_int8, monkeypatch):
    """Elsewhere than the CPU it was verified on, auto takes int8 (the static order); on this CPU model,
    the fastest verified option the export timed."""
    from zoo import hardware

    run, r = lenet_int8
    assert r.exit_code == 0, r.output
    verification = infer.load(run / rundir.ONNX_INT8).card.provenance["verification"]
    speed = verification["speed"]
    assert speed["cpu"] == hardware.cpu().name and speed["img_s"]["int8 on onnxruntime"] > 0
    here = infer.load(run)
    verified = {k: v for k, v in speed["img_s"].items() if k.split()[0] in verification["verified"]}
    assert f"{here.precision} on {here.backend}" == max(verified, key=verified.get)
    other = hardware.Cpu("Another CPU", hardware.cpu().flags, 2)
    monkeypatch.setattr(hardware, "cpu", lambda: other)
    p = infer.load(run)
    assert p.precision == "int8" and p.path.name == rundir.ONNX_INT8
    assert "int8 verified at export" in p.selection


@pytest.mark.slow
def test_imagenet_size_model_calibrated_on_a_plain_folder_of_photos(make_run, shared, tmp_path):
    """resnet18 (random weights, 64x64) calibrated with --calibration on a folder of loose ants/bees photos
    (no class subfolders), verified on a few held-out photos of each class."""
    photos = shared / "datasets" / "hymenoptera"
    loose = tmp_path / "loose"
    loose.mkdir()
    for cls in ("ants", "bees"):
        for f in sorted((photos / "train" / cls).glob("*.jpg"))[:4]:
            shutil.copy(f, loose / f.name)
    verify = tmp_path / "verify"
    for cls in ("ants", "bees"):
        (verify / cls).mkdir(parents=True)
        for f in sorted((photos / "val" / cls).glob("*.jpg"))[:5]:
            shutil.copy(f, verify / cls / f.name)
    run = make_run("resnet18", class_names=["ants", "bees"], input_size=[64, 64])
    r = zoo(
        "export",
        run,
        "--int8",
        "--calibration",
        loose,
        "--calibration-images",
        6,
        "--calibration-method",
        "percentile",
        "--verify-data",
        verify,
        "--max-accuracy-drop",
        100,
    )
    assert r.exit_code == 0, r.output
    assert f"int8 (percentile, 6 calibration images from {loose})" in r.output
    assert f"on 10 images of {verify}" in r.output
    card = card_of(run / rundir.ONNX_INT8)
    assert card.provenance["quantization"]["calibration"] == {
        "source": str(loose),
        "split": "all",
        "images": 6,
        "seed": 0,
    }
    assert card.provenance["verification"]["split"] == "all" and card.provenance["verification"]["n"] == 10
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    for runtime in runtimes():
        p = infer.load(run / rundir.ONNX_INT8, runtime, precision="int8")
        assert p.predict(x).shape == (3, 2)


def test_int8_without_data_to_calibrate_from_is_one_line_and_writes_nothing(make_run):
    run = make_run("lenet")  # a card with no record of its training data
    before = listing(run)
    r = zoo("export", run, "--int8")
    assert r.exit_code == 1
    assert r.output.count("\n") == 1 and "--calibration" in r.output and "Traceback" not in r.output
    assert listing(run) == before


def test_calibration_folder_without_usable_images_is_one_line_and_writes_nothing(make_run, tmp_path):
    run = make_run("lenet")
    empty = tmp_path / "notes"
    empty.mkdir()
    (empty / "readme.txt").write_text("no pictures here")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    (broken / "b.jpg").write_bytes(b"")
    before = listing(run)
    for folder, words in ((empty, "no images"), (broken, "no usable images")):
        r = zoo("export", run, "--int8", "--calibration", folder, "--verify-data", "mnist-small")
        assert r.exit_code == 1, r.output
        assert r.output.count("\n") == 1 and words in r.output and str(folder) in r.output, r.output
        assert listing(run) == before


def test_calibrating_on_the_held_out_split_is_refused(make_run, tmp_path):
    val = tmp_path / "val"
    run = as_trained_on(make_run("lenet"), "mnist-small", val_dir=str(val))
    val.mkdir()
    r = zoo("export", run, "--int8", "--calibration", val)
    assert r.exit_code == 1 and "held-out validation" in r.output and r.output.count("\n") == 1


def test_int8_options_need_int8(make_run):
    run = make_run("lenet")
    r = zoo("export", run, "--calibration-method", "entropy")
    assert r.exit_code == 2 and "--calibration-method is an option of --int8" in r.output
    r = zoo("export", run, "--int8", "--calibration-method", "kl")
    assert r.exit_code == 2 and all(m in r.output for m in METHODS)


@pytest.mark.slow
def test_accuracy_drop_over_the_limit_is_one_line_and_writes_no_int8(lenet_int8, tmp_path):
    """The trained LeNet calibrated on one blank image: every digit stroke saturates, int8 loses far more
    than the limit; the numbers in one line, no int8 file, no verification recorded."""
    from PIL import Image

    trained, _ = lenet_int8
    run = tmp_path / "lenet5-copy"
    run.mkdir()
    for name in (rundir.WEIGHTS, rundir.CARD):
        shutil.copy(trained / name, run / name)
    blank = tmp_path / "blank"
    blank.mkdir()
    Image.new("L", (28, 28)).save(blank / "blank.png")
    r = zoo("export", run, "--int8", "--calibration", blank)
    assert r.exit_code == 1, r.output
    error = r.output.splitlines()[-1]  # after the lines of the fp32 export, the one line of the refusal
    assert error.startswith("Error: int8 (") and r.output.count("Error") == 1, r.output
    assert "vs fp32" in error and "--max-accuracy-drop 1 " in error
    assert "model.int8.onnx was not written" in error and "--calibration-method" in error
    assert not (run / rundir.ONNX_INT8).exists()
    assert "verification" not in card_of(run / rundir.ONNX).provenance  # the fp32 export alone, as always
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]

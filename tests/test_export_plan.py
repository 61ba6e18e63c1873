"""The export plan as a library call (`export.plan.run_plan`): what a Python user, a Ray actor or a test
gets without the command line: the files written, typed results, the log lines, and the refusals
before anything is written."""

import gzip
import pathlib

import numpy as np
import pytest

from export.onnx import ExportError, card_of
from export.plan import ExportPlan, Int8Options, PlanError, run_plan
from export.quantize import QuantizeError
from infer.predictor import tensorrt_missing
from zoo import rundir
from zoo.card import ModelCard
from zoo.data import mnist


def trained_on_digits(run: pathlib.Path, data: pathlib.Path, n: int = 300, held_out: int = 100) -> pathlib.Path:
    """Give the run's card the record `zoo train` writes of its data: `data`, MNIST IDX training files of
    the first `n` MNIST-small digits, the last `held_out` of them its test split."""
    images, labels = mnist.load_small()["train"]
    data.mkdir()
    for kind, arr in (("images-idx3", images[:n]), ("labels-idx1", labels[:n])):
        header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
        (data / f"train-{kind}-ubyte.gz").write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))
    card = ModelCard.load(run / rundir.CARD)
    record = {"data": str(data), "val_split": 0.0, "val_dir": None, "test_dir": None, "test_split": held_out}
    card.provenance.update(training={**record, "seed": 0}, seed=0, data={"source": str(data)})
    card.save(run / rundir.CARD)
    return run


def test_run_plan_writes_verified_files_and_says_what_it_wrote(make_run, tmp_path):
    run = trained_on_digits(make_run("lenet", dirname="digits"), tmp_path / "digits")
    out, repo, lines = tmp_path / "out", tmp_path / "repo", []
    plan = ExportPlan(
        output=out, fp16=True, int8=Int8Options(images=40, max_accuracy_drop=100), triton=repo, batch=(1, 4, 16)
    )
    done = run_plan(run, plan, log=lines.append)

    assert sorted(p.name for p in out.iterdir()) == sorted([rundir.ONNX, rundir.ONNX_FP16, rundir.ONNX_INT8])
    assert (done.onnx, done.onnx_fp16, done.onnx_int8) == (
        out / rundir.ONNX,
        out / rundir.ONNX_FP16,
        out / rundir.ONNX_INT8,
    )
    assert (card_of(done.onnx).precision, card_of(done.onnx_fp16).precision) == ("fp32", "fp16")
    # the int8 result is what both cards record: calibrated on training digits, verified on the test split
    assert done.int8.quantization["calibration"] == {
        "source": str(tmp_path / "digits"),
        "split": "train",
        "images": 40,
        "seed": 0,
    }
    v = done.int8.verification
    assert (v["data"], v["split"], v["n"], v["max_accuracy_drop"]) == (str(tmp_path / "digits"), "test", 100, 100)
    assert card_of(done.onnx_int8).provenance["verification"] == v == card_of(done.onnx).provenance["verification"]
    # Triton serves the last file written (int8 here), the run's card beside it
    assert done.triton == repo / "digits" and done.served == done.onnx_int8 and done.engines == []
    assert (done.triton / "1" / "model.onnx").read_bytes() == done.onnx_int8.read_bytes()
    assert done.int8_tensorrt is None and sorted(p.name for p in run.iterdir()) == sorted([rundir.CARD, rundir.WEIGHTS])
    # the log: one line per file, as the command prints them
    wrote = [line for line in lines if line.startswith("wrote ")]
    assert len(wrote) == 4 and str(done.onnx_int8) in wrote[2] and str(done.triton) in wrote[3]
    assert done.int8.summary in lines


def test_run_plan_refuses_before_writing_anything(make_run, tmp_path):
    run = make_run("lenet")  # a card with no record of its training data
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(QuantizeError, match="names no training data to calibrate on"):
        run_plan(run, ExportPlan(int8=Int8Options()), log=None)
    with pytest.raises(QuantizeError, match="--calibration-method kl: use one of"):
        run_plan(run, ExportPlan(int8=Int8Options(method="kl")), log=None)
    with pytest.raises(rundir.RunError, match="no such run directory"):
        run_plan(tmp_path / "nothing", ExportPlan(), log=None)
    assert sorted(p.name for p in run.iterdir()) == before
    # TensorRT: missing here is an ExportError; where it runs, a plan profile Triton cannot use is a PlanError
    plan = ExportPlan(trt=True, triton=tmp_path / "repo", batch=(2, 4, 8))
    with pytest.raises(ExportError) as e:
        run_plan(run, plan, log=None)
    assert type(e.value) is (ExportError if tensorrt_missing() else PlanError)
    assert sorted(p.name for p in run.iterdir()) == before and not (tmp_path / "repo").exists()

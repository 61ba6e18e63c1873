"""`zoo export`: ONNX, FP16 ONNX, the TensorRT path (or its one-line refusal), Triton repositories."""

import importlib.util
import json
import os
import pathlib

import numpy as np
import pytest
from click.testing import CliRunner
from tolerances import assert_logits_close

import infer
from export.onnx import ExportError, export_model, random_batch, torch_logits, verify
from export.tensorrt import parse_batch
from infer.predictor import tensorrt_missing
from zoo import rundir
from zoo.card import ONNX_METADATA_KEY, ModelCard
from zoo.cli import main

NO_TRT = tensorrt_missing()
needs_tensorrt = pytest.mark.skipif(NO_TRT is not None, reason=str(NO_TRT))


def zoo(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def listing(root: pathlib.Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def model_config_pb2():
    """Triton's own ModelConfig protobuf, as tritonclient ships it (its grpc package needs grpcio
    to import, so the generated module is loaded from its file)."""
    import tritonclient

    path = pathlib.Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_config(path: pathlib.Path):
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), model_config_pb2().ModelConfig())


def test_export_run_writes_verified_onnx(make_run):
    run = make_run("lenet", class_names=list("abcdefghij"))
    r = zoo("export", run)
    assert r.exit_code == 0, r.output
    assert "max abs diff" in r.output and "max rel diff" in r.output and ": ok" in r.output
    p = infer.load(run / rundir.ONNX)
    assert p.card == ModelCard.load(run / rundir.CARD)
    x = random_batch(p.card, 5)
    torch_model, _ = rundir.load_model(run)
    assert_logits_close(p.predict(x), torch_logits(torch_model, x))  # ONNX Runtime vs PyTorch: tolerances.py


def test_opset(make_run, tmp_path):
    import onnx

    r = zoo("export", make_run("lenet"), "--opset", 18, "--output", tmp_path / "o18")
    assert r.exit_code == 0, r.output
    proto = onnx.load(str(tmp_path / "o18" / rundir.ONNX))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [18]
    assert "(opset 18)" in r.output


def test_output_dir_and_newest_run(make_run, tmp_path):
    make_run("lenet", dirname="old")
    new = make_run("lenet", dirname="new")
    os.utime(new / rundir.WEIGHTS, (2e9, 2e9))
    out = tmp_path / "out"
    r = zoo("export", "--runs", tmp_path / "runs", "--output", out)
    assert r.exit_code == 0, r.output
    assert f"newest run: {new}" in r.output
    assert (out / rundir.ONNX).is_file() and not (new / rundir.ONNX).exists()


def test_verification_failure_leaves_no_file(make_run, tmp_path):
    model, card = rundir.load_model(make_run("lenet"))
    out = tmp_path / "out"
    out.mkdir()
    path = out / "m.onnx"
    with pytest.raises(ExportError, match="differ from the reference"):
        export_model(model, card, path, tolerance=(-1.0, 0.0), log=None)  # no difference passes
    assert not list(out.iterdir())
    export_model(model, card, path, log=None)
    x = random_batch(card, 2)
    with pytest.raises(ExportError, match="max abs diff"):
        verify(path, torch_logits(model, x) + 0.5, x)


def test_user_errors_are_one_line(make_run, tmp_path):
    run = make_run("lenet")
    for args, code, text in [(["--batch", "8:4:32"], 2, "MIN:OPT:MAX"), (["--batch", "x"], 2, "MIN:OPT:MAX")]:
        r = zoo("export", run, *args)
        assert r.exit_code == code and text in r.output and r.output.strip().count("\n") == 0
    r = zoo("export", tmp_path / "nothing")
    assert r.exit_code == 1 and "no such run directory" in r.output
    r = zoo("export", "--runs", tmp_path / "empty")
    assert r.exit_code == 1 and "no finished run" in r.output
    assert parse_batch("4") == (4, 4, 4) and parse_batch("1:8:32") == (1, 8, 32)


@pytest.mark.skipif(NO_TRT is None, reason="TensorRT is usable here: the refusal cannot happen")
def test_trt_without_tensorrt_says_what_to_install_and_writes_nothing(make_run, tmp_path):
    run = make_run("lenet")
    before = listing(tmp_path)
    for args in ([run, "--trt"], ["--trt", "--runs", tmp_path / "runs", "--triton", tmp_path / "repo"]):
        r = zoo("export", *args)
        assert r.exit_code == 1
        line = r.output.strip()
        assert line.count("\n") == 0 and "pip install 'cnnzoo[gpu]'" in line and "NVIDIA GPU" in line
    assert listing(tmp_path) == before


def test_triton_repository_parses_as_triton_model_config(make_run, tmp_path):
    run = make_run("lenet", dirname="digits", class_names=[f"digit {i}" for i in range(10)])
    repo = tmp_path / "triton"
    r = zoo("export", run, "--fp16", "--triton", repo, "--batch", "2:16:64")
    assert r.exit_code == 0, r.output
    model_dir = repo / "digits"
    config = parse_config(model_dir / "config.pbtxt")
    assert config.name == "digits" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 64
    assert list(config.dynamic_batching.preferred_batch_size) == [16, 64]
    (inp,), (out,) = config.input, config.output
    assert inp.name == "input" and list(inp.dims) == [1, 28, 28]
    assert out.name == "logits" and list(out.dims) == [10]
    pb2 = model_config_pb2()
    assert inp.data_type == out.data_type == pb2.DataType.Value("TYPE_FP32")
    card = ModelCard.from_json(config.parameters[ONNX_METADATA_KEY].string_value)
    assert card == ModelCard.load(run / rundir.CARD)
    assert (model_dir / out.label_filename).read_text().splitlines() == card.class_names
    assert (model_dir / "1" / "model.onnx").read_bytes() == (run / rundir.ONNX_FP16).read_bytes()


@pytest.mark.tensorrt
@needs_tensorrt
def test_tensorrt_engine_matches_onnxruntime(make_run, tmp_path):
    run = make_run("lenet")
    r = zoo("export", run, "--trt", "--batch", "1:4:8", "--triton", tmp_path / "repo")
    assert r.exit_code == 0, r.output
    info = json.loads((run / rundir.ENGINE).with_suffix(".engine.json").read_text())
    assert info["tensorrt_version"] and info["gpu_name"] and info["batch_profile"]["max"] == 8
    engine = infer.load(run)
    assert engine.backend == "tensorrt" and engine.max_batch_size == 8
    ort = infer.load(run, "onnxruntime")
    x = random_batch(engine.card, 13)  # more than the profile's max: split
    # TensorRT's fp32 engines multiply in TF32 by default (10-bit mantissa, u = 2^-11 ~ 5e-4), as the fp16
    # file does, which is 2-3e-4 of max |logit| off on the CPU (not measured on a GPU here): 1e-2 is 30x
    # that, and 20x below a swapped class (0.2 of max |logit|)
    assert_logits_close(engine.predict(x), ort.predict(x), rel=1e-2)
    config = parse_config(tmp_path / "repo" / run.name / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 8
    assert (tmp_path / "repo" / run.name / "1" / "model.plan").is_file()


@pytest.mark.tensorrt
@needs_tensorrt
def test_tensorrt_int8_engine_from_a_qdq_file(make_run, tmp_path):
    """A symmetric int8 QDQ file builds a strongly typed int8 engine (no precision flag, no
    calibrator), recorded as int8, that computes what the QDQ file computes in ONNX Runtime."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from export.onnx import ort_logits
    from export.tensorrt import build_engine, engine_file
    from infer.backend_trt import TensorRTPredictor, engine_mismatch

    model, card = rundir.load_model(make_run("lenet"))
    fp32 = tmp_path / "model.onnx"
    export_model(model, card, fp32, log=None)
    x = random_batch(card, 16)

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": x[i : i + 1]} for i in range(len(x))])

        def get_next(self):
            return next(self.batches, None)

    int8 = tmp_path / "model.int8.onnx"
    quantize_static(
        str(fp32),
        str(int8),
        Batches(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    int8_card = ModelCard.from_dict({**card.to_dict(), "precision": "int8"})
    engine = build_engine(int8, tmp_path / engine_file("int8"), int8_card, (1, 4, 16), log=None)
    assert engine.name == rundir.ENGINE_INT8 and engine_mismatch(engine) is None
    info = json.loads((tmp_path / (rundir.ENGINE_INT8 + ".json")).read_text())
    assert info["precision"] == "int8" and info["version_compatible"] is False
    predictor = TensorRTPredictor(engine)
    reference = ort_logits(int8, x)
    assert predictor.precision == "int8"
    # the same int8 graph in two runtimes: either may round an activation to the next of its 256 steps
    # (0.4% of its range) in any of the 5 layers; 5% of max |logit| is a few such steps per layer, and a
    # quarter of a swapped class (0.2); the 1e-3 covers logits near 0 (not measured: no GPU here)
    np.testing.assert_allclose(predictor.predict(x), reference, atol=0.05 * np.abs(reference).max() + 1e-3)


@pytest.mark.tensorrt
@needs_tensorrt
def test_tensorrt_version_compatible_engine_runs_here(make_run, tmp_path):
    """An engine built for a Triton server (version-compatible: the lean runtime inside the plan)
    loads here too, with engine_host_code_allowed, and matches PyTorch."""
    from export.tensorrt import build_engine
    from infer.backend_trt import TensorRTPredictor

    model, card = rundir.load_model(make_run("lenet"))
    onnx_file = tmp_path / "model.onnx"
    export_model(model, card, onnx_file, log=None)
    engine = build_engine(onnx_file, tmp_path / "model.engine", card, (1, 4, 8), version_compatible=True, log=None)
    assert json.loads((tmp_path / "model.engine.json").read_text())["version_compatible"] is True
    x = random_batch(card, 11)
    assert_logits_close(TensorRTPredictor(engine).predict(x), torch_logits(model, x), rel=1e-2)  # TF32: as above

"""Precision as a first-class choice: infer.load(..., precision=...), the OpenVINO backend, and the
refusals where a precision is not native (never emulated)."""

import numpy as np
import pytest
from click.testing import CliRunner
from tolerances import assert_logits_close

import infer
from export.onnx import set_card
from infer.predictor import installed
from zoo import hardware, rundir
from zoo.cli import main

needs_openvino = pytest.mark.skipif(not installed("openvino"), reason="openvino is not installed")
BF16_MISSING = hardware.native_missing("bf16")
needs_bf16 = pytest.mark.skipif(BF16_MISSING is not None, reason=str(BF16_MISSING))
PLAIN_CPU = hardware.Cpu("Plain CPU without reduced precision", frozenset({"avx2", "fma"}), 2)


@pytest.fixture
def exported(exported_lenet):
    return exported_lenet("lenet5-precision")


@pytest.fixture
def plain_cpu(monkeypatch):
    """This process sees a CPU with AVX2 only (no AVX512-BF16, AMX or AVX512-FP16)."""
    monkeypatch.setattr(hardware, "cpu", lambda: PLAIN_CPU)


def batch(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 1, 28, 28)).astype(np.float32)


def verify_bf16(run, speed=None):
    """What `zoo export --int8` writes into model.onnx's card where bf16 passed its accuracy check (and,
    with `speed`, the img/s it measured per "precision on runtime" on this CPU)."""
    import onnx

    path = run / rundir.ONNX
    proto = onnx.load(str(path))
    card = infer.load(path, "onnxruntime").card
    card.provenance["verification"] = {
        "split": "test",
        "n": 100,
        "accuracy": {"fp32": 0.9, "bf16": 0.9},
        "verified": ["fp32", "bf16"],
    }
    if speed:
        card.provenance["verification"]["speed"] = {"cpu": hardware.cpu().name, "img_s": speed}
    set_card(proto, card)
    onnx.save(proto, str(path))


def test_native_flags():
    amx = hardware.Cpu("Xeon", frozenset({"avx512_bf16", "amx_bf16", "amx_int8", "avx512_fp16"}), 2)
    assert hardware.native_missing("bf16", amx) is None and hardware.native_missing("fp16", amx) is None
    assert hardware.native_missing("int8", PLAIN_CPU) is None and hardware.native_missing("fp32", PLAIN_CPU) is None
    why = hardware.native_missing("bf16", PLAIN_CPU)
    assert "bf16 is not native on this CPU (Plain CPU" in why and "avx512_bf16" in why
    assert hardware.cpu().name and isinstance(hardware.cpu().to_dict()["flags"], list)


def test_int8_saturates_on_x86_without_vnni():
    """What decides whether ONNX Runtime's int8 answers count for the TensorRT variant (export/quantize)."""
    epyc = hardware.Cpu("AMD EPYC", frozenset({"avx2", "fma"}), 2)
    vnni = hardware.Cpu("Xeon", frozenset({"avx2", "avx512f", "avx512_vnni"}), 2)
    arm = hardware.Cpu("Neoverse", frozenset({"asimd", "asimddp"}), 2)
    assert hardware.int8_saturates(epyc) and not hardware.int8_saturates(vnni) and not hardware.int8_saturates(arm)


@needs_openvino
def test_openvino_and_onnxruntime_agree_on_fp32_logits(exported):
    ov = infer.load(exported, "openvino", precision="fp32")
    ort = infer.load(exported, "onnxruntime", precision="fp32")
    assert (ov.backend, ov.precision, ort.backend) == ("openvino", "fp32", "onnxruntime")
    assert ov.card == ort.card and ov.name == "lenet5-precision"
    for n in (1, 5):  # the batch axis stays dynamic
        x = batch(n, seed=n)
        a, b = ov.predict(x), ort.predict(x)
        assert a.shape == (n, 10) and a.dtype == np.float32
        assert_logits_close(a, b)  # tolerances.py: 40x below bf16 (OpenVINO's default on AMX)


@needs_bf16
@needs_openvino
def test_bf16_runs_natively_and_stays_close_to_fp32(exported):
    ref = infer.load(exported, "onnxruntime").predict(batch(8))
    for backend in ("openvino", "torch"):
        p = infer.load(exported, backend, precision="bf16")
        assert p.precision == "bf16" and "bf16" in p.selection
        got = p.predict(batch(8))
        scale = np.abs(ref).max()
        # bf16 rounds weights and activations (u = 2^-8 ~ 4e-3) at each of 5 layers, summing in fp32 (AMX,
        # AVX512-BF16): ~1e-2 of max |logit| at most. Measured 2e-3 (OpenVINO), 3.4e-3 (torch); 0.05 is 15x
        # that and 4x below a swapped class (0.2); not array_equal shows bf16 really ran
        assert np.abs(got - ref).max() <= 0.05 * scale and not np.array_equal(got, ref)


def test_bf16_is_refused_where_not_native(exported, plain_cpu):
    for backend in ("auto", "torch") + (("openvino",) if installed("openvino") else ()):
        with pytest.raises(infer.BackendUnavailable, match="bf16 is not native on this CPU"):
            infer.load(exported, backend, precision="bf16")
    with pytest.raises(infer.BackendUnavailable, match="ONNX Runtime has no bfloat16"):
        infer.load(exported, "onnxruntime", precision="bf16")
    with pytest.raises(infer.BackendUnavailable, match="torch does not compute int8"):
        infer.load(exported, "torch", precision="int8")
    with pytest.raises(infer.ModelFileError, match=r"zoo export .* --int8"):
        infer.load(exported, "onnxruntime", precision="int8")
    with pytest.raises(ValueError, match="unknown precision"):
        infer.load(exported, precision="int4")


@needs_openvino
def test_auto_takes_bf16_only_where_verified_and_native(exported, monkeypatch):
    p = infer.load(exported)
    assert p.precision == "fp32" and "accuracy not verified at export" in p.selection
    verify_bf16(exported)
    if BF16_MISSING is None:
        p = infer.load(exported)
        assert (p.precision, p.backend) == ("bf16", "openvino")
        assert p.selection.startswith(
            "auto chose bf16 on openvino (model.onnx); bf16 verified at export: "
            "90.00% top-1 vs fp32 90.00% on 100 test images"
        )
    monkeypatch.setattr(hardware, "cpu", lambda: PLAIN_CPU)
    p = infer.load(exported)
    assert p.precision == "fp32" and "bf16 is not native on this CPU" in p.selection


def test_cli_says_which_precision_and_runtime_run_and_refuses_in_one_line(exported, plain_cpu, tmp_path):
    from PIL import Image

    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(tmp_path / "digit.png")
    runner = CliRunner()
    ok = runner.invoke(main, ["classify", str(exported), str(tmp_path / "digit.png"), "--workers", "0"])
    assert ok.exit_code == 0, ok.output
    assert "lenet5-precision: auto chose fp32 on onnxruntime (model.onnx)" in ok.output
    assert "img/s, fp32 on onnxruntime)" in ok.output
    bad = runner.invoke(main, ["classify", str(exported), str(tmp_path / "digit.png"), "--precision", "bf16"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    lines = [line for line in bad.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "bf16 is not native on this CPU" in lines[0]


@needs_openvino
def test_serve_settings_carry_the_precision_and_runtime(exported):
    from serve import worker

    p = worker.load_predictor({"model": str(exported), "backend": "openvino", "precision": "fp32"})
    assert (p.backend, p.precision) == ("openvino", "fp32")
    assert worker.load_predictor({"model": str(exported)}).backend == "onnxruntime"


@needs_bf16
@needs_openvino
def test_auto_follows_the_speeds_measured_at_export_on_this_cpu(exported, monkeypatch):
    """Where the export timed the verified options on a CPU of this model, auto takes the fastest."""
    verify_bf16(exported, speed={"bf16 on openvino": 1000.0, "fp32 on onnxruntime": 4000.0})
    p = infer.load(exported)
    assert (p.precision, p.backend) == ("fp32", "onnxruntime")
    assert (
        "bf16 on openvino (model.onnx) skipped: slower on this CPU as measured at export (1,000 img/s vs 4,000)"
    ) in p.selection
    # runnable, but never timed at export: passed over for the fastest option it timed, and the line says so
    assert (
        "bf16 on torch (model.safetensors) skipped: not timed at export, where fp32 on onnxruntime measured "
        "fastest (4,000 img/s)"
    ) in p.selection
    assert "None" not in p.selection, p.selection
    other = hardware.Cpu("Another CPU", hardware.cpu().flags, 2)
    monkeypatch.setattr(hardware, "cpu", lambda: other)
    assert infer.load(exported).precision == "bf16"  # measured elsewhere: the static order holds


def test_one_vocabulary_for_precisions_and_their_dtypes():
    """The card's names and the dtype names training records map through one table (zoo.precisions)."""
    import torch

    from zoo.precisions import DTYPES, float_dtype, precision_of
    from zoo.train.config import TrainError
    from zoo.train.precision import Precision

    assert [precision_of(float_dtype(p)) for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]
    assert float_dtype("int8") == "float32" and precision_of("bf16") == "bf16"
    for bad in ("int4", "float64"):
        with pytest.raises(ValueError, match="unknown precision"):
            precision_of(bad)
    # what runs of earlier versions recorded ("float16" with --amp on, say) still reads
    for dtype in DTYPES.values():
        recorded = Precision(dtype, f"{dtype} (as the run started)")
        assert recorded.autocast == (None if dtype == "float32" else getattr(torch, dtype))
        assert DTYPES[recorded.name] == dtype
    with pytest.raises(TrainError, match="unknown training precision 'bf16'"):
        Precision("bf16", "a card's name where a dtype belongs")

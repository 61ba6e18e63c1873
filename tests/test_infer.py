"""infer.load and the Predictor backends on a real run directory and the ONNX files exported from it."""

import json
import os

import numpy as np
import onnx
import pytest
from tolerances import assert_logits_close

import infer
from infer.predictor import tensorrt_missing
from zoo import rundir
from zoo.card import ModelCard
from zoo.rundir import CARD


@pytest.fixture
def exported(exported_lenet):
    return exported_lenet("lenet5-exported", class_names=list("abcdefghij"), fp16=True)


def batch(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 1, 28, 28)).astype(np.float32)


def test_auto_prefers_onnxruntime_here_and_matches_torch(exported):
    auto = infer.load(exported)
    expected = "tensorrt" if tensorrt_missing() is None and (exported / rundir.ENGINE).exists() else "onnxruntime"
    assert auto.backend == expected and "auto chose fp32 on onnxruntime (model.onnx)" in auto.selection
    torch_p = infer.load(exported, "torch", device="cpu")
    assert torch_p.backend == "torch" and torch_p.device == "cpu"
    for p in (auto, torch_p):
        assert p.name == "lenet5-exported"
        assert p.card == ModelCard.load(exported / CARD)
    for n in (1, 3, 7):  # the batch axis is dynamic
        x = batch(n, seed=n)
        a, t = auto.predict(x), torch_p.predict(x)
        assert a.shape == (n, 10) and a.dtype == np.float32
        assert_logits_close(a, t)  # two fp32 runtimes: tolerances.py
    assert auto.predict(batch(0)).shape == (0, 10)


def test_onnx_file_alone_carries_its_card(exported):
    p = infer.load(exported / rundir.ONNX, threads=1)
    assert p.backend == "onnxruntime" and p.name == "lenet5-exported"
    assert p.card.class_names == list("abcdefghij")
    assert p.session.get_session_options().intra_op_num_threads == 1
    assert "CPU" in p.device
    assert p.describe().startswith("lenet5-exported: lenet5 in fp32 on onnxruntime")


def test_fp16_onnx_keeps_float32_io(exported):
    path = exported / rundir.ONNX_FP16
    proto = onnx.load(str(path))
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert proto.graph.input[0].type.tensor_type.elem_type == f32
    assert proto.graph.output[0].type.tensor_type.elem_type == f32
    conv_weights = [i for i in proto.graph.initializer if len(i.dims) == 4]
    assert conv_weights and all(i.data_type == f16 for i in conv_weights)
    half, full = infer.load(path), infer.load(exported / rundir.ONNX)
    x = batch(4)
    a, b = half.predict(x), full.predict(x)
    assert a.dtype == np.float32
    # fp16 rounds weights and activations (u = 2^-11 ~ 5e-4) at each of 5 layers; a runtime that also sums
    # in fp16 adds up to sqrt(400) u ~ 1e-2. Measured 2-3e-4 of max |logit| (fp32 sums); 2e-2 stays 10x
    # below a swapped class (0.2), and not array_equal shows it is not the fp32 file
    assert np.abs(a - b).max() <= 2e-2 * np.abs(b).max() and not np.array_equal(a, b)


def test_onnxruntime_predictor_does_not_import_torch(exported, python_without_torch):
    out = python_without_torch(
        "import numpy as np, infer\n"
        f"p = infer.load({str(exported)!r}, 'onnxruntime')\n"
        "print(p.predict(np.zeros((2, 1, 28, 28), np.float32)).shape)"
    )
    assert out.strip() == "(2, 10)"


def test_user_errors(exported, make_run, tmp_path):
    p = infer.load(exported, "onnxruntime")
    with pytest.raises(ValueError, match=r"shape \[N, 1, 28, 28\]"):
        p.predict(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match="unknown backend"):
        infer.load(exported, "tflite")
    bare = make_run("lenet", dirname="not-exported")
    with pytest.raises(infer.ModelFileError, match="zoo export .* --onnx"):
        infer.load(bare, "onnxruntime")
    assert infer.load(bare).backend == "torch"  # auto falls back to the weights
    with pytest.raises(infer.ModelFileError, match="no such file"):
        infer.load(tmp_path / "nowhere")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx file")
    with pytest.raises(infer.ModelFileError, match="not a readable ONNX file|ONNX Runtime cannot load it"):
        infer.load(junk)
    proto = onnx.load(str(exported / rundir.ONNX))
    del proto.metadata_props[:]
    cardless = tmp_path / "cardless.onnx"
    onnx.save(proto, str(cardless))
    with pytest.raises(infer.ModelFileError, match="no model card"):
        infer.load(cardless)


@pytest.mark.skipif(tensorrt_missing() is None, reason="TensorRT is usable here")
def test_tensorrt_backend_says_what_to_install(exported):
    with pytest.raises(infer.BackendUnavailable, match=r"pip install 'cnnzoo\[gpu\]'.*NVIDIA GPU"):
        infer.load(exported, "tensorrt")
    engine = exported / "x.engine"
    engine.write_bytes(b"\0")
    (exported / "x.engine.json").write_text(json.dumps(ModelCard.load(exported / CARD).to_dict()))
    with pytest.raises(infer.BackendUnavailable, match="NVIDIA GPU"):
        infer.load(engine)


def test_auto_skips_an_export_older_than_the_weights(exported):
    weights = exported / "model.safetensors"
    later = (exported / rundir.ONNX).stat().st_mtime + 10
    os.utime(weights, (later, later))
    p = infer.load(exported)
    assert p.backend == "torch" and "(model.onnx) skipped: older than model.safetensors" in p.selection
    assert infer.load(exported, "onnxruntime").backend == "onnxruntime"  # asked for: taken as is


def test_auto_skips_an_engine_built_for_another_tensorrt(exported, monkeypatch):
    """An engine whose card names another TensorRT version is passed over, with its reason, for ONNX."""
    import sys
    import types

    import infer.policy as policy

    engine = exported / rundir.ENGINE
    engine.write_bytes(b"\0")
    info = ModelCard.load(exported / CARD).to_dict() | {"tensorrt_version": "10.14.1", "compute_capability": "9.0"}
    (exported / "model.engine.json").write_text(json.dumps(info))
    monkeypatch.setattr(policy, "tensorrt_missing", lambda: None)  # as if TensorRT and a GPU were here
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="11.0.0"))
    p = infer.load(exported)
    assert p.backend == "onnxruntime"
    assert (
        "fp32 on tensorrt (model.engine) skipped: built with TensorRT 10.14.1, this machine has TensorRT 11.0.0"
    ) in p.selection


def test_torch_threads_apply_to_the_predictor_only(exported):
    """torch's thread count is the whole process's: a Predictor with threads=1 must not leave every later
    torch computation (a training run in the same process, say) on one thread."""
    import torch

    before = torch.get_num_threads()
    p = infer.load(exported, "torch", device="cpu", threads=1)
    assert p.predict(batch(2)).shape == (2, 10)
    assert torch.get_num_threads() == before


def test_every_runtime_reads_an_onnx_files_card_the_same_way(exported, tmp_path):
    """One reader of the card in an ONNX file's metadata: onnx's, ONNX Runtime's and OpenVINO's views of a
    file without one fail with the same line."""
    from infer.backend_ort import OrtPredictor
    from infer.files import onnx_card
    from infer.predictor import installed

    proto = onnx.load(str(exported / rundir.ONNX))
    del proto.metadata_props[:]
    cardless = tmp_path / "cardless.onnx"
    onnx.save(proto, str(cardless))
    readers = [onnx_card, OrtPredictor]
    if installed("openvino"):
        from infer.backend_ov import OpenVINOPredictor

        readers.append(OpenVINOPredictor)
    messages = set()
    for read in readers:
        with pytest.raises(infer.ModelFileError) as e:
            read(cardless)
        messages.add(str(e.value))
    assert len(messages) == 1 and messages.pop().startswith(f"{cardless}: no model card in the ONNX metadata")


def test_one_table_gives_each_precisions_file(exported):
    from export.tensorrt import engine_file
    from infer import files

    assert set(files.FILE_KINDS.values()) == set(rundir.MODEL_FILES)  # every kind of file, and no other
    assert engine_file("int8") == rundir.ENGINE_INT8 and engine_file("fp16") == rundir.ENGINE
    assert files.found(exported / rundir.ONNX_FP16) == {"onnx_fp16": exported / rundir.ONNX_FP16}
    present = files.found(exported)
    assert files.file_for("onnxruntime", "fp16", present) == exported / rundir.ONNX_FP16
    assert files.file_for("openvino", "fp16", present) == exported / rundir.ONNX  # computed from float32
    assert files.file_for("torch", "bf16", present) == exported / rundir.WEIGHTS
    assert files.file_for("onnxruntime", "int8", present) is None


def test_reasons_are_values_and_their_kind_chooses_the_error(exported, make_run):
    from infer.reasons import Kind

    bare = make_run("lenet", dirname="bare")
    (no_file,) = infer.options(bare, "onnxruntime", "fp32")
    assert no_file.reason.kind is Kind.NO_FILE and no_file.reason.error is infer.ModelFileError
    assert no_file.problem == f"no file for fp32 on onnxruntime: export one with `zoo export {bare} --onnx`"
    (int8,) = infer.options(exported, "torch", "int8")
    assert int8.reason.kind is Kind.UNSUPPORTED and int8.reason.error is infer.BackendUnavailable
    unverified = next(o for o in infer.options(exported) if o.file is not None and o.precision == "bf16")
    assert unverified.reason.kind in (Kind.UNVERIFIED, Kind.LIBRARY_MISSING)
    assert [k for k in Kind if k.error is infer.ModelFileError] == [Kind.NO_FILE]
    with pytest.raises(infer.BackendUnavailable, match="torch does not compute int8"):
        infer.choose(exported, "torch", "int8")


def test_torch_computes_in_the_memory_format_its_family_trains_in(exported):
    """Inference follows the family's spec, as training does (LeNet: channels_last), at any precision."""
    import torch

    from zoo.models import get_spec

    p = infer.load(exported, "torch", device="cpu")
    assert get_spec("lenet5").channels_last and p.precision == "fp32"
    weight = next(w for w in p.model.parameters() if w.dim() == 4 and w.shape[1] > 1)  # C3 (C1 has one channel)
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def test_onnxruntime_runs_on_the_cuda_device_named():
    """--device cuda:N reaches ONNX Runtime's GPU providers as their device_id (they took device 0 whatever
    N was); cpu keeps the CPU provider alone; auto / cuda leave the providers as they are."""
    from infer.backend_ort import on_device

    trt = ("TensorrtExecutionProvider", {"trt_engine_cache_enable": True})
    providers = [trt, "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert on_device(providers, "cuda:1") == [
        ("TensorrtExecutionProvider", {"trt_engine_cache_enable": True, "device_id": 1}),
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]
    assert on_device(providers, "cpu") == ["CPUExecutionProvider"]
    assert on_device(providers, "cuda") == on_device(providers, "auto") == on_device(providers, None) == providers


def test_openvino_says_what_is_wrong_with_a_damaged_file(tmp_path):
    """OpenVINO's message opens with where in its C++ it failed ("Exception from src/inference/src/cpp/
    core.cpp:84:"); the line the user reads says what is wrong instead."""
    pytest.importorskip("openvino")
    from infer.backend_ov import OpenVINOPredictor
    from infer.predictor import ModelFileError

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07not a model" * 64)
    with pytest.raises(ModelFileError) as caught:
        OpenVINOPredictor(bad)
    message = str(caught.value)
    assert message.startswith(f"{bad}: OpenVINO cannot read it (") and "Unable to read the model" in message
    assert "Exception from" not in message and "core.cpp" not in message and "\n" not in message

"""The GPU paths without a GPU: every TensorRT name the code uses exists in TensorRT 10.x and 11.x
(tests/data/tensorrt_api.json, from scripts/trt_api_names.py), and the logic around TensorRT and ONNX
Runtime's TensorRT provider (engine cache key, engine compatibility, one-line failures, int8 QDQ
checks, Triton batch rule) runs here with stand-ins for tensorrt."""

import ast
import importlib
import json
import pathlib
import sys
import types

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.onnx import ExportError
from export.tensorrt import build_engine, engine_file, qdq_problem
from export.triton import write_repository
from infer.backend_trt import engine_mismatch
from infer.predictor import BackendUnavailable, ModelFileError, installed, tensorrt_missing
from zoo.card import ModelCard

ROOT = pathlib.Path(__file__).resolve().parent.parent
API = json.loads((ROOT / "tests" / "data" / "tensorrt_api.json").read_text())["versions"]
SOURCES = ("export/tensorrt.py", "export/triton.py", "infer/backend_trt.py")
# variable (or self.attribute) names the code gives TensorRT objects -> their TensorRT class
OBJECTS = {
    "builder": "Builder",
    "network": "INetworkDefinition",
    "config": "IBuilderConfig",
    "parser": "OnnxParser",
    "profile": "IOptimizationProfile",
    "runtime": "Runtime",
    "engine": "ICudaEngine",
    "context": "IExecutionContext",
    "logger": "Logger",
}


# --- every trt name the code uses is in both release lines' lists ------------------------------------


def _trt_chain(node) -> list[str] | None:
    """["X", "Y"] for the expression trt.X.Y, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return parts[::-1] if parts and isinstance(node, ast.Name) and node.id == "trt" else None


def _object_class(node) -> str | None:
    """The TensorRT class of `name` or `self.name` (leading underscores ignored), by OBJECTS."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return OBJECTS.get(node.attr.lstrip("_"))
    if isinstance(node, ast.Name):
        return OBJECTS.get(node.id.lstrip("_"))
    return None


def used_names(source: str) -> dict[tuple[str, str], bool]:
    """(class, name) -> optional, for each TensorRT name `source` uses ("tensorrt" is the module).
    A name read as getattr(x, "NAME", default) is optional: the code copes with its absence."""
    used = {}

    def add(cls, name, optional=False):
        used[(cls, name)] = used.get((cls, name), True) and optional

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            chain = _trt_chain(node)
            if chain:
                add("tensorrt", chain[0])
                if len(chain) > 1 and chain[0] != "__version__":  # trt.__version__.split is str's
                    add(chain[0], chain[1])
            cls = _object_class(node.value)
            if cls:
                add(cls, node.attr)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
        ):
            target, name, optional = node.args[0], node.args[1].value, len(node.args) == 3
            chain = _trt_chain(target)
            cls = chain[-1] if chain else _object_class(target)
            if cls is None and isinstance(target, ast.Name) and target.id == "trt":
                cls = "tensorrt"
            if cls:
                add(cls, name, optional)
    return used


def missing_names(used: dict[tuple[str, str], bool]) -> dict[str, list[str]]:
    """Release line -> the used names its list lacks; an optional name counts as missing only where
    no release line has it."""

    def has(version, cls, name):
        return name in API[version]["names"].get(cls, ())

    missing = {version: [] for version in API}
    for (cls, name), optional in sorted(used.items()):
        if optional and any(has(v, cls, name) for v in API):
            continue
        for version in API:
            if not has(version, cls, name):
                missing[version].append(f"{cls}.{name}")
    return missing


def code_names() -> dict[tuple[str, str], bool]:
    used = {}
    for source in SOURCES:
        for key, optional in used_names((ROOT / source).read_text()).items():
            used[key] = used.get(key, True) and optional
    return used


def test_every_tensorrt_name_the_code_uses_exists_in_10_and_11():
    assert {"10.x", "11.x"} <= set(API)
    used = code_names()
    # the walk sees the calls that matter (a collector that found nothing would pass vacuously)
    for key in [
        ("Builder", "build_serialized_network"),
        ("OnnxParser", "parse_from_file"),
        ("IOptimizationProfile", "set_shape"),
        ("IBuilderConfig", "set_flag"),
        ("BuilderFlag", "VERSION_COMPATIBLE"),
        ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"),
        ("Runtime", "deserialize_cuda_engine"),
        ("Runtime", "engine_host_code_allowed"),
        ("ICudaEngine", "get_tensor_profile_shape"),
        ("IExecutionContext", "set_input_shape"),
        ("IExecutionContext", "execute_async_v3"),
        ("tensorrt", "nptype"),
        ("Logger", "WARNING"),
    ]:
        assert key in used, key
    missing = missing_names(used)
    assert missing == {v: [] for v in API}, f"TensorRT names the code uses but a release line lacks: {missing}"


def test_a_name_that_a_release_line_lacks_fails_the_check():
    source = (
        "import tensorrt as trt\n"
        "flag = trt.BuilderFlag.MADE_UP_FLAG\n"
        "engine.no_such_method()\n"
        "config.set_flag(trt.BuilderFlag.INT8)\n"  # gone in TensorRT 11
        "f = getattr(trt.NetworkDefinitionCreationFlag, 'EXPLICIT_BATCH', None)\n"
    )  # optional: 10 has it
    missing = missing_names(used_names(source))
    assert set(missing["10.x"]) == {"BuilderFlag.MADE_UP_FLAG", "ICudaEngine.no_such_method"}
    assert set(missing["11.x"]) == set(missing["10.x"]) | {"BuilderFlag.INT8"}


def test_the_names_exist_in_the_installed_tensorrt():
    try:
        import tensorrt as trt
    except (ImportError, OSError) as e:
        pytest.skip(f"tensorrt cannot be imported here ({type(e).__name__}); the lists stand in for it")
    absent = [
        f"{cls}.{name}"
        for (cls, name), optional in code_names().items()
        if not optional and not hasattr(trt if cls == "tensorrt" else getattr(trt, cls), name)
    ]
    assert not absent, f"tensorrt {trt.__version__} lacks {absent}: run scripts/trt_api_names.py"


# --- stand-ins for tensorrt ------------------------------------------------------------------------


def fake_tensorrt(version="10.14.1.48", *, builder_fails=False, runtime_fails=False, record=None):
    """A tensorrt module with the few calls build_engine and TensorRTPredictor make before a GPU would
    be needed; `record` collects what the builder was asked for."""
    record = {} if record is None else record
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    def no_cuda(logger):
        raise TypeError("pybind11::init(): factory function returned nullptr")

    class Config:
        def add_optimization_profile(self, profile):
            record["profile"] = profile.shapes

        def set_flag(self, flag):
            record.setdefault("flags", []).append(flag)

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            self.shapes = (name, lo, opt, hi)

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            record["network_flags"] = flags
            return object()

        create_builder_config, create_optimization_profile = Config, Profile

        def build_serialized_network(self, network, config):
            return b"serialized engine"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            record["parsed"] = path
            return True

    class Runtime:
        def __init__(self, logger):
            pass

    trt.Logger = Logger
    trt.Builder = no_cuda if builder_fails else Builder
    trt.Runtime = no_cuda if runtime_fails else Runtime
    trt.OnnxParser = OnnxParser
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    trt.BuilderFlag = types.SimpleNamespace(VERSION_COMPATIBLE="VERSION_COMPATIBLE")
    return trt


@pytest.fixture
def gpu_stand_in(monkeypatch):
    """tensorrt_missing says yes, torch.cuda names a GPU of compute capability 8.6."""
    import torch

    import infer.backend_trt
    import infer.policy
    import infer.predictor

    monkeypatch.setattr(infer.predictor, "tensorrt_missing", lambda: None)  # export.tensorrt asks it
    monkeypatch.setattr(infer.policy, "tensorrt_missing", lambda: None)  # and infer's choice
    monkeypatch.setattr(infer.backend_trt, "tensorrt_missing", lambda: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Stand-in GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 6))

    def use(trt):
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt

    return use


def lenet_card(precision="fp32") -> ModelCard:
    return ModelCard("lenet5", 10, 1, [28, 28], [str(i) for i in range(10)], [0.5], [0.5], precision=precision)


def qdq_model(path, zero_point_type=TensorProto.INT8, zero_point=0, with_qdq=True):
    """input -> QuantizeLinear -> DequantizeLinear -> output (or Identity without Q/DQ)."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 1, 28, 28])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 1, 28, 28])
    dtype = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8}[zero_point_type]
    inits = [
        numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
        numpy_helper.from_array(np.array(zero_point, dtype), "zero_point"),
    ]
    if with_qdq:
        nodes = [
            helper.make_node("QuantizeLinear", ["input", "scale", "zero_point"], ["q"], name="q"),
            helper.make_node("DequantizeLinear", ["q", "scale", "zero_point"], ["logits"], name="dq"),
        ]
    else:
        nodes = [helper.make_node("Identity", ["input"], ["logits"])]
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(path))
    return path


# --- export: precision from the file, one-line failures, version-compatible plans ---------------------


def test_build_engine_records_precision_and_version_compatibility(tmp_path, gpu_stand_in):
    record = {}
    gpu_stand_in(fake_tensorrt(record=record))
    onnx_file = qdq_model(tmp_path / "model.int8.onnx")
    engine = build_engine(
        onnx_file, tmp_path / engine_file("int8"), lenet_card("int8"), (1, 4, 8), version_compatible=True, log=None
    )
    assert engine.name == "model.int8.engine" and engine.read_bytes() == b"serialized engine"
    info = json.loads((tmp_path / "model.int8.engine.json").read_text())
    assert info["precision"] == "int8" and info["version_compatible"] is True
    assert info["tensorrt_version"] == "10.14.1.48" and info["compute_capability"] == "8.6"
    assert info["batch_profile"] == {"min": 1, "opt": 4, "max": 8}
    assert record["flags"] == ["VERSION_COMPATIBLE"]  # no precision flag: the Q/DQ nodes say int8
    assert record["network_flags"] == 1 << 1  # strongly typed
    assert record["profile"] == ("input", (1, 1, 28, 28), (4, 1, 28, 28), (8, 1, 28, 28))
    assert engine_file("fp32") == engine_file("fp16") == "model.engine"


def test_build_engine_without_cuda_is_one_line(tmp_path, gpu_stand_in):
    gpu_stand_in(fake_tensorrt(builder_fails=True))
    with pytest.raises(ExportError) as e:
        build_engine(qdq_model(tmp_path / "m.onnx"), tmp_path / "model.engine", lenet_card(), log=None)
    assert "could not start CUDA" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "model.engine").exists()


@pytest.mark.parametrize(
    "kind, problem",
    [
        ("int8", None),
        ("uint8", "quantizes to uint8"),
        ("nonzero", "non-zero zero point"),
        ("plain", "no QuantizeLinear"),
    ],
)
def test_int8_engines_need_symmetric_int8_qdq(tmp_path, gpu_stand_in, kind, problem):
    record = {}
    gpu_stand_in(fake_tensorrt(record=record))
    options = {
        "int8": {},
        "uint8": {"zero_point_type": TensorProto.UINT8},
        "nonzero": {"zero_point": 3},
        "plain": {"with_qdq": False},
    }[kind]
    onnx_file = qdq_model(tmp_path / "model.int8.onnx", **options)
    why = qdq_problem(onnx_file)
    assert why is None if problem is None else problem in why
    if problem:
        with pytest.raises(ExportError, match=problem):
            build_engine(onnx_file, tmp_path / "model.int8.engine", lenet_card("int8"), log=None)
        assert "parsed" not in record and not (tmp_path / "model.int8.engine").exists()


def test_triton_refuses_a_plan_whose_batch_profile_starts_above_1(tmp_path):
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"\0")
    (tmp_path / "model.engine.json").write_text(
        json.dumps(
            {
                **lenet_card().to_dict(),
                "tensorrt_version": "10.14.1.48",
                "compute_capability": "8.6",
                "version_compatible": True,
            }
        )
    )
    with pytest.raises(ExportError, match="MIN 1") as e:
        write_repository(tmp_path / "repo", "lenet", plan, lenet_card(), (4, 8, 32), log=None)
    assert "--batch 1:8:32" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "repo").exists()
    lines = []
    write_repository(tmp_path / "repo", "lenet", plan, lenet_card(), (1, 8, 32), log=lines.append)
    assert (tmp_path / "repo" / "lenet" / "1" / "model.plan").is_file()
    assert "--backend-config=tensorrt,version-compatible=true" in lines[-1]
    onnx_file = qdq_model(tmp_path / "model.onnx", with_qdq=False)  # an ONNX model takes any batch
    write_repository(tmp_path / "repo", "lenet-onnx", onnx_file, lenet_card(), (4, 8, 32), log=None)


# --- infer: which engines run here, and one-line failures ----------------------------------------


def engine_with_card(folder, **info) -> pathlib.Path:
    engine = folder / "model.engine"
    engine.write_bytes(b"not an engine: engine_mismatch never reads it")
    (folder / "model.engine.json").write_text(json.dumps({**lenet_card().to_dict(), **info}))
    return engine


@pytest.mark.parametrize(
    "built, vc, here, cc, expected",
    [
        ("10.14.1.48", False, "10.14.2", "8.6", None),  # patch releases share engines
        ("10.14.1.48", False, "10.15.1", "8.6", "built with TensorRT 10.14.1.48, this machine has TensorRT 10.15"),
        ("10.14.1.48", False, "11.4.0", "8.6", "built with TensorRT 10.14.1.48"),
        ("10.14.1.48", True, "11.4.0", "8.6", None),  # version-compatible: a later one runs it
        ("11.4.0", True, "10.14.1", "8.6", "built with TensorRT 11.4.0"),  # but not an earlier one
        ("10.14.1.48", False, "10.14.1", (8, 6), None),
        ("10.14.1.48", False, "10.14.1", "8.9", "compute capability 8.6, this one has 8.9"),
    ],
)
def test_engine_mismatch_compares_tensorrt_and_gpu(tmp_path, built, vc, here, cc, expected):
    engine = engine_with_card(tmp_path, tensorrt_version=built, compute_capability="8.6", version_compatible=vc)
    why = engine_mismatch(engine, tensorrt_version=here, compute_capability=cc)
    assert why is None if expected is None else expected in why


def test_engine_mismatch_without_a_usable_card(tmp_path):
    def why():
        return engine_mismatch(tmp_path / "model.engine", tensorrt_version="10.14", compute_capability="8.6")

    assert "model.engine.json is missing" in why()
    (tmp_path / "model.engine.json").write_text("{not json")
    assert "does not say" in why()
    (tmp_path / "model.engine.json").write_text(json.dumps(lenet_card().to_dict()))  # an old card
    assert "does not say" in why()


@pytest.mark.skipif(installed("tensorrt"), reason="tensorrt is installed here")
def test_engine_mismatch_looks_up_tensorrt_only_when_not_told(tmp_path):
    engine = engine_with_card(tmp_path, tensorrt_version="10.14.1", compute_capability="8.6")
    assert "tensorrt cannot be imported" in engine_mismatch(engine, compute_capability="8.6")


def test_tensorrt_predictor_failures_are_one_line(tmp_path, gpu_stand_in):
    from infer.backend_trt import TensorRTPredictor

    engine = engine_with_card(tmp_path, tensorrt_version="10.14.1.48", compute_capability="8.6")
    gpu_stand_in(fake_tensorrt(runtime_fails=True))
    with pytest.raises(BackendUnavailable, match="could not start CUDA") as e:
        TensorRTPredictor(engine)
    assert "\n" not in str(e.value)
    gpu_stand_in(fake_tensorrt("11.4.0.106"))
    with pytest.raises(ModelFileError, match="built with TensorRT 10.14.1.48, this machine has TensorRT 11.4") as e:
        TensorRTPredictor(engine)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("error", ["OSError", "ImportError"])
def test_tensorrt_that_cannot_be_imported_is_unusable_not_a_crash(tmp_path, monkeypatch, error):
    package = tmp_path / "site" / "tensorrt"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f"raise {error}('libnvinfer.so.10: cannot open shared object file: No such file or directory')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    importlib.invalidate_caches()
    why = tensorrt_missing()
    assert why and "cannot be imported: libnvinfer.so.10" in why and "\n" not in why


# --- ONNX Runtime's TensorRT provider: an engine cache per file content ---------------------------


def test_ort_tensorrt_cache_is_keyed_by_the_file_bytes(tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    from infer.backend_ort import default_providers

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(
        ort,
        "get_available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    files = {}
    for name, data in [("a/model.onnx", b"model"), ("b/model.onnx", b"retrained"), ("c.onnx", b"model")]:
        files[name] = tmp_path / "runs" / name
        files[name].parent.mkdir(parents=True, exist_ok=True)
        files[name].write_bytes(data)

    def cache_of(path):
        providers = default_providers(path)
        assert [p[0] if isinstance(p, tuple) else p for p in providers] == [
            "TensorrtExecutionProvider",
            "CUDAExecutionProvider",
            "CPUExecutionProvider",
        ]
        options = providers[0][1]
        assert options["trt_engine_cache_enable"] is True
        return pathlib.Path(options["trt_engine_cache_path"])

    a, b, c = (cache_of(files[n]) for n in ("a/model.onnx", "b/model.onnx", "c.onnx"))
    assert a != b  # same file name and graph, other weights: another engine
    assert a == c  # same bytes: the same engine, whatever the file is called
    assert a.is_dir() and b.is_dir() and a.parent == tmp_path / "cache" / "ort-trt"
    assert default_providers()[0] == ("TensorrtExecutionProvider", {})  # no file to key a cache by: none

    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "not-a-folder"))  # the cache cannot be made: no cache
    assert default_providers(files["a/model.onnx"])[0] == ("TensorrtExecutionProvider", {})

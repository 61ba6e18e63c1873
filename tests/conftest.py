import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "gpu: needs a CUDA device")
    config.addinivalue_line("markers", "tensorrt: needs TensorRT and a CUDA device")


@pytest.fixture(scope="session")
def shared() -> pathlib.Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (the shared datasets and fixtures beside the clone) is missing")
    return SHARED


@pytest.fixture(scope="session")
def served_lenet(shared, tmp_path_factory):
    """For the server tests: a LeNet trained for a moment on real MNIST digits, exported to ONNX, and
    40 held-out digits as (PNG bytes, label). See tests/serving.py."""
    from types import SimpleNamespace

    from export.onnx import export_run
    from serving import held_out_digits, trained_lenet_run

    run = trained_lenet_run(shared, tmp_path_factory.mktemp("serve") / "lenet5-mnist")
    onnx = export_run(run, log=None)["onnx"]
    return SimpleNamespace(run=run, onnx=onnx, digits=held_out_digits(shared, 40))

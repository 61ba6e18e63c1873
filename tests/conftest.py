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


@pytest.fixture
def make_run(tmp_path):
    """A finished-looking run directory, built the way `zoo train` writes one: model weights (random,
    seeded) and the card. `make_run("lenet", class_names=[...], input_size=[h, w])` -> its path."""

    def make(name: str = "lenet", dirname: str | None = None, seed: int = 0, **card_kwargs):
        import torch

        from zoo import rundir
        from zoo.card import ModelCard
        from zoo.models import create

        card = ModelCard.for_model(name, **card_kwargs)
        torch.manual_seed(seed)
        model = create(card.architecture, num_classes=card.num_classes, in_channels=card.in_channels)
        run = tmp_path / "runs" / (dirname or f"{card.architecture}-test")
        run.mkdir(parents=True)
        rundir.save_weights(run / rundir.WEIGHTS, model)
        card.save(run / rundir.CARD)
        return run

    return make


@pytest.fixture
def python_without_torch():
    """Run `code` in a fresh interpreter with this checkout importable, then fail if it imported torch
    (the ONNX Runtime paths must run where torch is not installed). Returns its stdout."""
    import subprocess
    import sys

    def run(code: str) -> str:
        check = "\nassert 'torch' not in sys.modules, 'torch was imported'\n"
        out = subprocess.run([sys.executable, "-c", "import sys\n" + code + check], capture_output=True,
                             text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        assert out.returncode == 0, out.stderr
        return out.stdout

    return run


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

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def pytest_configure(config):
    # ../shared holds the real sets (full MNIST, the ants/bees photos, torchvision's reference logits);
    # every other test builds its data from MNIST-small (in the package) and generated photos.
    if not SHARED.is_dir() and os.environ.get("CI") == "true":
        raise pytest.UsageError(f"CI=true but {SHARED} is missing: CI runs every test, those on the real sets too")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "gpu: needs a CUDA device")
    config.addinivalue_line("markers", "tensorrt: needs TensorRT and a CUDA device")


def pytest_sessionstart(session):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")  # None in an xdist worker
    if not SHARED.is_dir() and reporter is not None:  # one line at the start of the run, -q or not
        reporter.write_line(f"{SHARED} is missing: the tests on the real sets (full MNIST, ants/bees photos) skip")


@pytest.fixture(scope="session")
def shared() -> pathlib.Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (the shared datasets and fixtures beside the clone) is missing")
    return SHARED


def build_run(
    root: pathlib.Path, name: str = "lenet", dirname: str | None = None, seed: int = 0, **card_kwargs
) -> pathlib.Path:
    """A finished-looking run directory under root/runs/, built the way `zoo train` writes one: model
    weights (random, seeded) and the card."""
    import torch

    from zoo import rundir
    from zoo.card import ModelCard
    from zoo.models import create

    card = ModelCard.for_model(name, **card_kwargs)
    torch.manual_seed(seed)
    model = create(card.architecture, num_classes=card.num_classes, in_channels=card.in_channels)
    run = root / "runs" / (dirname or f"{card.architecture}-test")
    run.mkdir(parents=True)
    rundir.save_weights(run / rundir.WEIGHTS, model)
    card.save(run / rundir.CARD)
    return run


@pytest.fixture
def make_run(tmp_path):
    """`make_run("lenet", class_names=[...], input_size=[h, w])` -> the path of a new `build_run`."""
    return lambda *args, **kwargs: build_run(tmp_path, *args, **kwargs)


@pytest.fixture(scope="session")
def _exported_lenets(tmp_path_factory):
    """One exported LeNet run per (dirname, class names, fp16), built once per session."""
    made = {}

    def get(dirname: str, class_names: tuple | None, fp16: bool) -> pathlib.Path:
        key = (dirname, class_names, fp16)
        if key not in made:
            from export.onnx import export_run

            names = list(class_names) if class_names else None
            made[key] = build_run(tmp_path_factory.mktemp("exported"), "lenet", dirname=dirname, class_names=names)
            export_run(made[key], fp16=fp16, log=None)
        return made[key]

    return get


@pytest.fixture
def exported_lenet(_exported_lenets, tmp_path):
    """`exported_lenet(dirname, class_names=None, fp16=False)` -> this test's own copy (under
    tmp_path/runs/) of a LeNet run with random seeded weights, exported by `export_run`: the export
    (and its verification) runs once per session, each test gets files it may change."""
    import shutil

    def copy(dirname: str, class_names: list | None = None, fp16: bool = False) -> pathlib.Path:
        source = _exported_lenets(dirname, tuple(class_names) if class_names else None, fp16)
        run = tmp_path / "runs" / dirname
        shutil.copytree(source, run)  # (copy2: the files keep their times, so the export stays newer)
        return run

    return copy


@pytest.fixture
def python_without_torch():
    """Run `code` in a fresh interpreter with this checkout importable, then fail if it imported torch
    (the ONNX Runtime paths must run where torch is not installed). Returns its stdout."""
    import subprocess
    import sys

    def run(code: str) -> str:
        check = "\nassert 'torch' not in sys.modules, 'torch was imported'\n"
        out = subprocess.run(
            [sys.executable, "-c", "import sys\n" + code + check],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    return run


@pytest.fixture(scope="session")
def served_lenet(tmp_path_factory):
    """For the server tests: a LeNet trained for a moment on MNIST-small's digits (in the package), exported
    to ONNX, and 40 held-out digits as (PNG bytes, label). See tests/serving.py."""
    from types import SimpleNamespace

    from serving import held_out_digits, trained_lenet_run

    from export.onnx import export_run

    run = trained_lenet_run(tmp_path_factory.mktemp("serve") / "lenet5-mnist")
    onnx = export_run(run, log=None)["onnx"]
    return SimpleNamespace(run=run, onnx=onnx, digits=held_out_digits(40))

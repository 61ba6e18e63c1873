"""--threads and the default thread policy (zoo/threads.py): the policy for given loads, the machine
measurement against a real spinning process, and each command applying the count it was given."""

import gzip
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from zoo import threads
from zoo.cli import main
from zoo.data import mnist

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """The commands set this process's torch thread count: put it back after each test."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """An IDX directory of 200 training and 50 test digits of MNIST-small."""
    d = tmp_path_factory.mktemp("digits")
    small = mnist.load_small()
    for prefix, (x, y) in (("train", small["train"]), ("t10k", small["test"])):
        x, y = x[::45][:200], y[::45][:200].astype(np.uint8)
        if prefix == "t10k":
            x, y = x[:50], y[:50]
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(n.to_bytes(4, "big") for n in arr.shape)
            (d / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(header + arr.tobytes(), mtime=0))
    return d


@pytest.mark.parametrize(
    "cpus, busy, expected",
    [
        (2, 0.0, 2),
        (2, 0.45, 2),
        (2, 0.55, 1),
        (2, 1.0, 1),
        (2, 2.0, 1),
        (2, 7.5, 1),
        (16, 0.3, 16),
        (16, 3.0, 13),
        (16, 3.6, 12),
        (1, 0.0, 1),
        (1, 3.0, 1),
        (8, None, 8),
    ],
)
def test_default_threads_one_per_free_cpu(cpus, busy, expected):
    assert threads.default_threads(cpus, busy) == expected


@pytest.mark.parametrize(
    "cpus, busy, quota, expected",
    [
        (64, 0.0, 2, 2),  # a pod limited to 2 CPUs on a quiet 64-core node: 2 threads, not 64
        (64, None, 2, 2),
        (64, 63.0, 2, 1),  # the node is busy: fewer still
        (2, 0.0, 8, 2),  # a quota above the CPUs adds none
        (16, 3.0, 16, 13),
    ],
)
def test_default_threads_stay_within_the_cpu_quota(cpus, busy, quota, expected):
    assert threads.default_threads(cpus, busy, quota) == expected


def test_busy_cpus_sees_a_spinning_process():
    cpus = threads.usable_cpus()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = threads.busy_cpus(cpus, window=0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy is not None and 0.8 <= busy <= len(cpus) + 0.01


def _configure_in_a_fresh_process(call: str, env: dict) -> list[str]:
    code = (
        f"import os; from zoo import threads; n = {call}; import torch; "
        "print(n, torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY'))"
    )
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OMP_")}, "PYTHONPATH": str(ROOT), **env}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.skipif(len(threads.usable_cpus()) < 2, reason="needs 2 CPUs to use fewer threads than CPUs")
@pytest.mark.slow  # two fresh processes that load torch, 4 s: the full suite runs it
def test_fewer_threads_than_cpus_sleep_when_idle_and_omp_num_threads_is_the_default():
    # $OMP_NUM_THREADS is the default; fewer threads than CPUs: OpenMP told to sleep before torch loads it
    assert _configure_in_a_fresh_process("threads.configure()", {"OMP_NUM_THREADS": "1"}) == ["1", "1", "PASSIVE"]
    # every CPU: OpenMP's own waiting, as before
    cpus = len(threads.usable_cpus())
    assert _configure_in_a_fresh_process(f"threads.configure({cpus})", {}) == [str(cpus), str(cpus), "None"]


def test_train_threads_apply_and_the_set_up_line_says_so(digits, tmp_path):
    for n, said in ((1, "1 thread"), (2, "2 threads")):
        torch.set_num_threads(3 - n)
        r = CliRunner().invoke(
            main,
            [
                "train",
                "lenet",
                "--data",
                str(digits),
                "--threads",
                str(n),
                "--epochs",
                "1",
                "--batch-size",
                "50",
                "--augment",
                "none",
                "--workers",
                "0",
                "--output",
                str(tmp_path / f"run{n}"),
            ],
        )
        assert r.exit_code == 0, r.output
        setup = next(line for line in r.output.splitlines() if line.startswith("training "))
        assert f"on cpu, {said}, " in setup and torch.get_num_threads() == n


def test_evaluate_features_visualize_take_threads(make_run, digits, tmp_path):
    run = make_run("lenet", class_names=mnist.CLASS_NAMES)
    image = tmp_path / "digit.png"
    Image.fromarray(mnist.load_small()["test"][0][0]).save(image)
    commands = [
        ["evaluate", str(run), "--data", str(digits), "--workers", "0"],
        ["features", str(run), str(digits), "--output", str(tmp_path / "f.npz"), "--workers", "0"],
        ["visualize", str(run), str(image), "--output", str(tmp_path / "viz"), "--layers", "C1"],
    ]
    for args in commands:
        torch.set_num_threads(2)
        r = CliRunner().invoke(main, [*args, "--threads", "1"])
        assert r.exit_code == 0, (args[0], r.output)
        assert torch.get_num_threads() == 1, args[0]

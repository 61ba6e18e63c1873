"""A full disk ends `zoo train`, `train --resume`, `export` and `classify` (stdout a full device) in one line
that names the file and says "no space left on device", non-zero; the files written before stay intact
and no temporary file is left. (Before: a 30-38-line traceback, `OSError: [Errno 28]` or
`SafetensorError`, or torch's "unexpected pos 576 vs 534" for a checkpoint.)

A small tmpfs is the full disk where the tests run as root (they skip with the reason otherwise); one
test patches the writer to raise ENOSPC and runs anywhere."""

import errno
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from test_train import tiny_mnist  # noqa: F401 (the fixture: 400 training and 200 test digits)

from zoo import rundir
from zoo.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def zoo(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output, r.exception


@pytest.fixture
def small_disk(tmp_path):
    """`small_disk(kib)` -> a fresh tmpfs of that size, unmounted afterwards (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; test_a_writer_raising_enospc covers the rest")
    mounted = []

    def make(kib: int) -> pathlib.Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)], capture_output=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def one_line(code: int, output: str, exception, file: pathlib.Path | str) -> None:
    assert code != 0 and isinstance(exception, SystemExit), output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {file}: no space left on device"], output
    assert "Traceback" not in output


def no_temporaries(folder: pathlib.Path) -> None:
    assert not [p.name for p in folder.rglob(".*.tmp")], list(folder.rglob("*"))


def test_train_on_a_full_disk_is_one_line(small_disk, tiny_mnist):  # noqa: F811
    disk = small_disk(96)  # the card fits, LeNet's 247 KB of weights do not
    code, out, exc = zoo(
        "train", "lenet", "--data", tiny_mnist, "--epochs", 1, "--workers", 0, "--output", disk / "run"
    )
    one_line(code, out, exc, disk / "run" / rundir.LAST)
    no_temporaries(disk)


@pytest.mark.slow  # a training, then resume and export on a full disk, 4 s; train's case stays quick
def test_resume_and_export_on_a_full_disk_are_one_line_and_keep_the_files(small_disk, tiny_mnist, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    code, out, _ = zoo("train", "lenet", "--data", tiny_mnist, "--epochs", 1, "--workers", 0, "--output", run)
    assert code == 0, out
    disk = small_disk(2048)
    shutil.copytree(run, disk / "run")
    before = {p.name: p.read_bytes() for p in (disk / "run").iterdir() if p.is_file()}
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:  # the rest of the disk, to the last block
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    code, out, exc = zoo("train", "--resume", disk / "run", "--epochs", 2)
    print(out)
    assert code != 0 and out.count("Error:") == 1 and "no space left on device" in out and "Traceback" not in out, out
    code, out, exc = zoo("export", disk / "run")
    one_line(code, out, exc, disk / "run" / rundir.ONNX)
    after = {p.name: p.read_bytes() for p in (disk / "run").iterdir() if p.is_file()}
    assert {name: after[name] for name in before} == before  # every earlier file intact
    assert not [name for name in after if name not in before and not name.startswith(rundir.EVENTS_PREFIX)], after
    no_temporaries(disk)


def test_a_writer_raising_enospc_is_one_line(exported_lenet, monkeypatch, tmp_path):
    """Anywhere (no tmpfs): the atomic writer's rename meets ENOSPC."""
    from zoo import atomic

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    run = exported_lenet("lenet5-full")
    monkeypatch.setattr(atomic.os, "replace", full)
    code, out, exc = zoo("export", run, "--output", tmp_path / "out")
    one_line(code, out, exc, tmp_path / "out" / rundir.ONNX)
    no_temporaries(tmp_path)


def test_classify_to_a_full_stdout_is_one_line(exported_lenet, tmp_path):
    """`zoo classify RUN FOLDER > /dev/full` (writing to the full device is what it is for; nothing replaces it)."""
    import numpy as np
    from PIL import Image

    run = exported_lenet("lenet5-stdout")
    (tmp_path / "digits").mkdir()
    for i in range(3):
        Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(tmp_path / "digits" / f"{i}.png")
    with open("/dev/full", "w") as full:
        p = subprocess.run(
            [sys.executable, "-m", "zoo", "classify", str(run), str(tmp_path / "digits")],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    errors = [line for line in p.stderr.splitlines() if "rror" in line]
    assert p.returncode != 0 and errors == ["Error: stdout: no space left on device"], p.stderr

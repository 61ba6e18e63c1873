"""What `zoo classify` does with what is no longer there: `--resume` drops (and counts) the earlier
results for files no longer among PATHS (before: kept silently), and a reader that goes away (stdout
piped into `head -1`, a FIFO's reader closing early) ends the run without a traceback (before: a
BrokenPipeError traceback)."""

import fcntl
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from zoo.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
LONG = "x" * 120  # long names: many bytes of output per image, more than a pipe holds
PIPE_SIZE = 4096  # the pipe's buffer, made small where Linux allows it (F_SETPIPE_SZ)


@pytest.fixture
def run(exported_lenet):
    return exported_lenet("digits", class_names=[str(i) for i in range(10)])


def pngs(folder: pathlib.Path, names) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(list(folder.iterdir())))
    for name in names:
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def paths_in(out: pathlib.Path) -> list[str]:
    return [json.loads(line)["path"] for line in out.read_text().splitlines()]


def test_resume_drops_the_results_of_files_no_longer_there_and_says_so(run, tmp_path):
    folder = pngs(tmp_path / "img", ["a", "b", "c", "d"])
    out = tmp_path / "out.jsonl"
    r = CliRunner().invoke(main, ["classify", str(run), str(folder), "-o", str(out), "-j", "0"])
    assert r.exit_code == 0, r.output
    (folder / "b.png").unlink()
    pngs(folder, ["e", "f"])
    r = CliRunner().invoke(main, ["classify", str(run), str(folder), "-o", str(out), "-j", "0", "--resume"])
    assert r.exit_code == 0, r.output
    assert paths_in(out) == [str(folder / f"{n}.png") for n in ("a", "c", "d", "e", "f")]
    said = r.stderr.splitlines()
    assert f"dropped 1 earlier result for files no longer there (first: {folder / 'b.png'})" in said, said
    assert f"carried over 3 results from {out}; classifying the other 2 images" in said, said


def small_pipe(fd: int) -> None:
    if hasattr(fcntl, "F_SETPIPE_SZ"):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)


def classify(run, folder, *extra, stdout) -> subprocess.Popen:
    """`python -m zoo classify RUN FOLDER -b 1 -j 0 --format jsonl ...`: one flush per image."""
    return subprocess.Popen(
        [sys.executable, "-m", "zoo", "classify", str(run), str(folder), "-b", "1", "-j", "0", "--format", "jsonl"]
        + [str(e) for e in extra],
        stdout=stdout,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture
def many(tmp_path):
    """200 images with long names: about 80 kB of jsonl, more than any pipe holds unread."""
    return pngs(tmp_path / "many", [f"{LONG}{i:03d}" for i in range(200)])


def test_stdout_closed_by_its_reader_ends_quietly(run, many):
    """`zoo classify RUN FOLDER | head -1`: the Unix convention, no traceback."""
    r, w = os.pipe()
    small_pipe(w)
    p = classify(run, many, stdout=w)
    os.close(w)
    with os.fdopen(r, "rb") as reader:
        first = reader.readline()
    try:
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    err = err.decode()
    assert json.loads(first)["path"].endswith("000.png")
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert p.returncode in (1, 141), (p.returncode, err)


def test_a_fifo_whose_reader_closes_is_one_line(run, many, tmp_path):
    fifo = tmp_path / "results.jsonl"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the reader is there first: the writer's open returns
    small_pipe(fd)
    os.set_blocking(fd, True)
    p = classify(run, many, "-o", fifo, stdout=subprocess.DEVNULL)
    got, deadline = b"", time.monotonic() + 120
    while b"\n" not in got and time.monotonic() < deadline:
        chunk = os.read(fd, 4096)  # b"" until the writer opens it
        got += chunk
        if not chunk:
            time.sleep(0.05)
    os.close(fd)
    try:
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    err = err.decode()
    assert json.loads(got.split(b"\n")[0])["path"].endswith("000.png")
    assert "Traceback" not in err and "Exception ignored" not in err, err
    errors = [line for line in err.splitlines() if "rror" in line]
    assert errors == [f"Error: {fifo}: the reader closed it"], err
    assert p.returncode == 1

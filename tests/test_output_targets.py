"""What is at a path a command writes is never replaced (zoo.atomic): a FIFO or device is written
straight through, a symbolic link is followed (the link stays), `-o -` is stdout, and a file where an
output folder goes is refused in one line. Never pointed at a system file: devices are made in tmp_path."""

import io
import json
import os
import stat
import threading

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import infer
from infer.classify import classify_paths
from zoo import atomic
from zoo.cli import main


def zoo(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def model(exported_lenet):
    return exported_lenet("digits", class_names=[str(i) for i in range(10)]) / "model.onnx"


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "img"
    root.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(root / f"{i}.png")
    return root


class Reader(threading.Thread):
    """Opens a FIFO for reading and reads everything written to it, as its reader would."""

    def __init__(self, fifo):
        super().__init__(daemon=True)
        self.fifo, self.data = fifo, b""
        self.start()

    def run(self):
        with open(self.fifo, "rb") as f:
            self.data = f.read()

    def lines(self):
        self.join(timeout=30)
        assert not self.is_alive(), "the FIFO was never closed by its writer"
        return [json.loads(line) for line in self.data.decode().splitlines()]


def null_device(path):
    """A character device with the null device's numbers, in tmp_path (root only)."""
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    try:
        os.close(os.open(path, os.O_WRONLY))
    except OSError as e:
        pytest.skip(f"device nodes cannot be opened here ({e.strerror}: a nodev mount)")
    return path


def test_classify_streams_into_a_fifo_and_leaves_it_a_fifo(model, images, tmp_path):
    fifo = tmp_path / "results"
    os.mkfifo(fifo)
    reader = Reader(fifo)
    r = zoo("classify", model, images, "-o", fifo, "--format", "jsonl")
    assert r.exit_code == 0, r.output
    assert [os.path.basename(d["path"]) for d in reader.lines()] == ["0.png", "1.png", "2.png"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert not (tmp_path / "results.partial").exists()


def test_classify_resume_into_a_fifo_is_refused_in_one_line(model, images, tmp_path):
    fifo = tmp_path / "results.jsonl"
    os.mkfifo(fifo)
    # a writer that closes at once, so that code reading the FIFO (as the results of an earlier run) ends
    writer = threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True)
    writer.start()
    r = zoo("classify", model, images, "-o", fifo, "--resume")
    unblock = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer's open return, if nothing read
    writer.join(timeout=10)
    os.close(unblock)
    assert r.exit_code != 0
    assert "--resume needs a regular --output FILE" in r.output and len(r.output.strip().splitlines()) == 1
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_classify_into_a_device_writes_through_it(model, images, tmp_path):
    dev = null_device(tmp_path / "null")
    r = zoo("classify", model, images, "-o", dev)
    assert r.exit_code == 0, r.output
    assert stat.S_ISCHR(os.lstat(dev).st_mode) and os.lstat(dev).st_rdev == os.makedev(1, 3)
    assert not (tmp_path / "null.partial").exists()


def test_classify_follows_a_symlink(model, images, tmp_path):
    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "real.jsonl"
    real.write_text("old\n")
    link = tmp_path / "out.jsonl"
    link.symlink_to(real)
    r = zoo("classify", model, images, "-o", link)
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert len([json.loads(line) for line in real.read_text().splitlines()]) == 3
    assert not (tmp_path / "out.jsonl.partial").exists() and not (tmp_path / "data" / "real.jsonl.partial").exists()
    r = zoo("classify", model, images, "-o", link, "--resume")  # resumes from the file the link names
    assert r.exit_code == 0 and "carried over 3 results" in r.output
    assert link.is_symlink() and len(real.read_text().splitlines()) == 3


def test_dash_is_stdout(model, images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = zoo("classify", model, images, "-o", "-", "--format", "jsonl")
    assert r.exit_code == 0, r.output
    assert len([line for line in r.stdout.splitlines() if line.startswith("{")]) == 3
    buf = io.StringIO()  # the library call says the same
    classify_paths(infer.load(model), images, "-", fmt="jsonl", stream=buf, workers=0)
    assert len(buf.getvalue().splitlines()) == 3
    assert not (tmp_path / "-").exists()


def test_atomic_writes_go_through_fifos_devices_and_links(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = Reader(fifo)
    atomic.write_text(fifo, '{"a": 1}\n')
    assert reader.lines() == [{"a": 1}] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    real, link = tmp_path / "real.txt", tmp_path / "link.txt"
    link.symlink_to(real)  # dangling: the write makes the file it names
    atomic.write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link.txt", "real.txt"]  # no temp file left
    with pytest.raises(atomic.OutputError, match="is a folder"):
        atomic.write_text(tmp_path, "x")


def test_atomic_write_into_a_device_keeps_it(tmp_path):
    dev = null_device(tmp_path / "null")
    atomic.write_bytes(dev, b"x" * 100)
    assert stat.S_ISCHR(os.lstat(dev).st_mode)


def test_directory_outputs_follow_links_and_refuse_files(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "viz"
    link.symlink_to(real)
    assert atomic.directory(link) == link and link.is_symlink()
    dangling = tmp_path / "later"
    dangling.symlink_to(tmp_path / "made")
    atomic.directory(dangling)
    assert dangling.is_symlink() and (tmp_path / "made").is_dir()
    (tmp_path / "file").write_text("keep")
    with pytest.raises(atomic.OutputError, match="is not a folder"):
        atomic.directory(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "keep"


def test_kernels_into_a_file_is_refused_in_one_line(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    r = zoo("kernels", tmp_path / "a.png", "--output", fifo)
    assert r.exit_code == 1 and "is not a folder" in r.output and isinstance(r.exception, SystemExit)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_export_into_a_file_is_refused_in_one_line(make_run, tmp_path):
    run = make_run("lenet")
    os.mkfifo(tmp_path / "out")  # (click itself refuses a regular file there)
    r = zoo("export", run, "--output", tmp_path / "out")
    assert r.exit_code == 1 and "is not a folder" in r.output and isinstance(r.exception, SystemExit)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "out").st_mode)


def test_export_follows_a_symlinked_folder(exported_lenet, tmp_path):
    from export.onnx import export_run

    run = exported_lenet("digits")
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "exported"
    link.symlink_to(real)
    export_run(run, link, log=None)
    assert link.is_symlink() and (real / "model.onnx").is_file()


def test_a_socket_is_refused_in_one_line_and_kept(model, images, tmp_path):
    import socket

    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        r = zoo("classify", model, images, "-o", path)
        assert r.exit_code == 1 and "is a socket" in r.output and isinstance(r.exception, SystemExit)
        with pytest.raises(atomic.OutputError, match="is a socket"):
            atomic.write_text(path, "x")
        assert stat.S_ISSOCK(os.lstat(path).st_mode)

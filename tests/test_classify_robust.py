"""`zoo classify` when things go wrong: a decoding worker killed, the run itself killed (and resumed),
file names that are not UTF-8, symlink loops, FIFOs, GIFs; its messages and progress bars in logs.

The runs that must be caught mid-way classify many copies of one large, cheaply stored PNG (a 3000 x
3000 gradient: 15 KB on disk, ~20 ms to decode), one image per batch, in a real `zoo classify`
process; they are killed by their own pid once the partial output shows they are under way.
"""

import base64
import csv
import glob
import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from zoo.cli import main
from zoo.data.walk import collect

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEADLINE = 120  # seconds a killed or hung run gets before the test calls it a hang


@pytest.fixture
def digits_run(exported_lenet):
    return exported_lenet("digits", class_names=[str(i) for i in range(10)])


def slow_images(folder: pathlib.Path, n: int) -> list[pathlib.Path]:
    folder.mkdir(parents=True)
    first = folder / "0000.png"
    Image.fromarray((np.add.outer(np.arange(3000), np.arange(3000)) % 256).astype(np.uint8)).save(first)
    for i in range(1, n):
        (folder / f"{i:04d}.png").write_bytes(first.read_bytes())
    return sorted(folder.iterdir())


def zoo(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def start(*args, cwd) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "zoo", *map(str, args)], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def wait_for_lines(proc: subprocess.Popen, path: pathlib.Path, n: int) -> None:
    """Until `path` holds n complete lines (the run is under way); fails if the run ends first."""
    for _ in range(DEADLINE * 20):
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        assert proc.poll() is None, f"the run ended before {path.name} had {n} lines: {proc.stderr.read()}"
        time.sleep(0.05)
    pytest.fail(f"{path.name} never had {n} lines")


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"zoo classify still running after {DEADLINE} s: it hangs")
    return proc.returncode, err.decode()


def decode_workers(pid: int) -> list[int]:
    """The pool's worker processes among `pid`'s children (not its resource tracker)."""
    children = [int(c) for f in glob.glob(f"/proc/{pid}/task/*/children") for c in pathlib.Path(f).read_text().split()]
    return [c for c in children if b"spawn_main" in pathlib.Path(f"/proc/{c}/cmdline").read_bytes()]


def jsonl_paths(path: pathlib.Path) -> list[str]:
    return [json.loads(line)["path"] for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
def test_a_killed_decode_worker_ends_the_run_with_one_line(digits_run, tmp_path):
    files = slow_images(tmp_path / "img", 300)
    out = tmp_path / "out.jsonl"
    proc = start("classify", digits_run / "model.onnx", "img", "--workers", 2, "-b", 1, "-o", out, cwd=tmp_path)
    wait_for_lines(proc, tmp_path / "out.jsonl.partial", 4)
    workers = decode_workers(proc.pid)
    assert workers, "no decoding worker processes found"
    os.kill(workers[0], signal.SIGKILL)
    code, err = finish(proc)
    assert code == 1 and err.strip().splitlines()[-1].startswith("Error: a decoding worker process died")
    assert "--resume" in err.splitlines()[-1] and "Traceback" not in err
    assert not out.exists()  # an output file that exists is complete
    kept = jsonl_paths(tmp_path / "out.jsonl.partial")
    assert 4 <= len(kept) < len(files) and kept == [str(f.relative_to(tmp_path)) for f in files[: len(kept)]]


@pytest.mark.slow
def test_a_killed_run_keeps_its_results_and_resume_finishes_it(digits_run, tmp_path):
    files = slow_images(tmp_path / "img", 200)
    names = [str(f.relative_to(tmp_path)) for f in files]
    out, partial = tmp_path / "out.jsonl", tmp_path / "out.jsonl.partial"
    proc = start("classify", digits_run / "model.onnx", "img", "--workers", 0, "-b", 1, "-o", out, cwd=tmp_path)
    wait_for_lines(proc, partial, 5)
    os.kill(proc.pid, signal.SIGKILL)
    finish(proc)
    assert not out.exists()
    kept = jsonl_paths(partial)  # every line whole and parseable
    assert 5 <= len(kept) < len(names) and kept == names[: len(kept)]

    again = start("classify", digits_run / "model.onnx", "img", "-o", out, cwd=tmp_path)
    code, err = finish(again)  # without --resume, the unfinished results are not thrown away
    assert code == 1 and "--resume" in err and err.strip().count("\n") == 0 and len(jsonl_paths(partial)) == len(kept)

    code, err = finish(start("classify", digits_run / "model.onnx", "img", "-o", out, "--resume", cwd=tmp_path))
    assert code == 0, err
    assert f"carried over {len(kept)} results from {partial}; classifying the other " in err
    assert sorted(jsonl_paths(out)) == names and not partial.exists()  # each image exactly once
    code, err = finish(start("classify", digits_run / "model.onnx", "img", "-o", out, "--resume", cwd=tmp_path))
    assert code == 0 and f"carried over {len(names)} results from {out};" in err and "\n0 images in" in err
    assert sorted(jsonl_paths(out)) == names


def test_a_name_that_is_not_utf8_is_written_validly_and_losslessly(digits_run, tmp_path):
    folder = tmp_path / "7"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/caf\xff.png"
    Image.new("L", (28, 28), 200).save(os.fsdecode(raw))
    Image.new("L", (28, 28), 20).save(folder / "plain.png")
    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"out.{fmt}"
        r = zoo("classify", digits_run, folder, "-o", out)
        assert r.exit_code == 0, r.output
        text = out.read_bytes().decode("utf-8")  # strict: raises on a lone surrogate or a stray byte
        rows = (
            [json.loads(line) for line in text.splitlines()]
            if fmt == "jsonl"
            else list(csv.DictReader(io.StringIO(text)))
        )
        assert [row["path"] for row in rows] == [str(folder / "caf\ufffd.png"), str(folder / "plain.png")]
        assert base64.b64decode(rows[0]["path_bytes"]) == raw and not rows[1].get("path_bytes")
        assert all(row["true_label" if fmt == "jsonl" else "label"] == "7" for row in rows)
        r = zoo("classify", digits_run, folder, "-o", out, "--resume")  # the lossless name is recognised
        assert r.exit_code == 0 and "carried over 2 results" in r.output and "0 images in" in r.output
        assert out.read_bytes().decode("utf-8") == text
    r = zoo("classify", digits_run, folder)  # the table on stdout
    assert r.exit_code == 0 and "caf\ufffd.png" in r.stdout


def test_symlink_loops_and_special_files_are_counted_and_named(digits_run, tmp_path):
    root = tmp_path / "d"
    (root / "sub").mkdir(parents=True)
    Image.new("L", (28, 28)).save(root / "sub" / "a.png")
    (root / "self.png").symlink_to("self.png")
    (root / "sub" / "up").symlink_to("..")
    (root / "gone.png").symlink_to("nowhere.png")
    os.mkfifo(root / "pipe.png")
    (root / "notes.txt").write_text("x")
    files, skipped = collect([root])
    assert files == [root / "sub" / "a.png"]
    assert sorted(skipped) == sorted(
        [
            (root / "gone.png", "broken symbolic link"),
            (root / "notes.txt", "no image extension"),
            (root / "pipe.png", "not a regular file (a FIFO)"),
            (root / "self.png", "symbolic link loop"),
            (root / "sub" / "up", "symbolic link loop"),
        ]
    )
    r = zoo("classify", digits_run, root, "-o", tmp_path / "o.jsonl")
    assert r.exit_code == 0, r.output
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("1 image in ") and "5 files skipped" in line
    for what in (
        "self.png: symbolic link loop (+1 more)",
        "pipe.png: not a regular file (a FIFO)",
        "notes.txt: no image extension",
        "gone.png: broken symbolic link",
    ):
        assert what in line


def test_a_fifo_named_on_the_command_line_is_refused(digits_run, tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    proc = start("classify", digits_run / "model.onnx", tmp_path / "pipe.png", cwd=tmp_path)
    code, err = finish(proc)
    assert code == 1 and err.strip() == f"Error: {tmp_path / 'pipe.png'}: not a regular file or folder (a FIFO)"


def test_gif_is_an_image_in_folders_as_by_name(digits_run, tmp_path):
    (tmp_path / "g").mkdir()
    Image.new("P", (28, 28), 3).save(tmp_path / "g" / "one.gif")
    files, skipped = collect([tmp_path / "g"])
    assert files == [tmp_path / "g" / "one.gif"] and skipped == []
    r = zoo("classify", digits_run, tmp_path / "g", "--format", "jsonl")
    assert r.exit_code == 0 and json.loads(r.stdout)["top_k"]


def test_messages_are_singular_for_one_and_bars_stay_out_of_logs(digits_run, make_run, tmp_path):
    (tmp_path / "3").mkdir()
    Image.new("L", (28, 28)).save(tmp_path / "3" / "a.png")
    (tmp_path / "3" / "b.png").write_bytes(b"broken")
    (tmp_path / "3" / "c.txt").write_text("x")
    r = zoo("classify", digits_run, tmp_path / "3", "-o", tmp_path / "o.csv")
    assert r.exit_code == 1
    assert "2 images in" in r.stderr and "; 1 unreadable;" in r.stderr and "; 1 file skipped" in r.stderr
    assert "\r" not in r.stderr and "/1 image whose folder names a class)" in r.stderr
    (tmp_path / "f" / "a").mkdir(parents=True)
    (tmp_path / "f" / "b").mkdir()
    for cls in ("a", "b"):
        Image.new("L", (28, 28)).save(tmp_path / "f" / cls / "x.png")
    (tmp_path / "f" / "b" / "y.png").write_bytes(b"broken")
    r = zoo("features", make_run("lenet"), tmp_path / "f", "-o", tmp_path / "f.npz", "--workers", 0)
    assert r.exit_code == 0, r.output
    assert "\r" not in r.stderr and "skipped 1 file that is not a readable image" in r.stderr
    assert "2 images x 84 features" in r.output and "2 classes" in r.output


def test_resume_drops_a_torn_last_line_and_names_a_bad_one(digits_run, tmp_path):
    (tmp_path / "3").mkdir()
    for i in range(3):
        Image.new("L", (28, 28), 80 * i).save(tmp_path / "3" / f"{i}.png")
    out, partial = tmp_path / "o.jsonl", tmp_path / "o.jsonl.partial"
    assert zoo("classify", digits_run, tmp_path / "3", "-o", out).exit_code == 0
    lines = out.read_text().splitlines(keepends=True)
    out.rename(partial)
    partial.write_text(lines[0] + lines[1][:20])  # killed while writing the second line
    r = zoo("classify", digits_run, tmp_path / "3", "-o", out, "--resume")
    assert r.exit_code == 0 and "carried over 1 result from" in r.stderr and "\n2 images in" in r.stderr
    assert out.read_text().splitlines(keepends=True) == lines
    out.write_text(lines[0] + "{not json\n" + lines[2])
    r = zoo("classify", digits_run, tmp_path / "3", "-o", out, "--resume")
    assert r.exit_code == 1 and r.output.startswith(f"Error: {out}, line 2: not a result of `zoo classify`")
    assert r.output.strip().count("\n") == 0 and out.read_text() == lines[0] + "{not json\n" + lines[2]

"""`python -m zoo ...` run as a child process and measured: how the benchmark scripts time a command.

r = run_zoo(["train", "lenet", "--output", "runs/x"], cwd=tmp)   # {"wall_s", "peak_rss_mb", "output"}
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time


class ChildError(RuntimeError):
    """The command ended with a non-zero status; the message holds its output."""


def run_zoo(args: list[str], cwd: str | os.PathLike, code: str | os.PathLike | None = None) -> dict:
    """Run `python -m zoo ARGS` in `cwd` (this interpreter; the installed package, or the one in the
    folder `code`, e.g. a `checkout_of` an earlier commit); its wall time, peak RSS (from wait4) and
    output (stdout and stderr together). ChildError where it fails."""
    env = {**os.environ, "PYTHONPATH": str(code)} if code else None
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise ChildError(f"zoo {' '.join(args)} failed:\n{out}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "output": out}


def checkout_of(rev: str, folder: pathlib.Path) -> pathlib.Path:
    """The files of commit `rev` of this repository in a new `folder` (git archive: the working tree and
    the repository are not touched), to run the code as it was: `run_zoo(args, cwd, code=folder)`."""
    root = pathlib.Path(__file__).resolve().parents[1]
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=root, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder

"""`python -m zoo ...` run as a child process and measured: how the benchmark scripts time a command.

r = run_zoo(["train", "lenet", "--output", "runs/x"], cwd=tmp)   # {"wall_s", "peak_rss_mb", "output"}
"""

from __future__ import annotations

import os
import subprocess
import sys
import time


class ChildError(RuntimeError):
    """The command ended with a non-zero status; the message holds its output."""


def run_zoo(args: list[str], cwd: str | os.PathLike) -> dict:
    """Run `python -m zoo ARGS` in `cwd` (this interpreter, the installed package); its wall time, peak
    RSS (from wait4) and output (stdout and stderr together). ChildError where it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise ChildError(f"zoo {' '.join(args)} failed:\n{out}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "output": out}

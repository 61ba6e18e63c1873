"""`python -m zoo ...` run as a child process and measured: how the benchmark scripts time a command.

r = run_zoo(["train", "lenet", "--output", "runs/x"], cwd=tmp)   # {"wall_s", "peak_rss_mb", "output"}
port = free_port()                                               # for a child that listens on 127.0.0.1
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server, cluster or rendezvous a child
    starts; another process may take it before the child binds it, which is why tests bind port 0 where
    they can)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChildError(RuntimeError):
    """The command ended with a non-zero status; the message holds its output."""


def run_zoo(args: list[str], cwd: str | os.PathLike, code: str | os.PathLike | None = None) -> dict:
    """Run `python -m zoo ARGS` in `cwd` (this interpreter; the installed package, or the one in the
    folder `code`, e.g. a `checkout_of` an earlier commit); its wall time, peak RSS (from wait4) and
    output (stdout and stderr together). ChildError where it fails."""
    r = measure_zoo(args, cwd, code)
    if r["exit"]:
        raise ChildError(f"zoo {' '.join(args)} failed:\n{r['output']}")
    return {k: r[k] for k in ("wall_s", "peak_rss_mb", "output")}


def measure_zoo(
    args: list[str],
    cwd: str | os.PathLike,
    code: str | os.PathLike | None = None,
    *,
    timeout: float | None = None,
    stdout: int | IO | None = None,
) -> dict:
    """`run_zoo`, whatever the status: {"exit", "wall_s", "peak_rss_mb", "output", "killed"}. `timeout`:
    seconds after which the command is killed (its process group: SIGKILL), `killed` True. `stdout`:
    where its standard output goes (default: into `output`, with stderr)."""
    env = {**os.environ, "PYTHONPATH": str(code)} if code else None
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.STDOUT if stdout is None else subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    killer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL)) if timeout else None
    if killer:
        killer.start()
    out = (proc.stdout if stdout is None else proc.stderr).read()
    _, status, usage = os.wait4(proc.pid, 0)
    killed = bool(killer) and not killer.is_alive() and os.WIFSIGNALED(status)
    if killer:
        killer.cancel()
    return {
        "exit": os.waitstatus_to_exitcode(status),
        "wall_s": round(time.perf_counter() - start, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "output": out,
        "killed": killed,
    }


def checkout_of(rev: str, folder: pathlib.Path) -> pathlib.Path:
    """The files of commit `rev` of this repository in a new `folder` (git archive: the working tree and
    the repository are not touched), to run the code as it was: `run_zoo(args, cwd, code=folder)`."""
    root = pathlib.Path(__file__).resolve().parents[1]
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=root, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder

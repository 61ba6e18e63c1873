"""A Ray cluster of several nodes on this one machine: `ray start --head` and a `ray start --address` per
further node, each with its own CPUs, for trying `zoo classify --ray` and for the tests and benchmarks.

    >>> with LocalCluster([1, 1]) as cluster:          # two nodes of one CPU each
    ...     subprocess.run(["zoo", "classify", "runs/x/model.onnx", "photos/", "--ray", cluster.address,
    ...                     "-o", "out/"])

Several raylets share one host because each takes its own ports (Ray picks free ones for all but the
head's GCS port, which is chosen free here) and the head's session folder (`--temp-dir`, a short path:
the raylets' socket paths must fit in 107 bytes). Each `ray start --block` runs in a session of its own;
stopping the cluster signals those process groups only (never `ray stop`, which stops every Ray on the
machine, other users' too). The cluster takes a token of its own (Ray's token authentication, the token
in the session folder, not ~/.ray): a driver joins it with `client_env` in its environment.
Ray (2.60) gives the nodes the host's address, not 127.0.0.1: it replaces a loopback address by the one
other hosts reach (`resolve_ip_for_localhost`), and its servers listen on every interface; the token
keeps others out.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence

from zoo.child import free_port

STARTED = "Ray runtime started."  # what `ray start` prints once its node is up
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 5.0  # then SIGKILL: a node with busy workers may take longer to stop itself (20 s seen)


def ray_command() -> str:
    """The `ray` command of this environment (beside this Python), else the one on PATH."""
    beside = pathlib.Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


class LocalCluster:
    """`node_cpus`: one node per entry, the first the head; `env`: added to the nodes' environment (the
    workers' too: PYTHONPATH for a checkout, credentials); `object_store_mb`: each node's object store."""

    def __init__(
        self, node_cpus: Sequence[int] = (1, 1), env: Mapping[str, str] | None = None, object_store_mb: int = 300
    ):
        self.node_cpus = list(node_cpus)
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
        self.object_store = str(object_store_mb * 1024 * 1024)
        self.port = free_port()
        self.temp = pathlib.Path(tempfile.mkdtemp(prefix="zr", dir="/tmp"))
        token = self.temp / "auth_token"
        token.write_text(secrets.token_hex(32))  # (mkdtemp's folder: this user's only)
        self.client_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        self.env.update(self.client_env)
        self.nodes: list[subprocess.Popen] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, cpus: int, head: bool) -> None:
        where = ["--head", "--port", str(self.port), "--temp-dir", str(self.temp), "--include-dashboard", "false"]
        if not head:
            where = ["--address", self.address]
        log = self.temp / f"node{len(self.nodes)}.log"
        command = [ray_command(), "start", "--block", "--num-cpus", str(cpus), "--node-ip-address", "127.0.0.1"]
        command += ["--object-store-memory", self.object_store, "--disable-usage-stats", *where]
        with open(log, "wb") as out:
            node = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.temp, start_new_session=True
            )
        self.nodes.append(node)
        deadline = time.monotonic() + START_TIMEOUT_S
        while STARTED not in log.read_text(errors="replace"):
            if node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start did not start a node: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)

    def start(self) -> LocalCluster:
        try:
            for i, cpus in enumerate(self.node_cpus):
                self._start(cpus, head=i == 0)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM each node's `ray start`, the workers first (it stops the processes it started); SIGKILL
        its process group and session after STOP_TIMEOUT_S, or once it is gone (whatever it left); then
        remove the session folder."""
        for node in reversed(self.nodes):
            if node.poll() is None:
                node.terminate()
        for node in reversed(self.nodes):
            try:
                node.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(node, signal.SIGKILL)  # whatever of the group is still there
            node.wait()
        for pid in processes_of(self):  # a worker left behind (its own process group, the node's session)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.nodes = []
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(node: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(node.pid, sig)  # start_new_session: the group's ID is the node's PID
    except ProcessLookupError:
        pass


def processes_of(cluster: LocalCluster, title: str = "") -> list[int]:
    """The PIDs of the cluster's processes (those of its nodes' sessions: Ray's workers take process
    groups of their own, not sessions) whose command line holds `title`: a Ray worker's is its task or
    actor, e.g. "ray::MapWorker"."""
    sessions = {node.pid for node in cluster.nodes}
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) in sessions and title in (entry / "cmdline").read_text(errors="replace"):
                found.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
    return found

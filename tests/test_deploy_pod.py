"""The pod contract: the server container of the rendered manifests (deploy/base's Deployment, the KServe
runtime's container with {{.Name}} filled in) runs here as a real process, with the image's ENTRYPOINT and
ENV (tests/manifests.py reads the Dockerfile) and the container's args and env; /mnt/models is a copy of a
real run (LeNet, trained on MNIST-small and exported), the emptyDir a temporary folder, and, where this runs
as root with mount namespaces, everything else read-only (readOnlyRootFilesystem). Then the test does what
the kubelet and the endpoints controller do: the startupProbe until it passes, readiness and liveness on the
paths and ports the manifest names (periods scaled down), traffic from keep-alive clients, SIGTERM: readiness
fails while requests are still answered, clients stop sending once the pod is out of the endpoints (half the
drain delay later), every request gets its answer (no 5xx, no connection error), and the process exits 0
within terminationGracePeriodSeconds. The same with --workers 2 (ZOO_SERVE_WORKERS, as a patch would set)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from manifests import ROOT, command_line, deployment_container, env_value, image, render, runtime_container
from serving import Output, free_socket

SCALE = 0.05  # probe periods scaled down: a 5 s period is probed every 0.25 s
API_KEY = "pod-contract-key"  # the Secret's value where the manifest reads one (secretKeyRef)
SECRETS = {("cnnzoo-api-key", "api-key"): API_KEY}
KSERVE_NAME = "lenet5"  # the InferenceService's name KServe puts for {{.Name}}
CLIENTS = 4

pytestmark = pytest.mark.slow


def read_only_root_works() -> bool:
    """Whether this process may run a child in a mount namespace of its own with / read-only (root with
    CAP_SYS_ADMIN, util-linux's unshare): then the contract's read-only filesystem is real, not assumed."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = ["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -o remount,bind,ro / && ! touch /x"]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


def local_paths(pod: dict, container: dict, model: pathlib.Path, tmp: pathlib.Path) -> dict[str, pathlib.Path]:
    """mountPath -> the local folder standing for it: /mnt/models the model, each emptyDir a new folder."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    paths = {"/mnt/models": model}  # KServe's storage initializer mounts it where a runtime gives no volume
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            paths[mount["mountPath"]] = tmp / f"emptydir-{mount['name']}"
            paths[mount["mountPath"]].mkdir()
        else:
            assert mount["mountPath"] == "/mnt/models" and mount.get("readOnly"), mount
    return paths


def localize(value: str, paths: dict[str, pathlib.Path]) -> str:
    for mount, local in paths.items():
        if value == mount or value.startswith(mount + "/"):
            return str(local) + value[len(mount) :]
    return value


def environment(container: dict, paths: dict, extra: dict) -> dict[str, str]:
    """The process's environment: the image's ENV, then the container's env (values and Secrets), then
    `extra`; paths under a mount point moved to the local folders; PATH and PYTHONPATH of this checkout."""
    env = {k: v for k, v in image().env.items() if k != "PATH"}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = SECRETS[ref["name"], ref["key"]]
    env.update(extra)
    env = {k: localize(v, paths) for k, v in env.items()}
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**env, "PATH": os.environ["PATH"], "PYTHONPATH": pythonpath}


def argv(container: dict, paths: dict, port: int) -> list[str]:
    """The container's command line (ENTRYPOINT + args), on 127.0.0.1:`port`, {{.Name}} filled in, run by
    this Python (the image's `zoo` is the same console script)."""
    line = [localize(a.replace("{{.Name}}", KSERVE_NAME), paths) for a in command_line(container, image())]
    line[line.index("--host") + 1] = "127.0.0.1"
    line[line.index("--port") + 1] = str(port)
    assert line[0] == "zoo"
    return [sys.executable, "-m", "zoo", *line[1:]]


def start(container: dict, paths: dict, extra_env: dict, read_only: bool):
    """The container as a process (its stdout and stderr in one pipe) and its port."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()  # the server binds it again at once (SO_REUSEADDR), as the kubelet gives it the pod's IP
    line = argv(container, paths, port)
    if read_only:  # the emptyDirs stay writable mounts, everything else read-only, as in the pod
        binds = " && ".join(f'mount --bind "{p}" "{p}"' for m, p in paths.items() if m != "/mnt/models")
        script = f'{binds} && mount -o remount,bind,ro / && exec "$@"'
        line = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *line]
    proc = subprocess.Popen(
        line,
        cwd=localize(image().workdir, paths),
        env=environment(container, paths, extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, port


def probe(port: int, container: dict, name: str) -> int | None:
    """The status a probe of the container gets (None: no connection), as the kubelet's httpGet does."""
    get = container[name]["httpGet"]  # its port is the server's (test_deploy_manifests.py), here `port`
    try:
        timeout = container[name].get("timeoutSeconds", 1)
        return httpx.get(f"http://127.0.0.1:{port}{get['path']}", timeout=timeout).status_code
    except httpx.TransportError:
        return None


def passes(status: int | None) -> bool:
    return status is not None and 200 <= status < 400


def started(proc, out, port: int, container: dict) -> None:
    """The startupProbe until it passes: polled every periodSeconds (scaled), for the whole time the manifest
    allows (periodSeconds x failureThreshold, not scaled: loading is real time)."""
    spec = container["startupProbe"]
    deadline = time.monotonic() + spec["periodSeconds"] * spec["failureThreshold"]
    while not passes(probe(port, container, "startupProbe")):
        assert proc.poll() is None, "the container exited before its startupProbe passed:\n" + "".join(out.lines)
        assert time.monotonic() < deadline, "the startupProbe never passed: the kubelet restarts it"
        time.sleep(spec["periodSeconds"] * SCALE)


class Traffic:
    """Clients, each on one keep-alive connection (httpx reconnects where the server closes one), sending
    requests until `stop`; every answer or transport error is kept with the time it was sent."""

    def __init__(self, port: int, request):
        self.stop = threading.Event()
        self.results: list[tuple[float, object]] = []
        self.threads = [threading.Thread(target=self.client, args=(port, request), daemon=True) for _ in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def client(self, port: int, request) -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    self.results.append((sent, request(client).status_code))
                except httpx.TransportError as e:
                    self.results.append((sent, repr(e)))

    def finish(self) -> list[tuple[float, object]]:
        self.stop.set()
        for t in self.threads:
            t.join(120)
        return self.results


def digest(folder: pathlib.Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        h.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def stop(proc, out) -> None:
    """What the kubelet does past the grace period, on the way out of a test that failed before the exit."""
    with contextlib.suppress(ProcessLookupError):
        proc.kill()  # (an exited process keeps its pid until waited for: nothing else is killed)
    proc.wait(30)
    out.thread.join(10)


def drain(proc, out, port: int, container: dict, grace: float, request) -> list[tuple[float, object]]:
    """Readiness and liveness pass; then under traffic, SIGTERM: readiness fails while the server answers,
    the clients stop half the drain delay later (the pod is out of the endpoints), the process exits within
    the grace period. Returns the clients' results, with the time of SIGTERM as the first entry."""
    for _ in range(3):  # the steady state: the kubelet's periodic probes
        assert passes(probe(port, container, "readinessProbe")) and passes(probe(port, container, "livenessProbe"))
        time.sleep(container["readinessProbe"]["periodSeconds"] * SCALE)
    traffic = Traffic(port, request)
    try:
        while len(traffic.results) < 5 * CLIENTS:
            assert proc.poll() is None, "".join(out.lines)
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        term = time.monotonic()
        drain_delay = float(env_value(container, "ZOO_SERVE_DRAIN_DELAY"))
        while passes(status := probe(port, container, "readinessProbe")):
            assert time.monotonic() < term + drain_delay, "readiness still passes after the drain delay"
            time.sleep(container["readinessProbe"]["periodSeconds"] * SCALE)
        assert status is not None, "the socket closed before readiness failed: endpoints would still send requests"
        assert passes(probe(port, container, "livenessProbe"))  # draining is not dead
        time.sleep(drain_delay / 2)  # the endpoints controller and kube-proxy take the pod out
    finally:
        results = traffic.finish()
    try:
        code = proc.wait(timeout=max(0.0, term + grace - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"no exit within terminationGracePeriodSeconds ({grace} s): the kubelet would SIGKILL it")
    assert code == 0, "".join(out.lines)
    return [(term, "SIGTERM"), *results]


def predict(digit: bytes):
    return lambda client: client.post("/predict", content=digit, headers={"Content-Type": "image/png"})


def infer_v2(digit: bytes, name: str):
    import base64

    body = {
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(digit).decode()]}]
    }
    return lambda client: client.post(f"/v2/models/{name}/infer", json=body)


def contract(container: dict, pod: dict, grace: float, served_lenet, tmp_path, request, extra_env=None):
    """Run `container` of a rendered manifest as the pod contract says (module docstring)."""
    model = tmp_path / "model"
    shutil.copytree(served_lenet.run, model)
    for path in (model, *model.iterdir()):  # read-only as mounted (root ignores these bits: the mount does not)
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = digest(model)
    paths = local_paths(pod, container, model, tmp_path)
    read_only = read_only_root_works()
    proc, port = start(container, paths, extra_env or {}, read_only)
    out = Output(proc)
    try:
        started(proc, out, port, container)
        if any("valueFrom" in var for var in container.get("env", [])):  # the Secret's key is asked for
            assert httpx.get(f"http://127.0.0.1:{port}/models").status_code == 401
        results = drain(proc, out, port, container, grace, request)
    finally:
        stop(proc, out)
    (term, _), answers = results[0], results[1:]
    failed = [r for r in answers if r[1] != 200]
    assert failed == [], f"{len(failed)} of {len(answers)} requests failed: {failed[:5]}\n" + "".join(out.lines)
    assert sum(sent > term for sent, _ in answers) >= CLIENTS  # answered while draining, not only before
    assert digest(model) == before  # nothing written under /mnt/models
    if env_value(container, "ZOO_SERVE_LOG_FORMAT") == "json":  # what `kubectl logs` hands a log collector
        assert all(isinstance(json.loads(line), dict) for line in out.lines), "".join(out.lines[:20])
    return out.lines, paths, read_only


@pytest.mark.parametrize("workers", [1, 2])
def test_the_deployment_is_a_good_pod(workers, served_lenet, tmp_path):
    pod, container = deployment_container(render("base"))
    digit = served_lenet.digits[0][0]
    extra = {"ZOO_SERVE_WORKERS": str(workers)} if workers > 1 else {}
    lines, paths, read_only = contract(
        container, pod, pod["terminationGracePeriodSeconds"], served_lenet, tmp_path, predict(digit), extra
    )
    cache = paths[env_value(container, "ZOO_CACHE_DIR")]
    assert (cache / "tmp").is_dir()  # the server's TMPDIR is in the one writable folder
    print(f"read-only root emulated: {read_only}; {len(lines)} lines of output")


def test_the_kserve_runtime_is_a_good_pod(served_lenet, tmp_path):
    spec, container = runtime_container(render("overlays/kserve"))
    digit = served_lenet.digits[0][0]
    contract(container, spec, 30, served_lenet, tmp_path, infer_v2(digit, KSERVE_NAME))  # 30: Kubernetes' default

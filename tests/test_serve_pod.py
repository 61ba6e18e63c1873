"""`zoo serve` as a good pod (issue 22): live / ready while the model loads, SIGTERM under load with no
failed request (one process and --workers 2), configuration from the environment, the API key from a
file, JSON logs, nothing written outside --cache-dir, KServe's /mnt/models, bad starts in one line, and
threads that follow the CPU quota. Real `zoo serve` processes on random ports of 127.0.0.1."""

import json
import os
import shutil
import signal
import stat
import threading
import time

import httpx
import pytest
from serving import ready_url, ready_workers, running, watched, zoo_serve

PNG = {"Content-Type": "image/png"}


# ---- live and ready while the model loads ------------------------------------------------------------
def test_live_answers_and_ready_is_503_while_the_model_loads(served_lenet):
    """The app a server process serves from the moment it listens: its model loads on a thread (held
    back here until the test lets it go): live 200, ready 503, requests 503 with Retry-After; then the
    real app, ready once warmed up."""
    import infer
    from serve.starting import Starting

    go = threading.Event()

    def load(settings):
        assert go.wait(60)
        return infer.load(settings["model"], threads=1)

    app = Starting({"model": str(served_lenet.onnx), "model_name": "digits"}, load=load)
    with running(app, ready_path="/v2/health/live") as url:
        assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
        for path in ("/v2/health/ready", "/v2/models/digits/ready", "/health"):
            assert httpx.get(url + path).status_code == 503, path
        assert httpx.get(f"{url}/health").json()["status"] == "loading"
        r = httpx.post(f"{url}/predict", content=served_lenet.digits[0][0], headers=PNG)
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "loading" in r.json()["error"]
        go.set()
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline and app.failure is None, app.failure
            time.sleep(0.02)
        assert httpx.get(f"{url}/v2/models/digits/ready").json() == {"ready": True}
        r = httpx.post(f"{url}/predict", content=served_lenet.digits[0][0], headers=PNG)
        assert r.status_code == 200 and r.json()["model"] == "digits"
        assert app.drain() == 0.0  # (no drain delay set) readiness turns 503 at once, requests are answered
        assert httpx.get(f"{url}/v2/health/ready").status_code == 503
        r = httpx.post(f"{url}/predict", content=served_lenet.digits[0][0], headers=PNG)
        assert r.status_code == 200 and r.headers["connection"] == "close"


def test_a_model_that_fails_to_load_stops_the_server_with_its_reason(served_lenet, tmp_path):
    from serve.starting import Starting
    from zoo import rundir

    stopped = threading.Event()
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(served_lenet.run / rundir.CARD, run)
    (run / rundir.WEIGHTS).write_bytes(b"not weights")
    app = Starting({"model": str(run), "backend": "torch"})
    app.stop = stopped.set
    with running(app, ready_path="/v2/health/live") as url:
        assert stopped.wait(60)
        assert httpx.get(f"{url}/v2/health/ready").status_code == 503
    assert app.failure.startswith(str(run / rundir.WEIGHTS)) and "\n" not in app.failure


# ---- SIGTERM under load ------------------------------------------------------------------------------
DRAIN = 3.0  # --drain-delay in the tests below
GRACE = 5.0  # --timeout-graceful-shutdown


def load_and_sigterm(url, proc, digit, clients=8):
    """8 keep-alive clients post /predict without pause; SIGTERM; they go on until 1 s before the drain
    delay ends (a load balancer has dropped the server by then). (answers: [(monotonic time, status or
    the transport error's name)], when SIGTERM was sent, when readiness was first seen 503)."""
    answers, stop = [], threading.Event()

    def client():
        with httpx.Client(base_url=url, timeout=30) as c:
            while not stop.is_set():
                try:
                    status = c.post("/predict", content=digit, headers=PNG).status_code
                except httpx.TransportError as e:
                    status = type(e).__name__
                answers.append((time.monotonic(), status))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        while len(answers) < 50:  # under load
            assert proc.poll() is None
            time.sleep(0.02)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        while httpx.get(f"{url}/v2/health/ready", headers={"Connection": "close"}).status_code == 200:
            time.sleep(0.01)
        not_ready = time.monotonic()
        time.sleep(max(0.0, sent + DRAIN - 1.0 - time.monotonic()))
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    return answers, sent, not_ready


@pytest.mark.slow  # a load test (4-5 s each): the full suite runs it
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_answers_every_request_then_exits(served_lenet, workers, monkeypatch):
    monkeypatch.setenv("ZOO_SERVE_LOG_FORMAT", "json")  # (and the logs of every process are JSON lines)
    args = ["--threads", 1, "--drain-delay", DRAIN, "--timeout-graceful-shutdown", GRACE, "--workers", workers]
    proc = zoo_serve(served_lenet.onnx, "--port", 0, "--max-delay-ms", 1, *args)
    with watched(proc) as out:
        url = ready_url(out, proc)
        ready_workers(url, proc, out, workers)
        answers, sent, not_ready = load_and_sigterm(url, proc, served_lenet.digits[0][0])
        for _ in range(5):  # every process says not ready, on fresh connections (each lands on any worker)
            assert httpx.get(f"{url}/v2/health/ready", headers={"Connection": "close"}).status_code == 503
        assert proc.wait(timeout=DRAIN + GRACE + 10) == 0
    after = [status for t, status in answers if t > sent]
    assert set(after) == {200}, sorted(set(map(str, after)))  # no 5xx, no connection error
    assert set(status for _, status in answers) == {200}
    assert sum(t > not_ready for t, _ in answers) >= 8  # still answered once readiness said 503
    lines = [json.loads(line) for line in out.lines]  # every line a JSON object
    assert any(line.get("path") == "/predict" and line.get("status") == 200 for line in lines)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any("drain-delay" in line["message"] for line in lines)


# ---- configuration -----------------------------------------------------------------------------------
def test_configuration_from_the_environment_the_command_line_wins(served_lenet, tmp_path):
    key = tmp_path / "api-key"
    key.write_text("s3cret\n")  # a Secret mounted as a file: its trailing newline is not the key's
    env = {
        **os.environ,
        "ZOO_SERVE_MODEL": str(served_lenet.onnx),
        "ZOO_SERVE_PORT": "0",
        "ZOO_SERVE_THREADS": "1",
        "ZOO_SERVE_NAME": "from-the-environment",
        "ZOO_SERVE_API_KEY_FILE": str(key),
        "ZOO_SERVE_MAX_IMAGES": "2",
        "ZOO_SERVE_DRAIN_DELAY": "0",
    }
    proc = zoo_serve("--name", "digits", env=env)
    with watched(proc) as out:
        url = ready_url(out, proc)
        assert httpx.get(f"{url}/v2/models/digits/ready").json() == {"ready": True}  # --name beat $ZOO_SERVE_NAME
        image = served_lenet.digits[0][0]
        assert httpx.post(f"{url}/predict", content=image, headers=PNG).status_code == 401
        authorized = {"Authorization": "Bearer s3cret"}
        r = httpx.post(f"{url}/predict", content=image, headers={**PNG, **authorized})
        assert r.status_code == 200 and r.json()["model"] == "digits"
        files = [("files", (f"{i}.png", image, "image/png")) for i in range(3)]
        assert httpx.post(f"{url}/predict", files=files, headers=authorized).status_code == 413  # max_images 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert ", 1 model thread and " in "".join(out.lines)  # $ZOO_SERVE_THREADS


def test_help_names_each_option_s_environment_variable():
    import click
    from click.testing import CliRunner

    from zoo.cli import main
    from zoo.commands.serve import env, serve

    text = " ".join(CliRunner().invoke(main, ["serve", "--help"]).output.split())  # (unwrapped)
    flags = [p.opts[0] for p in serve.params if isinstance(p, click.Option) and p.opts[0] != "--help"]
    assert len(flags) > 20
    for flag in flags:
        assert f"env var: {env(flag)}" in text, flag
    assert env("model") == "ZOO_SERVE_MODEL" and "ZOO_SERVE_MODEL" in text
    assert "ZOO_CACHE_DIR" in text and "ZOO_API_KEY" in text  # the other names these have


@pytest.mark.parametrize(
    "content, error",
    [(None, "cannot read the API key file"), ("\n", "the API key file is empty")],
)
def test_a_missing_or_empty_api_key_file_is_one_line(served_lenet, tmp_path, content, error):
    key = tmp_path / "key"
    if content is not None:
        key.write_text(content)
    proc = zoo_serve(served_lenet.onnx, "--port", 0, "--api-key-file", key)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0 and out.count("\n") == 1 and str(key) in out and error in out, out


# ---- bad starts --------------------------------------------------------------------------------------
def bad_models(served_lenet, root):
    """name -> (MODEL, whether it is refused before the server listens)."""
    from zoo import rundir

    damaged = root / "damaged.onnx"
    damaged.write_bytes(served_lenet.onnx.read_bytes()[:300])
    weights = root / "weights-damaged"  # refused only once loaded: its card is fine
    weights.mkdir()
    shutil.copy(served_lenet.run / rundir.CARD, weights)
    (weights / rundir.WEIGHTS).write_bytes(b"not weights")
    two, empty = root / "two" / "models", root / "empty" / "models"
    for folder in (two, empty):
        folder.mkdir(parents=True)
    for name in ("a.onnx", "b.onnx"):
        shutil.copy(served_lenet.onnx, two / name)
    return {
        "missing": (root / "nothing-here.onnx", True),
        "damaged": (damaged, True),
        "two model files": (two, True),
        "no model file": (empty, True),
        "damaged weights": (weights, False),
    }


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(
    "case",
    # the damaged weights are found once the server listens and loads (2 s a case): slow
    ["missing", "damaged", "two model files", "no model file", pytest.param("damaged weights", marks=pytest.mark.slow)],
)
def test_a_bad_start_ends_in_one_line_and_a_non_zero_exit(served_lenet, tmp_path, case, workers):
    model, before_listening = bad_models(served_lenet, tmp_path)[case]
    proc = zoo_serve(model, "--port", 0, "--workers", workers, "--threads", 1)
    out, _ = proc.communicate(timeout=120)
    lines = out.splitlines()
    assert proc.returncode != 0 and "Traceback" not in out, out
    assert lines[-1].startswith("Error: ") and str(model) in lines[-1], out
    if before_listening:
        assert len(lines) == 1, out


# ---- a read-only filesystem and KServe's /mnt/models ---------------------------------------------------
def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_nothing_is_written_outside_the_cache_dir(served_lenet, tmp_path, backend):
    """HOME, the working directory, $TMPDIR and the model's folder stay as they were (read-only, as in a
    pod, though root may write there anyway: so their contents are compared); OpenVINO's compiled model
    and the temporary files (ONNX Runtime writes one as it is imported) go to --cache-dir. The model is
    KServe's: a folder holding one model file."""
    models = tmp_path / "mnt" / "models"
    models.mkdir(parents=True)
    shutil.copy(served_lenet.onnx, models / "digits.onnx")
    home, cwd, tmp, cache = (tmp_path / name for name in ("home", "cwd", "tmp", "cache"))
    for folder in (home, cwd, tmp):
        folder.mkdir()
    # OpenVINO's telemetry writes ~/intel/ as it reads an ONNX file, where the user has not opted out (an
    # image opts out as it is built: `opt_in_out --opt_out`; in a pod HOME is read-only anyway)
    (home / "intel").mkdir()
    (home / "intel" / "openvino_telemetry").write_text("0")
    before = {folder: tree(folder) for folder in (home, cwd, tmp, models)}
    for folder in (home, cwd, tmp, models):
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "ZOO_CACHE_DIR": str(cache)}
    args = ["--port", 0, "--backend", backend, "--workers", 2, "--threads", 1]
    proc = zoo_serve(models, *args, env=env, cwd=cwd)
    try:
        with watched(proc) as out:
            url = ready_url(out, proc)
            ready_workers(url, proc, out, 2)
            r = httpx.post(f"{url}/predict", content=served_lenet.digits[0][0], headers=PNG)
            assert r.status_code == 200 and r.json()["model"] == "digits"  # the file's name
            during = {folder: tree(folder) for folder in before}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        assert during == before and {folder: tree(folder) for folder in before} == before
        if backend == "openvino":
            assert any(p.is_file() for p in (cache / "openvino").iterdir())  # the compiled model
        assert "Traceback" not in "".join(out.lines)
    finally:
        for folder in (home, cwd, tmp, models):
            folder.chmod(stat.S_IRWXU)


# ---- threads follow the CPU quota ----------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_threads_follow_the_cgroup_cpu_quota(tmp_path, workers):
    """A pod limited to 2 CPUs (a fake cgroup v2 tree; the machine may have more): 2 CPUs' worth of
    threads in all, the model's and decoding's, whatever os.cpu_count() says; 1 CPU's with a quota of 1."""
    from test_cpu_count import AFFINITY, cgroup_tree

    from serve.runner import thread_plan

    quota2 = cgroup_tree(tmp_path / "quota2", "0::/\n", {"cpu.max": "200000 100000\n"})
    quota1 = cgroup_tree(tmp_path / "quota1", "0::/\n", {"cpu.max": "100000 100000\n"})
    share = max(1, min(2, AFFINITY) // workers)
    assert thread_plan(workers, None, None, root=quota2) == (share, share)
    assert thread_plan(workers, None, None, root=quota1) == (1, 1)
    assert thread_plan(workers, 3, 5, root=quota1) == (3, 5)  # given: as given


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed")
def test_a_server_on_one_cpu_runs_one_thread_s_worth(served_lenet):
    proc = zoo_serve(served_lenet.onnx, "--port", 0, prefix=["taskset", "-c", "0"])
    with watched(proc) as out:
        url = ready_url(out, proc)
        assert "1 model thread and 1 decode thread" in "".join(out.lines)
        assert httpx.post(f"{url}/predict", content=served_lenet.digits[0][0], headers=PNG).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0

"""`zoo serve` as a real process: one log line per request, SIGTERM drains (requests in flight finish,
new ones are refused, exit code 0), user errors in one line."""

import os
import pathlib
import re
import signal
import threading
import time

import httpx
import pytest
from serving import Output, ready_url, ready_workers, watched, zoo_serve


def queue_depth(url):
    text = httpx.get(f"{url}/metrics").text
    return float(re.search(r"^zoo_queue_depth (\S+)$", text, re.M).group(1))


def test_sigterm_drains_in_flight_requests_and_exits_0(served_lenet):
    digits = [d for d, _ in served_lenet.digits[:6]]
    # a long batching delay keeps the requests in flight while the signal arrives
    proc = zoo_serve(served_lenet.onnx, "--port", 0, "--max-delay-ms", 1500, "--threads", 1)
    out = Output(proc)
    try:
        url = ready_url(out, proc)
        answers = [None] * len(digits)

        def post(i):
            answers[i] = httpx.post(
                f"{url}/predict", content=digits[i], headers={"Content-Type": "image/png"}, timeout=60
            )

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(digits))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while queue_depth(url) < len(digits):  # all six are waiting in the batcher
            assert time.monotonic() < deadline, "the requests never queued up"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        try:
            late = httpx.post(f"{url}/predict", content=digits[0], headers={"Content-Type": "image/png"})
            assert late.status_code == 503 and "shutting down" in late.json()["error"]
        except httpx.TransportError:
            pass  # refused at the socket: also refused
        for t in threads:
            t.join(60)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out.thread.join(10)
    assert [a.status_code for a in answers] == [200] * len(digits)
    assert all(a.json()["predictions"][0]["top_k"][0]["label"] for a in answers)
    log = "".join(out.lines)
    assert len(re.findall(r"POST /predict 200 [\d.]+ ms", log)) == len(digits)  # one line per request
    assert re.search(r"GET /v2/health/ready (200|503) [\d.]+ ms", log)
    assert "Traceback" not in log


def test_user_errors_are_one_line(tmp_path):
    proc = zoo_serve(tmp_path / "nothing-here.onnx")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert out.strip().count("\n") == 0 and "nothing-here.onnx" in out and "Traceback" not in out


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def test_workers_share_the_port_answer_correctly_and_stop_on_sigterm(served_lenet):
    import infer

    predictor = infer.load(served_lenet.onnx)
    digits = [d for d, _ in served_lenet.digits[:24]]
    proc = zoo_serve(served_lenet.onnx, "--port", 0, "--workers", 2, "--max-delay-ms", 20)
    out = Output(proc)
    try:
        url = out.wait_for(r"on (http://127\.0\.0\.1:\d+)").group(1)
        assert "2 worker processes" in "".join(out.lines)
        workers = sorted(ready_workers(url, proc, out, 2))  # each loads and warms up its own model
        assert set(workers) <= set(children(proc.pid))  # (multiprocessing may add a helper process too)

        answers = [None] * len(digits)

        def post(i):
            answers[i] = httpx.post(
                f"{url}/predict?top_k=10", content=digits[i], headers={"Content-Type": "image/png"}, timeout=60
            )

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(digits))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        for pid in workers:
            assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
    finally:
        if proc.poll() is None:
            proc.kill()
    out.thread.join(10)
    from zoo.data.preprocess import preprocess

    for data, answer in zip(digits, answers):
        assert answer.status_code == 200
        want = predictor.predict(preprocess(data, predictor.card)[None])[0]
        got = [p["index"] for p in answer.json()["predictions"][0]["top_k"]]
        assert got[0] == int(want.argmax())
    assert "Traceback" not in "".join(out.lines)


def on_a_worker(url):
    """A keep-alive client and the pid of the worker process its connection landed on."""
    client = httpx.Client(base_url=url, timeout=60)
    return client, client.get("/health").json()["pid"]


@pytest.mark.slow
def test_workers_drain_like_one_process(served_lenet):
    digits = [d for d, _ in served_lenet.digits[:4]]
    proc = zoo_serve(served_lenet.onnx, "--port", 0, "--workers", 2, "--max-delay-ms", 1500, "--threads", 1)
    out = Output(proc)
    clients = []
    try:
        url = out.wait_for(r"on (http://127\.0\.0\.1:\d+)").group(1)
        ready_workers(url, proc, out, 2)
        clients += [on_a_worker(url) for _ in digits]
        answers = [None] * len(digits)

        def post(i):
            answers[i] = clients[i][0].post("/predict", content=digits[i], headers={"Content-Type": "image/png"})

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(digits))]
        for t in threads:
            t.start()
        waiting = {pid: sum(p == pid for _, p in clients) for _, pid in clients}
        deadline = time.monotonic() + 30
        while waiting:  # every request is in its worker's batcher: ask each worker on a connection of its own
            client, pid = on_a_worker(url)
            try:
                text = client.get("/metrics").text
            finally:
                client.close()
            depth = float(re.search(r"^zoo_queue_depth (\S+)$", text, re.MULTILINE).group(1))
            if waiting.get(pid) == depth:
                del waiting[pid]
            assert time.monotonic() < deadline, "the requests never queued up"
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        late = []
        for _ in range(10):  # new connections are refused at once (or answered 503), never queued and reset
            try:
                r = httpx.get(f"{url}/models", timeout=10)
                late.append(r.status_code)
            except httpx.ConnectError:
                late.append("refused")
        for t in threads:
            t.join(60)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        for client, _ in clients:
            client.close()
    out.thread.join(10)
    assert set(late) <= {503, "refused"}, late
    assert [a.status_code for a in answers] == [200] * len(digits)
    assert "Traceback" not in "".join(out.lines)


@pytest.mark.slow  # two workers, one killed and replaced, 3 s: the full suite runs it
def test_a_killed_worker_is_replaced_and_the_server_keeps_answering(served_lenet):
    digit = served_lenet.digits[0][0]
    proc = zoo_serve(served_lenet.onnx, "--port", 0, "--workers", 2, "--max-delay-ms", 1, "--threads", 1)
    out = Output(proc)
    try:
        url = out.wait_for(r"on (http://127\.0\.0\.1:\d+)").group(1)
        workers = ready_workers(url, proc, out, 2)
        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        out.wait_for(rf"worker process \[{killed}\] died")
        deadline = time.monotonic() + 60
        while True:  # the other worker and the new one both answer, and the killed one is gone
            now = ready_workers(url, proc, out, 2)
            if killed not in now and len(now & workers) == 1:
                break
            assert time.monotonic() < deadline, "".join(out.lines)
        assert now <= set(children(proc.pid))
        for _ in range(8):  # on fresh connections: every one is answered, whichever worker it lands on
            r = httpx.post(
                f"{url}/predict",
                content=digit,
                timeout=60,
                headers={"Content-Type": "image/png", "Connection": "close"},
            )
            assert r.status_code == 200 and r.json()["predictions"][0]["top_k"][0]["label"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out.thread.join(10)
    assert "Traceback" not in "".join(out.lines)


def test_no_class_subclasses_uvicorn():
    """Every package uses uvicorn's public API (Config, Server.run) and subclasses none of its classes:
    serve.run drains through the app factory (serve.worker.serving_app), in one process or in each worker."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    paths = [path for package in ("zoo", "infer", "export", "serve") for path in sorted((root / package).rglob("*.py"))]
    assert any(path.name == "runner.py" for path in paths)
    for path in paths:
        tree = ast.parse(path.read_text())
        from_uvicorn = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "uvicorn"
            for alias in node.names
        } | {  # import uvicorn as uv
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name.split(".")[0] == "uvicorn"
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for base in node.bases:
                    name = ast.unparse(base)
                    assert name.split(".")[0] not in from_uvicorn, (
                        f"{path.relative_to(root)}: class {node.name}({name})"
                    )


def test_serve_run_is_the_library_call(served_lenet, tmp_path):
    """serve.run from Python (a pod's entrypoint): the start-up lines on stderr, SIGINT (Ctrl+C) drains
    and it returns (exit 0, no traceback); its user errors are ServeError, one line."""
    import subprocess
    import sys

    import serve

    with pytest.raises(serve.ServeError, match=r"^\S*nothing-here.onnx: no such run directory or model file$"):
        serve.run(tmp_path / "nothing-here.onnx")
    with pytest.raises(TypeError, match="unknown options: no_such_option"):
        serve.run(served_lenet.onnx, no_such_option=1)
    call = f"serve.run({str(served_lenet.onnx)!r}, port=0, threads=1, log_level='warning')"
    code = f"import serve; {call}; print('returned')"
    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    with watched(proc) as out:
        url = ready_url(out, proc)
        r = httpx.post(f"{url}/predict", content=served_lenet.digits[0][0], headers={"Content-Type": "image/png"})
        assert r.status_code == 200
        proc.send_signal(signal.SIGINT)  # Ctrl+C
        assert proc.wait(timeout=60) == 0
    log = "".join(out.lines)
    assert "onnxruntime" in log.splitlines()[0] and "returned" in log and "Traceback" not in log, log

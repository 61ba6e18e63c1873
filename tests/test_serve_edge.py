"""The server's edge against unlucky and hostile clients, on a real `zoo serve` process and raw sockets:
a client gone mid-body is a 499 and one quiet log line; slow headers are closed and a slow body gets
408 (--timeout-header, --timeout-body); past --max-connections a client gets 503 and is served again
once the slow ones are gone; the open-file soft limit is raised to the hard limit."""

import json
import re
import resource
import socket
import time
from types import SimpleNamespace

import httpx
import pytest
from serving import Output, zoo_serve

from serve.protocol import PredictResponse

TIMEOUT = 2  # --timeout-header and --timeout-body of the server under test, seconds
MAX_CONNECTIONS = 4
EDGE_FLAGS = ["--timeout-header", TIMEOUT, "--timeout-body", TIMEOUT, "--max-connections", MAX_CONNECTIONS]
LOW_SOFT_LIMIT = 256  # the server starts with this open-file soft limit (and raises it)


def _low_soft_limit():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(LOW_SOFT_LIMIT, hard), hard))


@pytest.fixture(scope="module")
def edge(served_lenet):
    proc = zoo_serve(served_lenet.onnx, "--port", 0, "--threads", 1, *EDGE_FLAGS, preexec_fn=_low_soft_limit)
    out = Output(proc)
    try:
        url = out.wait_for(r"on (http://127\.0\.0\.1:\d+)").group(1)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "".join(out.lines)
            time.sleep(0.05)
        name = httpx.get(f"{url}/models").json()["models"][0]["name"]
        yield SimpleNamespace(
            url=url, port=int(url.rsplit(":", 1)[1]), proc=proc, out=out, name=name, digit=served_lenet.digits[0][0]
        )
    finally:
        proc.kill()
        proc.wait(30)


def connect(edge) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", edge.port), timeout=30)
    return sock


def head(method: str, path: str, headers: dict) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """(status, everything the server sent until it closed the connection)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def requests_counted(edge, route: str) -> dict[str, float]:
    """status -> requests counted in /metrics for `route` (POST)."""
    text = httpx.get(f"{edge.url}/metrics").text
    pattern = r'^zoo_requests_total\{method="POST",route="' + re.escape(route) + r'",status="(\d+)"\} (\S+)$'
    return {m.group(1): float(m.group(2)) for m in re.finditer(pattern, text, re.MULTILINE)}


def eventually(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "not within a generous bound"
        time.sleep(0.05)
    return result


def multipart(data: bytes) -> tuple[str, bytes]:
    boundary = "zooedgeboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return f"multipart/form-data; boundary={boundary}", body


def bodies(edge) -> dict:
    """route -> (path, content type, a whole body) for each way a request carries a body."""
    form_type, form = multipart(edge.digit)
    v2 = json.dumps(
        {"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": [edge.digit.decode("latin-1")]}]}
    ).encode()
    return {
        "multipart": ("/predict", "/predict", form_type, form),
        "image": ("/predict", "/predict", "image/png", edge.digit),
        "v2": (f"/v2/models/{edge.name}/infer", "/v2/models/{model}/infer", "application/json", v2),
    }


@pytest.mark.parametrize("kind", ["multipart", "image", "v2"])
def test_a_client_gone_mid_body_is_a_499_and_one_quiet_log_line(edge, kind):
    path, route, content_type, body = bodies(edge)[kind]
    before = requests_counted(edge, route)
    logged = len(edge.out.lines)
    with connect(edge) as sock:
        sock.sendall(head("POST", path, {"Content-Type": content_type, "Content-Length": len(body)}))
        sock.sendall(body[: len(body) // 2])
        time.sleep(0.2)  # the server is reading the body when the client goes
    total = sum(before.values())
    after = eventually(lambda: (c := requests_counted(edge, route)) and sum(c.values()) > total and c)
    assert {s: n - before.get(s, 0) for s, n in after.items() if n != before.get(s, 0)} == {"499": 1}
    time.sleep(0.2)
    lines = edge.out.lines[logged:]
    assert "Traceback" not in "".join(lines)
    assert len([line for line in lines if f"POST {path}" in line]) == 1, "".join(lines)


def test_headers_that_never_end_are_closed_after_the_header_timeout(edge):
    with connect(edge) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        assert sock.recv(1024) == b""  # closed by the server (the socket's own timeout: 30 s)


@pytest.mark.parametrize("kind", ["image", *(pytest.param(k, marks=pytest.mark.slow) for k in ("multipart", "v2"))])
def test_a_body_slower_than_the_body_timeout_gets_408(edge, kind):
    path, route, content_type, body = bodies(edge)[kind]
    before = requests_counted(edge, route)
    with connect(edge) as sock:
        sock.sendall(head("POST", path, {"Content-Type": content_type, "Content-Length": len(body)}))
        sock.sendall(body[:10])  # and no more
        status, answer = read_answer(sock)
    assert status == 408 and b"--timeout-body" in answer and b"connection: close" in answer.lower()
    assert requests_counted(edge, route).get("408", 0) == before.get("408", 0) + 1


def test_past_the_connection_limit_a_client_gets_503_and_is_served_once_the_slow_ones_are_gone(edge):
    slow = [connect(edge) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in slow:
            sock.sendall(b"GET /health HTTP/1.1\r\n")  # headers that never end hold their connections
        eventually(lambda: httpx.get(f"{edge.url}/health").status_code == 503)  # /health counts too
        refused = httpx.get(f"{edge.url}/models")
        assert refused.status_code == 503 and refused.headers["connection"] == "close"
        for sock in slow:  # the header timeout closes each of them
            assert sock.recv(1024) == b""
    finally:
        for sock in slow:
            sock.close()
    assert eventually(lambda: httpx.get(f"{edge.url}/health").status_code == 200)
    answer = httpx.post(f"{edge.url}/predict", content=edge.digit, headers={"Content-Type": "image/png"})
    assert answer.status_code == 200
    PredictResponse.model_validate_json(answer.content, strict=True)  # the one answer, from a `zoo serve` process


def test_the_open_file_soft_limit_is_raised_to_the_hard_limit(edge):
    with open(f"/proc/{edge.proc.pid}/limits") as f:
        soft, hard = re.search(r"^Max open files\s+(\S+)\s+(\S+)", f.read(), re.MULTILINE).groups()
    assert soft == hard and soft != str(LOW_SOFT_LIMIT)
    assert "Traceback" not in "".join(edge.out.lines)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_docs_load_everything_from_the_server_itself(edge, page):
    html = httpx.get(edge.url + page).text
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)
    assert urls and not re.search(r"(https?:)?//", html.replace("http://www.w3.org", "")), html
    kinds = set()
    for url in urls:
        assert url.startswith("/"), url
        answer = httpx.get(edge.url + url)
        assert answer.status_code == 200, url
        kinds.add(answer.headers["content-type"].split(";")[0])
    assert {"text/javascript", "application/json"} <= kinds and (page == "/redoc" or "text/css" in kinds)

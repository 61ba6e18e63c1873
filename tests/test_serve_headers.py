"""The size of a request's headers on a real server (127.0.0.1, random port, the connection options
`zoo serve` runs with): a header block past --max-header-kb is answered 431 and the connection closed
at once, not buffered until the header timeout; a request with a few KiB of headers is served."""

import socket

import numpy as np
import pytest
from serving import running

import infer
from serve.app import create_app
from serve.worker import connection_options

MAX_HEADER_KB = 64
TIMEOUT_HEADER = 30.0  # far longer than the test waits for an answer: a 431 must not wait for it
WAIT = 5.0  # seconds a test waits for an answer (the server answers in milliseconds)


@pytest.fixture(scope="module")
def server(served_lenet):
    predictor = infer.load(served_lenet.onnx, backend="onnxruntime", threads=1)
    options = connection_options(TIMEOUT_HEADER, None, MAX_HEADER_KB)
    with running(create_app(predictor), **options) as url:
        yield int(url.rsplit(":", 1)[1])


def exchange(port: int, head: bytes) -> bytes:
    """Send `head` (what may be a request's line and headers) and return what the server answers until
    it closes the connection or WAIT seconds pass."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        try:
            sock.sendall(head)
        except (BrokenPipeError, ConnectionResetError):  # it may close before reading all of it
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and b"connection: close" not in answer.lower():
                    break  # a kept-alive answer: its head is what the test reads
        except ConnectionResetError:
            pass
        return answer


def status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def test_a_one_megabyte_header_line_is_refused_at_once(server):
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    answer = exchange(server, head)  # within WAIT seconds, not the header timeout's 30
    assert status(answer) == 431
    assert b"connection: close" in answer.lower()
    assert b"request headers over" in answer


def test_ten_thousand_small_headers_are_refused(server):
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))
    answer = exchange(server, b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert status(answer) == 431


def test_a_header_line_that_never_ends_is_refused_before_the_timeout(server):
    answer = exchange(server, b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEADER_KB * 1024 + 1))
    assert status(answer) == 431


def test_a_request_with_a_few_kib_of_headers_is_served(server):
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(40))  # about 4.5 KiB
    answer = exchange(server, b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert status(answer) == 200


def test_a_large_body_after_small_headers_is_no_header(server):
    body = b"x" * (512 * 1024)  # eight times the header limit, in the same packets as the headers
    head = b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    answer = exchange(server, head + body)
    assert status(answer) != 431


def test_a_body_still_arriving_after_an_early_answer_is_no_header(served_lenet):
    """A body over --max-body-mb is answered 413 as soon as it passes the limit, while the client is still
    sending it; the rest of it (random bytes, with blank lines by chance) is not a header block, and the
    connection serves the next request."""
    predictor = infer.load(served_lenet.onnx, backend="onnxruntime", threads=1)
    options = connection_options(TIMEOUT_HEADER, None, MAX_HEADER_KB)
    body = np.random.default_rng(0).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    assert body.count(b"\n\n") > 0
    with running(create_app(predictor, max_body_mb=1 / 16), **options) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n"
            sock.sendall(head % len(body) + body + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            answers = b""
            while answers.count(b"HTTP/1.1 ") < 2 or not answers.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answers += chunk
    statuses = [int(part.split(b" ", 1)[0]) for part in answers.split(b"HTTP/1.1 ")[1:]]
    assert statuses == [413, 200], answers[:500]

"""The limits on a request's headers: their time and their size.

The header timeout: a connection whose request headers do not arrive within `timeout` seconds (of the
connection opening, or of the answer before) is closed, so slow clients cannot hold connections (and
file descriptors) forever. uvicorn times out idle keep-alive connections only; this is handed to it as
its HTTP protocol (`uvicorn.Config(http=functools.partial(HeaderLimits, timeout=10, max_bytes=65536))`, the
documented way to choose one) and wraps uvicorn's own protocol (httptools or h11, as uvicorn picks), delegating to
it: it subclasses nothing of uvicorn's.

How the wrapper learns that a request's headers are complete: uvicorn starts each request's ASGI task
from inside `data_received`, so the task inherits `CONNECTION` (set here around each call) and the app's
edge (serve.app._Edge) marks the connection busy (`request_started`) and waiting again once it has
answered (`request_done`): two attribute writes per request, and one timer per connection that fires
at most once per `timeout` seconds.

The header size: a request whose header block (request line and headers) runs past `max_bytes` is
answered 431 (Request Header Fields Too Large, Connection: close) and the connection closed, before the
bytes past the limit reach uvicorn's parser, so a connection buffers about `max_bytes` of headers at
most (uvicorn keeps them all until the header timeout). While a connection waits for a request's
headers, each chunk it receives is counted and searched (in C) for the blank line that ends them; once
found, nothing more is looked at until the request is answered. A body still arriving after its answer
(an early 413) is uvicorn's to discard, not a header (its request cycle says so). Without httptools
uvicorn runs h11, which bounds the block itself (`h11_max_incomplete_event_size`, set to `max_bytes`
by serve.worker.connection_options) and answers 400. (A first version ran a second httptools parser
over every byte: 0.76-0.89x the requests a second; this costs a length and a `find` per chunk.)
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging

log = logging.getLogger("zoo.serve")

CONNECTION: contextvars.ContextVar[HeaderLimits | None] = contextvars.ContextVar("zoo_connection", default=None)


def _blank_line(data: bytes) -> int:
    """Where the blank line that ends a header block starts in `data` (-1: none), CRLF or bare LF."""
    crlf, lf = data.find(b"\n\r\n"), data.find(b"\n\n")
    return crlf if lf < 0 or 0 <= crlf < lf else lf


class HeaderLimits(asyncio.Protocol):
    """uvicorn's HTTP protocol with a deadline on each request's headers and a cap on their bytes (see the
    module's doc)."""

    def __init__(self, config, server_state, app_state, _loop=None, *, timeout: float, max_bytes: int):
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        self.inner = AutoHTTPProtocol(config=config, server_state=server_state, app_state=app_state, _loop=_loop)
        self.max_bytes = max_bytes
        self.counted = 0  # bytes of the header block awaited so far
        self.tail = b""  # the last bytes counted: a blank line may straddle two chunks
        self.headers_seen = False  # the block ended within the limit: nothing counted until the answer
        self.loop = _loop or asyncio.get_event_loop()
        self.timeout = timeout
        self.transport = None
        self.waiting_since: float | None = None  # when it began waiting for headers; None while answering
        self.timer: asyncio.TimerHandle | None = None

    def request_started(self) -> None:
        self.waiting_since = None

    def request_done(self) -> None:
        self.waiting_since = self.loop.time()
        self.counted, self.tail, self.headers_seen = 0, b"", False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.waiting_since = self.loop.time()
        self.timer = self.loop.call_later(self.timeout, self._check)
        self.inner.connection_made(transport)

    def _check(self) -> None:
        if self.transport.is_closing():
            return
        since, now = self.waiting_since, self.loop.time()
        if since is not None and now - since >= self.timeout:
            peer = self.transport.get_extra_info("peername")
            log.info(
                "%s closed: no complete request headers within %g s (--timeout-header)",
                f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "-",
                self.timeout,
            )
            self.transport.close()
            return
        self.timer = self.loop.call_later(self.timeout if since is None else since + self.timeout - now, self._check)

    def data_received(self, data: bytes) -> None:
        if self.waiting_since is not None and not self.headers_seen and self._over(data):
            self._refuse_headers()
            return
        token = CONNECTION.set(self)
        try:
            self.inner.data_received(data)
        finally:
            CONNECTION.reset(token)

    def _over(self, data: bytes) -> bool:
        """Count `data` as header bytes; True once the block runs past the limit without ending."""
        if self.counted == 0 and self._body_pending():
            return False
        start = self.counted
        self.counted += len(data)
        end = _blank_line(self.tail + data[:3]) if self.tail else -1  # straddling the two chunks
        if end >= 0:
            end -= len(self.tail)
        else:
            end = _blank_line(data)
        if end >= 0:
            self.headers_seen = True
            return start + end > self.max_bytes
        self.tail = data[-3:]
        return self.counted > self.max_bytes

    def _body_pending(self) -> bool:
        """Whether the last request's body is still arriving (answered early, e.g. 413): uvicorn's request
        cycle, which discards those bytes, says so (`more_body`, in its httptools and h11 protocols)."""
        cycle = getattr(self.inner, "cycle", None)
        return bool(getattr(cycle, "more_body", False)) and bool(getattr(cycle, "response_complete", False))

    def _refuse_headers(self) -> None:
        """431 + Connection: close, then close (with a request being answered on this connection, a
        pipelined one behind it: close only, not to write into the middle of that answer)."""
        if self.transport.is_closing():
            return
        peer = self.transport.get_extra_info("peername")
        limit = self.max_bytes
        log.info(
            "%s closed: request headers over %d bytes (--max-header-kb): 431",
            f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "-",
            limit,
        )
        if self.waiting_since is not None:
            body = json.dumps({"error": f"request headers over {limit:,} bytes (--max-header-kb)"}).encode()
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
            )
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

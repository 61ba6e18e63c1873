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
most (uvicorn keeps them all until the header timeout). The bytes are counted by a parser of our own
(`_HeaderBytes`, httptools, which frames requests as uvicorn's does), fed the same bytes first: it knows
where each header block begins and ends, bodies and pipelined requests included. Without httptools
uvicorn runs h11, which bounds the block itself (`h11_max_incomplete_event_size`, set to `max_bytes`
by serve.worker.connection_options) and answers 400.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging

log = logging.getLogger("zoo.serve")

CONNECTION: contextvars.ContextVar[HeaderLimits | None] = contextvars.ContextVar("zoo_connection", default=None)


def _header_bytes(max_bytes: int) -> _HeaderBytes | None:
    """The counter of header bytes, where uvicorn parses with httptools (None: it runs h11, which bounds them)."""
    try:
        import httptools  # noqa: F401  (uvicorn's choice too: uvicorn.protocols.http.auto)
    except ImportError:
        return None
    return _HeaderBytes(max_bytes)


class _HeaderBytes:
    """The bytes of the header block of the request arriving on one connection, counted by an httptools
    parser of its own: bytes fed while a request has begun and its headers are not complete. The bytes
    are fed in steps of at most `step`, so the count is exact to a step (a block begins or ends within
    one), and no more than a step is read past the limit."""

    def __init__(self, max_bytes: int):
        import httptools

        self.limit = max_bytes
        self.step = max(1024, min(16384, max_bytes // 8))
        self.parser = httptools.HttpRequestParser(self)
        self.errors = (httptools.HttpParserError, httptools.HttpParserUpgrade)
        self.in_headers = False
        self.count = 0
        self.done = False  # the parser refused the stream (uvicorn's answers it 400): nothing more to count

    def on_message_begin(self) -> None:
        self.in_headers, self.count = True, 0

    def on_headers_complete(self) -> None:
        self.in_headers = False

    def over(self, data: bytes) -> bool:
        """Count `data`, the connection's next bytes: True once a header block runs past the limit."""
        if self.done:
            return False
        view = memoryview(data)
        for start in range(0, len(view), self.step):
            piece = view[start : start + self.step]
            try:
                self.parser.feed_data(piece)
            except self.errors:
                self.done = True
                return False
            if self.in_headers:
                self.count += len(piece)
                if self.count > self.limit:
                    return True
        return False


class HeaderLimits(asyncio.Protocol):
    """uvicorn's HTTP protocol with a deadline on each request's headers and a cap on their bytes (see the
    module's doc)."""

    def __init__(self, config, server_state, app_state, _loop=None, *, timeout: float, max_bytes: int):
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        self.inner = AutoHTTPProtocol(config=config, server_state=server_state, app_state=app_state, _loop=_loop)
        self.header_bytes = _header_bytes(max_bytes)
        self.loop = _loop or asyncio.get_event_loop()
        self.timeout = timeout
        self.transport = None
        self.waiting_since: float | None = None  # when it began waiting for headers; None while answering
        self.timer: asyncio.TimerHandle | None = None

    def request_started(self) -> None:
        self.waiting_since = None

    def request_done(self) -> None:
        self.waiting_since = self.loop.time()

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
        if self.header_bytes is not None and self.header_bytes.over(data):
            self._refuse_headers()
            return
        token = CONNECTION.set(self)
        try:
            self.inner.data_received(data)
        finally:
            CONNECTION.reset(token)

    def _refuse_headers(self) -> None:
        """431 + Connection: close, then close (with a request being answered on this connection, a
        pipelined one behind it: close only, not to write into the middle of that answer)."""
        if self.transport.is_closing():
            return
        peer = self.transport.get_extra_info("peername")
        limit = self.header_bytes.limit
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

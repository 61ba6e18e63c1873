"""The header timeout: a connection whose request headers do not arrive within `timeout` seconds (of the
connection opening, or of the answer before) is closed, so slow clients cannot hold connections (and
file descriptors) forever. uvicorn times out idle keep-alive connections only; this is handed to it as
its HTTP protocol (`uvicorn.Config(http=functools.partial(HeaderTimeout, timeout=10))`, the documented
way to choose one) and wraps uvicorn's own protocol (httptools or h11, as uvicorn picks), delegating to
it: it subclasses nothing of uvicorn's.

How the wrapper learns that a request's headers are complete: uvicorn starts each request's ASGI task
from inside `data_received`, so the task inherits `CONNECTION` (set here around each call) and the app's
edge (serve.app._Edge) marks the connection busy (`request_started`) and waiting again once it has
answered (`request_done`): two attribute writes per request, and one timer per connection that fires
at most once per `timeout` seconds.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging

log = logging.getLogger("zoo.serve")

CONNECTION: contextvars.ContextVar[HeaderTimeout | None] = contextvars.ContextVar("zoo_connection", default=None)


class HeaderTimeout(asyncio.Protocol):
    """uvicorn's HTTP protocol with a deadline on each request's headers (see the module's doc)."""

    def __init__(self, config, server_state, app_state, _loop=None, *, timeout: float):
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        self.inner = AutoHTTPProtocol(config=config, server_state=server_state, app_state=app_state, _loop=_loop)
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
        token = CONNECTION.set(self)
        try:
            self.inner.data_received(data)
        finally:
            CONNECTION.reset(token)

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

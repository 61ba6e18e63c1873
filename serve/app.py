"""The HTTP app: `create_app(predictor, **options)` -> a FastAPI app that serves one Predictor.

    import infer, uvicorn
    from serve.app import create_app
    app = create_app(infer.load("runs/lenet5-..."), max_batch_size=32, max_delay_ms=5)
    uvicorn.run(app, host="127.0.0.1", port=8000)

The options and their defaults: serve/options.py. `create_app` builds the app's Service (serve/service.py:
the model, the batcher, readiness, metrics, the operations) and wires one router per concern
(serve/routes/: /predict; the KServe v2 / Open Inference Protocol under /v2; health, models, metrics,
the page at / and the docs). Nothing global: everything the app needs is passed in or built here.

The edge of the app (one ASGI middleware, `_Edge`) does what must happen before routing: draining
(requests are still answered, with `Connection: close`, so a kept-alive client reconnects, to another
server once a load balancer has dropped this one), the API key (401), the body size (413, by
Content-Length first and by counting the bytes of a chunked body as they are read) and the body's time
(408 past timeout_body); it counts every request in the metrics and logs one line for it (a client gone
before its answer: 499, one line, no traceback), and marks the connection busy for
serve/connection.py's header timeout. POST /predict with an image body goes from the edge straight to
`routes.predict.answer_image` (the hot path: no routing or validation; the answer is
`Service.classify`'s, as the routed /predict gives it).
Every bad input is a 4xx JSON `{"error": "..."}`; anything unexpected is a 500 in the same shape, and
the server carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from .connection import CONNECTION
from .options import ServeOptions
from .routes import BodyTooLarge, error, kserve, ops, predict
from .service import Service

log = logging.getLogger("zoo.serve")

HEALTH_PATHS = frozenset({"/health", "/v2/health/live", "/v2/health/ready"})  # and /v2/models/{name}/ready
OPEN_PATHS = frozenset({"/"})  # open without the API key: the page, which asks for the key (it holds no data)


class _BodyTimeout(HTTPException):
    def __init__(self, seconds: float):
        super().__init__(
            408, f"the request body did not arrive within {seconds:g} s (--timeout-body)", {"Connection": "close"}
        )


class ZooApp(FastAPI):
    """A FastAPI app with `_Edge` in front of all of it (FastAPI's own middleware included)."""

    edge: "_Edge"

    async def __call__(self, scope, receive, send):
        await self.edge(scope, receive, send)


class _Edge:
    """Pure ASGI middleware in front of the app: drain, auth, body size and time, metrics and the request
    log, the connection's bookkeeping for serve/connection.py; POST /predict with an image body goes
    straight to routes.predict.answer_image (the hot path), everything else to FastAPI's router.

    A request's body must arrive within `timeout_body` seconds of its first read (408 otherwise): each
    request's `receive` is a `_Body`, and one timer per app (`_sweep`, running while bodies are being
    read) cancels the read of a body past its deadline, which `_Body` turns into the 408. A client gone
    before its answer is a 499 (Starlette's ClientDisconnect is answered 499 too: see create_app)."""

    def __init__(self, app, *, service: Service, routes: list, timeout_body: float | None = None):
        self.app = app
        self.routes = routes  # the app's routes: to label requests refused here by their route too
        self.predict_route = next(r for r in routes if getattr(r, "path", None) == "/predict")
        self.service = service
        self.max_body = service.options.max_body
        self.key = service.options.api_key.encode() if service.options.api_key else None
        self.timeout_body = timeout_body
        self.reading: set[_Body] = set()  # bodies being read, watched for their deadline
        self.sweeping: asyncio.TimerHandle | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500  # what an exception that escapes the app becomes
        answered = False
        connection = CONNECTION.get()  # set where `zoo serve` runs the header timeout (serve/connection.py)
        if connection is not None:
            connection.request_started()

        async def send_status(message):
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                if self.service.draining:  # the client's next request opens a connection, to another server
                    message["headers"] = [*message.get("headers", ()), (b"connection", b"close")]
            await send(message)

        body = _Body(self, receive)
        try:
            headers = dict(scope["headers"])
            refusal = self._refusal(scope, headers)
            if refusal is not None:
                await refusal(scope, receive, send_status)
            elif (
                scope["path"] == "/predict"
                and scope["method"] == "POST"
                and headers.get(b"content-type", b"").lstrip().lower().startswith(b"image/")
            ):
                scope["route"] = self.predict_route
                await predict.answer_image(self.service, scope, body, send_status)
            else:
                await self.app(scope, body, send_status)
            if not answered:
                status = 499  # the client went away before its answer (nginx's code for it)
        finally:
            self.reading.discard(body)
            if connection is not None:
                connection.request_done()
            seconds = time.perf_counter() - started
            self.service.metrics.request(scope["method"], self._route(scope), status, seconds)
            if log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                ms = round(seconds * 1000, 1)
                log.info(
                    "%s %s %s %d %.1f ms",
                    f"{client[0]}:{client[1]}" if client else "-",
                    scope["method"],
                    scope["path"],
                    status,
                    ms,
                    extra={"method": scope["method"], "path": scope["path"], "status": status, "duration_ms": ms},
                )

    def _route(self, scope) -> str:
        """The route's path template (bounded label values, whatever paths clients send)."""
        route = scope.get("route")
        if route is None:
            route = next((r for r in self.routes if r.matches(scope)[0] != Match.NONE), None)
        return getattr(route, "path", "unmatched")

    def _authorized(self, headers: dict) -> bool:
        """`Authorization: Bearer KEY`, the scheme in any case (RFC 7235), the key compared in constant time."""
        scheme, _, key = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(key.strip(b" "), self.key)

    def _refusal(self, scope, headers: dict) -> JSONResponse | None:
        path = scope["path"]
        if path in HEALTH_PATHS or (path.endswith("/ready") and path.startswith("/v2/models/")):
            return None  # open to probes, whatever the API key
        if self.key is not None and path not in OPEN_PATHS and not self._authorized(headers):
            return error(
                401,
                "missing or wrong API key: send the header `Authorization: Bearer KEY`",
                {"WWW-Authenticate": "Bearer"},
            )
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return error(400, f"Content-Length {length.decode('latin-1')!r} is not a number")
            if n > self.max_body:
                return error(413, str(BodyTooLarge(self.max_body).detail))
        return None

    def watch(self, body: _Body) -> None:
        """Watch `body` for its deadline until it is read (or its request ends)."""
        self.reading.add(body)
        if self.sweeping is None:
            self.sweeping = asyncio.get_running_loop().call_later(min(1.0, self.timeout_body / 4), self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        for body in [b for b in self.reading if b.waiting and now >= b.deadline]:
            self.reading.discard(body)
            body.expired = True
            body.task.cancel()
        self.sweeping = (
            asyncio.get_running_loop().call_later(min(1.0, self.timeout_body / 4), self._sweep)
            if self.reading
            else None
        )


class _Body:
    """The `receive` of one request as the edge hands it on: counts the body's bytes (413 past the
    limit) and, with a body timeout, is watched from its first read until the body is complete (408)."""

    __slots__ = ("deadline", "edge", "expired", "receive", "seen", "task", "waiting")

    def __init__(self, edge: _Edge, receive):
        self.edge, self.receive = edge, receive
        self.seen = 0
        self.task: asyncio.Task | None = None
        self.waiting = self.expired = False

    async def __call__(self):
        edge = self.edge
        if self.task is None and edge.timeout_body is not None:
            self.task = asyncio.current_task()
            self.deadline = time.monotonic() + edge.timeout_body
            edge.watch(self)
        self.waiting = True
        try:
            message = await self.receive()
        except asyncio.CancelledError:
            if not self.expired:
                raise
            self.task.uncancel()  # the cancellation was the deadline's, and it ends here as a 408
            raise _BodyTimeout(edge.timeout_body) from None
        finally:
            self.waiting = False
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > edge.max_body:
                raise BodyTooLarge(edge.max_body)
            if message.get("more_body"):
                return message
        edge.reading.discard(self)
        return message


def _answer_errors(app: FastAPI) -> None:
    """Every error as JSON {"error": ...}."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        message = exc.detail
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.url.path} (see /docs)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path} (see /docs)"
        return error(exc.status_code, str(message), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect):
        return Response(status_code=499)  # nobody reads it; the edge counts and logs it as one 499 line

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error(500, f"internal server error ({type(exc).__name__}); the server log has the details")


def create_app(predictor: Any, **options: Any) -> FastAPI:
    """A FastAPI app serving `predictor` (an infer.Predictor: `.card`, `.predict`, `.backend`, `.name`)
    with `options`, serve.options.ServeOptions' fields (a name it does not have: TypeError)."""
    opts = ServeOptions(**options)
    service = Service(predictor, opts)
    card = predictor.card

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with service.running():
            yield

    app = ZooApp(
        title=f"cnnzoo: {service.name}",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description=f"{card.architecture} ({card.num_classes} classes, input "
        f"{'x'.join(map(str, card.input_shape))}) on {predictor.backend}. "
        "KServe v2 / Open Inference Protocol under /v2; images to /predict.",
    )
    app.state.zoo = service
    _answer_errors(app)
    routers = (predict.router, kserve.router, ops.router)
    for router in routers:  # their routes as the app's own: include_router would add a level of routing
        app.router.routes.extend(router.routes)  # (measured: ~15 us a request) for nothing (no prefix)
    kserve.add_request_schema(app)
    app.edge = _Edge(
        functools.partial(FastAPI.__call__, app),
        service=service,
        routes=[route for router in routers for route in router.routes],
        timeout_body=opts.timeout_body,
    )
    return app

"""The HTTP app: `create_app(predictor, ...)` -> a FastAPI app that serves one Predictor.

    import infer, uvicorn
    from serve.app import create_app
    app = create_app(infer.load("runs/lenet5-..."), max_batch_size=32, max_delay_ms=5)
    uvicorn.run(app, host="127.0.0.1", port=8000)

Endpoints: `POST /predict` (images -> top-k labels), the KServe v2 / Open Inference Protocol under `/v2`
(see serve/protocol.py), `GET /health`, `GET /models`, `GET /metrics` (Prometheus), `/docs`, and `GET /`
(a page that classifies one image). Everything the app needs is passed in or built here: no global state.

The edge of the app (one ASGI middleware, `_Edge`) checks what must be checked before any handler runs:
draining (503), the API key (401), the body size (413, by Content-Length first and by counting the bytes
of a chunked body as they are read) and the body's time (408 past timeout_body); it counts every request
in the metrics and logs one line for it (a client gone before its answer: 499, one line, no traceback).
The header timeout and the connection limit live where connections do: serve/connection.py, serve/worker.py.
Inference goes through the dynamic batcher (serve/batcher.py) on one worker thread; image decoding and
request parsing run on a small thread pool, so the event loop never waits on CPU work.
Every bad input is a 4xx JSON `{"error": "..."}`; anything unexpected is a 500 in the same shape, and
the server carries on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hmac
import importlib.resources
import json
import logging
import os
import pathlib
import time
import urllib.parse
import zlib

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from zoo.data.preprocess import DEFAULT_MAX_PIXELS, ImageError, open_image, preprocess

from . import protocol
from .batcher import Batcher, BatcherBusy, BatcherClosed
from .connection import CONNECTION
from .metrics import Metrics

log = logging.getLogger("zoo.serve")

HEALTH_PATHS = frozenset({"/health", "/v2/health/live", "/v2/health/ready"})
OPEN_PATHS = frozenset({"/"})  # open without the API key: the page, which asks for the key (it holds no data)
SERVER_NAME = "cnnzoo"
EXTENSIONS = ["binary_tensor_data"]  # the KServe v2 / Triton extensions this server speaks
ERROR_RESPONSES = {status: {"model": protocol.ErrorResponse} for status in (400, 401, 404, 413, 415, 503)}
INLINE_PIXELS = 128 * 128  # images up to this size decode on the event loop: quicker than a thread hop
MAX_IMAGES = 256  # images in one request: 8 batches of the default 32 (see create_app)
IMAGE_HELP = "send an image as multipart/form-data (field 'file') or as the request body with an image/* content type"


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class ServeState:
    """What the handlers share: the model, the batcher, the metrics, and whether it is ready/draining."""

    def __init__(self, predictor, name: str, batcher: Batcher, metrics: Metrics):
        self.predictor = predictor
        self.name = name
        self.batcher = batcher
        self.metrics = metrics
        self.ready = False  # set once the warm-up has run
        self.draining = False

    def start_draining(self) -> None:
        """Refuse new requests (503) from now on; those in flight finish. Called on SIGTERM."""
        if not self.draining:
            log.info("draining: new requests are refused, requests in flight finish")
        self.draining = True


class _BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body is over the limit of {limit:,} bytes (--max-body-mb)")


class _BodyTimeout(HTTPException):
    def __init__(self, seconds: float):
        super().__init__(408, f"the request body did not arrive within {seconds:g} s (--timeout-body)",
                         {"Connection": "close"})


class ZooApp(FastAPI):
    """A FastAPI app with `_Edge` in front of all of it (FastAPI's own middleware included)."""

    edge: "_Edge"

    async def __call__(self, scope, receive, send):
        await self.edge(scope, receive, send)


class _Edge:
    """Pure ASGI middleware in front of the app: drain, auth, body size and time, metrics and the request
    log, and the hot path (POST /predict with an image body) answered right here.

    A request's body must arrive within `timeout_body` seconds of its first read (408 otherwise): each
    request's `receive` is a `_Body`, and one timer per app (`_sweep`, running while bodies are being
    read) cancels the read of a body past its deadline, which `_Body` turns into the 408. A client gone
    before its answer is a 499 (Starlette's ClientDisconnect is answered 499 too: see create_app)."""

    def __init__(self, app, *, state: ServeState, routes: list, api_key: str | None, max_body: int,
                 predict_image, timeout_body: float | None = None):
        self.app = app
        self.routes = routes  # the app's routes: to label requests refused here by their route too
        self.predict_route = next(r for r in routes if getattr(r, "path", None) == "/predict")
        self.predict_image = predict_image  # POST /predict with an image body, answered here (see create_app)
        self.state = state
        self.max_body = max_body
        self.key = api_key.encode() if api_key else None
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
            await send(message)

        body = _Body(self, receive)
        try:
            headers = dict(scope["headers"])
            refusal = self._refusal(scope, headers)
            if refusal is not None:
                await refusal(scope, receive, send_status)
            elif (scope["path"] == "/predict" and scope["method"] == "POST"
                  and headers.get(b"content-type", b"").lstrip().lower().startswith(b"image/")):
                scope["route"] = self.predict_route
                await self.predict_image(scope, body, send_status)
            else:
                await self.app(scope, body, send_status)
            if not answered:
                status = 499  # the client went away before its answer (nginx's code for it)
        finally:
            self.reading.discard(body)
            if connection is not None:
                connection.request_done()
            seconds = time.perf_counter() - started
            self.state.metrics.request(scope["method"], self._route(scope), status, seconds)
            if log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                log.info("%s %s %s %d %.1f ms", f"{client[0]}:{client[1]}" if client else "-", scope["method"],
                         scope["path"], status, seconds * 1000)

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
        if path in HEALTH_PATHS:
            return None
        if self.state.draining:
            return error(503, "the server is shutting down", {"Connection": "close"})
        if self.key is not None and path not in OPEN_PATHS and not self._authorized(headers):
            return error(401, "missing or wrong API key: send the header `Authorization: Bearer KEY`",
                         {"WWW-Authenticate": "Bearer"})
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return error(400, f"Content-Length {length.decode('latin-1')!r} is not a number")
            if n > self.max_body:
                return error(413, str(_BodyTooLarge(self.max_body).detail))
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
        self.sweeping = (asyncio.get_running_loop().call_later(min(1.0, self.timeout_body / 4), self._sweep)
                         if self.reading else None)


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
                raise _BodyTooLarge(edge.max_body)
            if message.get("more_body"):
                return message
        edge.reading.discard(self)
        return message


def _page() -> str:
    return importlib.resources.files("serve").joinpath("static/index.html").read_text(encoding="utf-8")


DOCS_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
              "redoc.standalone.js": "text/javascript", "favicon.png": "image/png"}


def _docs_files() -> pathlib.Path | None:
    """The folder of Swagger UI's and ReDoc's files as the fastapi-offline package keeps them (the
    `server` extra installs it), so /docs works without internet; None where it is not installed."""
    try:
        folder = pathlib.Path(str(importlib.resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None
    return folder if all((folder / name).is_file() for name in DOCS_FILES) else None


def _top(logits: np.ndarray, k: int) -> tuple[list[list[int]], list[list[float]]]:
    """Softmax over each row (float64), and the indices of its k largest, highest first (ties: lower index)."""
    p = logits.astype(np.float64)
    p -= p.max(axis=1, keepdims=True)
    np.exp(p, out=p)
    p /= p.sum(axis=1, keepdims=True)
    return np.argsort(-p, axis=1, kind="stable")[:, :k].tolist(), p.tolist()


def top_predictions(logits: np.ndarray, class_names: list[str], k: int) -> list[list[dict]]:
    """[N, classes] logits -> per row the k most likely {"label", "index", "score"} (softmax), best first."""
    top, p = _top(logits, k)
    return [[{"label": class_names[i], "index": i, "score": row[i]} for i in order] for order, row in zip(top, p)]


class _Answers:
    """The /predict answer as JSON bytes, written directly: the same text `_json` gives for
    {"model": name, "predictions": top_predictions(...)} (a test holds the two equal), with the label
    strings encoded once instead of per request; it is the hot path of the server."""

    def __init__(self, name: str, class_names: list[str]):
        self.head = b'{"model":' + _json(name) + b',"predictions":'
        self.labels = [_json(c).decode() for c in class_names]

    def encode(self, logits: np.ndarray, k: int) -> bytes:
        protocol.check_finite(logits)  # a NaN score is not JSON: NonFiniteOutput, as v2 answers it
        top, p = _top(logits, k)
        rows = ["[" + ",".join(f'{{"label":{self.labels[i]},"index":{i},"score":{row[i]!r}}}' for i in order) + "]"
                for order, row in zip(top, p)]
        body = rows[0] if len(rows) == 1 else "[" + ",".join(rows) + "]"
        return self.head + body.encode() + b"}"


async def decode(data: bytes, card, max_pixels: int | None, pool: concurrent.futures.Executor) -> np.ndarray:
    """One encoded image -> the model's input, as zoo.data.preprocess.preprocess gives it. The header is
    read here; an image of at most INLINE_PIXELS decodes on the spot (cheaper than a hop to a thread),
    a larger one on `pool`, so the event loop never waits on a big decode."""
    img = open_image(data, max_pixels=max_pixels, load=False)
    if img.width * img.height <= INLINE_PIXELS:
        return preprocess(img, card, max_pixels=max_pixels)
    return await asyncio.get_running_loop().run_in_executor(
        pool, functools.partial(preprocess, img, card, max_pixels=max_pixels))


def _json(payload) -> bytes:
    """JSON bytes as Starlette's JSONResponse writes them."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _query_int(scope, key: str, *, default: int, low: int, high: int) -> int:
    """An integer query parameter, checked as FastAPI's Query(ge=low, le=high) would (422 otherwise)."""
    values = [v for k, v in urllib.parse.parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
              if k == key] if scope["query_string"] else []
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise HTTPException(422, f"query.{key}: Input should be a valid integer, unable to parse string as an "
                                 "integer") from None
    if value < low:
        raise HTTPException(422, f"query.{key}: Input should be greater than or equal to {low}")
    if value > high:
        raise HTTPException(422, f"query.{key}: Input should be less than or equal to {high}")
    return value


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """A gzip or deflate request body (tritonclient's request compression), inflated to at most `limit`."""
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise HTTPException(415, f"Content-Encoding {encoding!r} is not supported (use gzip, deflate or none)")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as e:
        raise HTTPException(400, f"body is not valid {encoding} data ({e})") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise _BodyTooLarge(limit)
    return out


def add_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc, their scripts and styles served from /docs/files/ (see _docs_files)."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import FileResponse

    folder = _docs_files()

    def urls(request: Request) -> dict[str, str]:
        root = request.scope.get("root_path", "").rstrip("/")
        if folder is None:  # fastapi-offline is not installed: FastAPI's own (CDN) addresses
            return {"openapi_url": root + app.openapi_url}
        files = f"{root}/docs/files/"
        return {"openapi_url": root + app.openapi_url, "favicon": files + "favicon.png",
                "swagger_js": files + "swagger-ui-bundle.js", "swagger_css": files + "swagger-ui.css",
                "redoc_js": files + "redoc.standalone.js"}

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request):
        u = urls(request)
        extra = {} if folder is None else {"swagger_js_url": u["swagger_js"], "swagger_css_url": u["swagger_css"],
                                           "swagger_favicon_url": u["favicon"]}
        return get_swagger_ui_html(openapi_url=u["openapi_url"], title=f"{app.title}: API docs", **extra)

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request):
        u = urls(request)
        extra = {} if folder is None else {"redoc_js_url": u["redoc_js"], "redoc_favicon_url": u["favicon"],
                                           "with_google_fonts": False}
        return get_redoc_html(openapi_url=u["openapi_url"], title=f"{app.title}: API docs", **extra)

    @app.get("/docs/files/{name}", include_in_schema=False)
    async def docs_file(name: str):
        if folder is None or name not in DOCS_FILES:
            raise HTTPException(404, f"no such file: /docs/files/{name}")
        return FileResponse(folder / name, media_type=DOCS_FILES[name])


def create_app(predictor, *, max_batch_size: int = 32, max_delay_ms: float = 5.0, max_body_mb: float = 16.0,
               max_image_pixels: int | None = DEFAULT_MAX_PIXELS, api_key: str | None = None,
               model_name: str | None = None, max_queue: int = 1024, decode_threads: int | None = None,
               max_images: int = MAX_IMAGES, timeout_body: float | None = 60.0) -> FastAPI:
    """A FastAPI app serving `predictor` (an infer.Predictor: `.card`, `.predict`, `.backend`, `.name`).

    max_batch_size / max_delay_ms: the dynamic batcher's limits. max_body_mb: larger request bodies
    are refused (413). max_image_pixels: larger images are refused as decompression bombs (400).
    api_key: if set, `Authorization: Bearer KEY` is required on everything but the health endpoints
    and the page at / (which asks for the key). timeout_body: seconds a request's body may take to
    arrive, from its first read (408 past them; None: no limit).
    model_name: the name in URLs and answers (default: the predictor's). max_queue: requests that may
    wait for the model before new ones get 503. decode_threads: threads that decode images and parse
    v2 bodies (default: CPU count, at most 4). max_images: images in one request (/predict files, v2
    N), more are refused (413) before any is decoded; a request of several images runs max_batch_size
    at a time, so the memory it takes is bounded by the batch, not by the request.
    """
    card = predictor.card
    name = model_name or predictor.name
    max_body = int(max_body_mb * 1024 * 1024)
    metrics = Metrics(name, predictor.backend, str(getattr(predictor, "device", "")))
    batcher = Batcher(predictor.predict, max_batch_size=max_batch_size, max_delay_ms=max_delay_ms,
                      max_queue=max_queue, on_batch=metrics.batch)
    metrics.queue_depth.set_function(lambda: batcher.depth)
    state = ServeState(predictor, name, batcher, metrics)
    decode_threads = decode_threads or min(4, os.cpu_count() or 1)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="zoo-decode")
    page = _page()
    answers = _Answers(name, card.class_names)

    async def off_loop(fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args, **kwargs))

    async def warm_up():
        started = time.perf_counter()
        try:
            for n in sorted({1, max_batch_size}):
                await batcher.run_in_worker(predictor.predict, np.zeros((n, *card.input_shape), np.float32))
        except Exception:
            log.exception("warm-up failed: the server stays not ready")
            return
        seconds = time.perf_counter() - started
        metrics.warmup_seconds.set(seconds)
        state.ready = True
        log.info("%s ready: %s, warm-up %.2f s", name, predictor.describe() if hasattr(predictor, "describe")
                 else predictor.backend, seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        warming = asyncio.get_running_loop().create_task(warm_up())
        try:
            yield
        finally:
            state.start_draining()
            await warming
            await batcher.stop()
            pool.shutdown(wait=True)

    app = ZooApp(title=f"cnnzoo: {name}", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=f"{card.architecture} ({card.num_classes} classes, input "
                              f"{'x'.join(map(str, card.input_shape))}) on {predictor.backend}. "
                              "KServe v2 / Open Inference Protocol under /v2; images to /predict.")
    app.state.zoo = state

    # ---- errors: always JSON {"error": ...} ---------------------------------------------------------
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

    # ---- inference -----------------------------------------------------------------------------------
    def check_ready():
        if not state.ready:
            raise HTTPException(503, "the model is still warming up; try again shortly", {"Retry-After": "1"})

    async def infer(x: np.ndarray) -> np.ndarray:
        """The model's logits for x, max_batch_size rows at a time: the model never holds more."""
        try:
            if len(x) <= max_batch_size:
                return await batcher.submit(x)
            return np.concatenate([await batcher.submit(x[i:i + max_batch_size])
                                   for i in range(0, len(x), max_batch_size)])
        except BatcherBusy as e:
            raise HTTPException(503, f"server busy: {e}", {"Retry-After": "1"}) from None
        except BatcherClosed as e:
            raise HTTPException(503, str(e)) from None

    async def preprocess_all(images: list[bytes], first: int = 0, total: int = 1) -> np.ndarray:
        """Encoded images -> the model's input; these are images first+1.. of the request's `total`.
        One image decodes as `decode` does it; several decode on the pool, one task each."""
        if len(images) == 1 and total == 1:
            try:
                return (await decode(images[0], card, max_image_pixels, pool))[None]
            except ImageError as e:
                raise HTTPException(400, str(e)) from None
        results = await asyncio.gather(*(off_loop(preprocess, data, card, max_pixels=max_image_pixels)
                                         for data in images), return_exceptions=True)
        for i, r in enumerate(results):
            if isinstance(r, ImageError):
                raise HTTPException(400, f"image {first + i + 1} of {total}: {r}")
            if isinstance(r, BaseException):
                raise r
        return np.stack(results)

    async def infer_images(images: list[bytes]) -> np.ndarray:
        """Logits for encoded images, max_batch_size decoded and run at a time: a request of many
        images holds one batch of decoded pixels, never all of them."""
        if len(images) > max_images:  # callers check before reading; this guards any other way in
            raise HTTPException(413, str(protocol.TooManyImages(len(images), max_images)))
        if len(images) == 1:
            return await infer(await preprocess_all(images))
        return np.concatenate([await infer(await preprocess_all(images[i:i + max_batch_size], i, len(images)))
                               for i in range(0, len(images), max_batch_size)])

    def non_finite(e: protocol.NonFiniteOutput) -> HTTPException:
        log.error("%s; the answer is a 500", e)
        return HTTPException(500, str(e))

    async def classify(images: list[bytes], top_k: int) -> bytes:
        """The /predict answer (JSON) for encoded images."""
        check_ready()
        logits = await infer_images(images)
        try:
            return answers.encode(logits, min(top_k, card.num_classes))
        except protocol.NonFiniteOutput as e:
            raise non_finite(e) from None

    async def predict_image(scope, receive, send):
        """POST /predict with the image as the body, as plain ASGI: the hot path of the server, answered
        without FastAPI's routing and validation (the same checks, errors and answer as the route below,
        which serves multipart forms and documents both)."""
        try:
            top_k = _query_int(scope, "top_k", default=5, low=1, high=1000)
            chunks = []
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            body = b"".join(chunks)
            if not body:
                raise HTTPException(400, "empty request body: " + IMAGE_HELP)
            status, content, headers = 200, await classify([body], top_k), None
        except HTTPException as e:
            status, content, headers = e.status_code, _json({"error": str(e.detail)}), e.headers
        except Exception as e:
            log.error("POST /predict failed: %s: %s", type(e).__name__, e)
            status, content, headers = 500, _json({"error": f"internal server error ({type(e).__name__}); "
                                                            "the server log has the details"}), None
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": content})

    @contextlib.asynccontextmanager
    async def form_of(request: Request):
        """The multipart form, parsed with at most max_images files (413 past them, as v2 answers)."""
        try:
            form = await request.form(max_files=max_images, max_fields=max_images)
        except HTTPException as e:  # Starlette answers "Too many files" 400; it is the images limit
            if str(e.detail).startswith("Too many files"):
                raise HTTPException(413, str(protocol.TooManyImages(None, max_images))) from None
            raise
        try:
            yield form
        finally:
            await form.close()

    async def read_images(request: Request) -> list[bytes]:
        media = _media_type(request)
        if media == "multipart/form-data":
            async with form_of(request) as form:
                parts = form.getlist("file")
                if not parts:
                    raise HTTPException(400, "no 'file' field in the form: " + IMAGE_HELP)
                images = []
                for part in parts:
                    if isinstance(part, str):
                        raise HTTPException(400, "the 'file' field must be a file upload, not text")
                    images.append(await part.read())
                return images
        if not media:
            raise HTTPException(415, "no Content-Type: " + IMAGE_HELP)
        raise HTTPException(415, f"Content-Type {media!r} is not taken: " + IMAGE_HELP)

    @app.post("/predict", response_model=None, tags=["classify"],
              responses={200: {"model": protocol.PredictResponse}, **ERROR_RESPONSES},
              openapi_extra={"requestBody": {"content": {
                  "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {
                      "type": "array", "items": {"type": "string", "format": "binary"}}}}},
                  "image/*": {"schema": {"type": "string", "format": "binary"}}}}})
    async def predict(request: Request, top_k: int = Query(5, ge=1, le=1000, description="labels per image")):
        """Classify one image (or several `file` parts): the top-k labels with softmax scores."""
        images = await read_images(request)
        return Response(await classify(images, top_k), media_type="application/json")

    def check_model(model: str):
        if model != name:
            raise HTTPException(404, f"unknown model {model!r}; this server serves {name!r}")

    @app.post("/v2/models/{model}/infer", response_model=None, tags=["KServe v2"],
              responses={200: {"model": protocol.InferResponse}, **ERROR_RESPONSES},
              openapi_extra={"requestBody": {"content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/InferRequest"}}}}})
    async def v2_infer(model: str, request: Request):
        """KServe v2 inference: FP32 [N, C, H, W] or BYTES encoded images -> FP32 logits [N, classes]."""
        check_model(model)
        check_ready()
        media = _media_type(request)
        if media.startswith(("image/", "multipart/")):  # any other type is read as JSON, as Triton does
            raise HTTPException(415, f"Content-Type {media!r} is not taken here: send a KServe v2 inference "
                                     "request (JSON; images as BYTES), or post images to /predict")
        body = _decompress(await request.body(), request.headers.get("content-encoding", "").lower(), max_body)
        try:
            req = await off_loop(protocol.decode_infer_request, body,
                                 request.headers.get(protocol.HEADER_LENGTH), card.input_shape, max_images)
        except protocol.TooManyImages as e:
            raise HTTPException(413, str(e)) from None
        except protocol.WireError as e:
            raise HTTPException(400, str(e)) from None
        logits = await infer(req.tensor) if req.tensor is not None else await infer_images(req.images)
        try:
            content, header_length = protocol.encode_infer_response(name, logits, req.id, req.binary_output)
        except protocol.NonFiniteOutput as e:
            if req.tensor is None:  # from images, as /predict: the model's fault
                raise non_finite(e) from None
            # from FP32 values the client chose (finite, but far outside what preprocessing gives):
            # the client's input, not the server, is what the model cannot answer
            raise HTTPException(422, f"{e} (FP32 values far outside what preprocessing gives?)") from None
        if header_length is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type="application/octet-stream",
                        headers={protocol.HEADER_LENGTH: str(header_length)})

    # ---- KServe v2 metadata and health ---------------------------------------------------------------
    @app.get("/v2", response_model=protocol.ServerMetadataResponse, tags=["KServe v2"])
    async def v2_server():
        from zoo import __version__

        return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}

    @app.get("/v2/health/live", tags=["KServe v2"])
    async def v2_live():
        return {"live": True}

    @app.get("/v2/health/ready", tags=["KServe v2"], responses={503: {"model": protocol.ErrorResponse}})
    async def v2_ready():
        return _readiness()

    @app.get("/v2/models/{model}", response_model=protocol.ModelMetadataResponse, tags=["KServe v2"],
             responses={404: {"model": protocol.ErrorResponse}})
    async def v2_model(model: str):
        check_model(model)
        return protocol.model_metadata(name, predictor.backend, card.input_shape, card.num_classes)

    @app.get("/v2/models/{model}/ready", tags=["KServe v2"], responses={404: {"model": protocol.ErrorResponse}})
    async def v2_model_ready(model: str):
        check_model(model)
        return _readiness()

    def _readiness():
        if state.draining:
            return error(503, "the server is shutting down")
        if not state.ready:
            return error(503, "the model is still warming up")
        return {"ready": True}

    # ---- the rest ------------------------------------------------------------------------------------
    @app.get("/health", tags=["operation"])
    async def health():
        """200 once the model is loaded and warmed up; 503 while warming up or shutting down. `pid`: the
        process that answered (with --workers N, each has its own model and batcher)."""
        status = "draining" if state.draining else "ready" if state.ready else "warming up"
        return JSONResponse({"status": status, "model": name, "pid": os.getpid()},
                            status_code=200 if status == "ready" else 503)

    @app.get("/models", response_model=protocol.ModelsResponse, tags=["operation"])
    async def models():
        """The model this server runs, with its card (classes, input size, preprocessing, provenance)."""
        return {"models": [{"name": name, "backend": predictor.backend,
                            "precision": getattr(predictor, "precision", "fp32"),
                            "selection": getattr(predictor, "selection", ""),
                            "device": str(getattr(predictor, "device", "")), "card": card.to_dict()}]}

    @app.get("/metrics", tags=["operation"], response_class=Response)
    async def prometheus_metrics():
        """Prometheus text: requests, errors, latency and batch-size histograms, queue depth."""
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page)

    add_docs(app)

    # make the InferRequest schema part of the OpenAPI document that the openapi_extra above refers to
    _openapi = app.openapi

    def openapi():
        schema = _openapi()
        schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(
            "InferRequest", protocol.InferRequest.model_json_schema(ref_template="#/components/schemas/{model}"))
        for key, sub in protocol.InferRequest.model_json_schema(
                ref_template="#/components/schemas/{model}").get("$defs", {}).items():
            schema["components"]["schemas"].setdefault(key, sub)
        schema["components"]["schemas"]["InferRequest"].pop("$defs", None)
        return schema

    app.openapi = openapi
    app.edge = _Edge(functools.partial(FastAPI.__call__, app), state=state, routes=app.router.routes,
                     api_key=api_key, max_body=max_body, predict_image=predict_image, timeout_body=timeout_body)
    return app

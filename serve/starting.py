"""`Starting`: the ASGI app of one server process from the moment it listens, before its model is loaded.

A server process binds its port first, then loads its model on a thread (an OpenVINO compile of a big
model takes a while): meanwhile `/v2/health/live` answers 200, `/v2/health/ready`, `/v2/models/{name}/ready`
and `/health` answer 503, and every other path 503 with `Retry-After`. So a Kubernetes startupProbe sees
the process answer (and fail readiness) while it loads, instead of a refused connection that looks like a
dead one. Once the model is loaded, the app `serve.worker.build` makes answers everything (its lifespan,
which starts the batcher and warms the model up, is run from here); readiness then turns 200 when the
warm-up is done. A model that cannot be loaded stops the server (`stop`), and `failure` says why in one line.

Draining (SIGTERM / SIGINT, `drain`): readiness turns 503 at once; requests are still answered (with
`Connection: close`) for the drain delay, so a load balancer drops the process before its socket closes;
then uvicorn's own graceful shutdown (in-flight requests finish).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from fastapi import FastAPI

    from infer.predictor import Predictor

log = logging.getLogger("zoo.serve")

LIVE = "/v2/health/live"
READINESS = frozenset({"/v2/health/ready", "/health"})


def _load_errors() -> tuple[type[BaseException], ...]:
    """What a model that cannot be loaded raises: its message is the one line said."""
    import infer

    return (infer.ModelFileError, infer.BackendUnavailable, OSError, ValueError)


class Starting:
    """The app of one server process (see the module's doc). `settings`: serve.worker's plain settings;
    `predictor`: one loaded already (None: loaded here, on a thread, by `load`: serve.worker.load_predictor
    unless given). `stop` (set by serve.worker.serve_on) makes the server exit."""

    def __init__(
        self,
        settings: dict[str, Any],
        predictor: Predictor | None = None,
        load: Callable[[dict[str, Any]], Predictor] | None = None,
    ) -> None:
        self.settings, self.predictor, self.load = settings, predictor, load
        self.app: FastAPI | None = None
        self.failure: str | None = None
        self.draining = False
        self.stop: Callable[[], None] = lambda: None
        self.stack = contextlib.AsyncExitStack()

    @property
    def ready(self) -> bool:
        """Loaded, warmed up and not draining."""
        return self.app is not None and self.app.state.zoo.ready and not self.draining

    async def __call__(self, scope, receive, send):
        app = self.app
        if app is not None:
            return await app(scope, receive, send)
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] == "http":
            return await self._loading(scope, send)

    def drain(self) -> float:
        """Start draining (SIGTERM / SIGINT); the seconds to keep serving before the server stops: the drain
        delay once the model served, 0 while it loads (nobody sends requests to a process not ready)."""
        served = self.app is not None
        self.draining = True
        if not served:
            return 0.0
        self.app.state.zoo.start_draining()
        return float(self.settings.get("drain_delay") or 0.0)

    async def _lifespan(self, receive, send) -> None:
        await receive()  # lifespan.startup
        loading = asyncio.get_running_loop().create_task(self._load())
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        self.draining = True
        if loading.done():
            await self.stack.aclose()  # the app's own lifespan: drain the batcher, stop the pool
        else:  # still loading: the loading thread is a daemon, the process may exit under it
            loading.cancel()
        await send({"type": "lifespan.shutdown.complete"})

    async def _load(self) -> None:
        from .worker import build, load_predictor

        def load() -> FastAPI:
            return build(self.settings, self.predictor or (self.load or load_predictor)(self.settings))

        try:
            app = await _on_daemon_thread(load)
            await self.stack.enter_async_context(app.router.lifespan_context(app))
        except _load_errors() as e:
            self.failure = str(e)
        except Exception as e:  # a bug, not a bad model: its traceback goes to the log
            log.exception("the model could not be loaded")
            self.failure = f"{self.settings['model']}: the model could not be loaded ({type(e).__name__}: {e})"
        else:
            self.predictor = None  # the app holds it
            self.app = app
            if self.draining:  # a signal came while it loaded
                app.state.zoo.start_draining()
            return
        self.stop()  # (serve.run says the failure, once the server stopped)

    async def _loading(self, scope, send) -> None:
        """An answer while the model loads: live 200, everything else 503."""
        from .connection import CONNECTION

        connection = CONNECTION.get()  # (the header timeout's bookkeeping, as the app's edge does it)
        if connection is not None:
            connection.request_started()
        path = scope["path"]
        if path == LIVE:
            status, body = 200, {"live": True}
        elif path == "/health":
            status, body = 503, {"status": "loading", "model": self.settings.get("model_name"), "pid": os.getpid()}
        else:
            status, body = 503, {"error": "the model is still loading; try again shortly"}
        headers = [(b"content-type", b"application/json")]
        if path not in READINESS and path != LIVE:
            headers.append((b"retry-after", b"1"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})
        if connection is not None:
            connection.request_done()


async def _on_daemon_thread(fn: Callable[[], Any]) -> Any:
    """fn() on a daemon thread (the process may exit while it runs: a signal during a long load)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(method: Callable, value: Any) -> None:
        if not future.done():
            method(value)

    def work() -> None:
        try:
            outcome = (future.set_result, fn())
        except BaseException as e:  # handed to the awaiting task
            outcome = (future.set_exception, e)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody awaits it any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=work, name="zoo-load", daemon=True).start()
    return await future

"""`serve.run`: serve a model over HTTP until SIGTERM / SIGINT, in one process or in N worker processes.

    import serve
    serve.run("runs/lenet5-20261121-101500", port=8080, workers=2)   # returns once every request drained

What `zoo serve` does, for any caller (a pod's entrypoint, a Ray actor, a test): resolve MODEL (the one
MODEL rule), load it once here (with workers, to fail early; each worker then loads its own), bind the
port, say where it listens, then serve. Every server process, the one or each worker, serves through
`serve.worker.serve_on`: one drain path (SIGTERM / SIGINT: new requests 503, requests in flight finish,
exit 0), on uvicorn's public API only. The options are serve/options.py's (RunOptions and ServeOptions).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Callable

from .options import OPTION_NAMES, RUN_OPTION_NAMES, RunOptions

if TYPE_CHECKING:
    import socket

    from infer.predictor import Predictor

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class ServeError(Exception):
    """Why the server cannot start (no such model, the port is taken, a worker failed to start): one line."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(model: str | os.PathLike | None = None, *, log: Callable[[str], None] = _stderr, **options: Any) -> None:
    """Serve `model` (a run directory or model file; None: the newest finished run under runs/) until
    SIGTERM / SIGINT, then drain and return. `options`: RunOptions' fields (host, port, workers, backend,
    precision, threads, log_level, timeouts, max_connections, max_header_kb) and ServeOptions' (the app's limits and
    name); another name is a TypeError. `log` gets the start-up lines (the model and why that runtime,
    where it listens). ServeError: the server could not start, one line."""
    import logging

    from . import worker

    unknown = set(options) - {*RUN_OPTION_NAMES, *OPTION_NAMES}
    if unknown:
        raise TypeError(f"serve.run() got unknown options: {', '.join(sorted(unknown))}")
    how = RunOptions(**{k: v for k, v in options.items() if k in RUN_OPTION_NAMES})
    logging.basicConfig(level=how.log_level.upper(), format=worker.LOG_FORMAT)
    settings = _settings(model, how, {k: v for k, v in options.items() if k in OPTION_NAMES})
    predictor = _load(settings)
    log(f"{predictor.name}: {predictor.selection}; {predictor.device}")
    sockets, url = _listen(how.host, how.port, how.workers)
    uvicorn_options = _uvicorn_options(how)
    shown = settings.get("model_name") or predictor.name
    workers = f", {how.workers} worker processes" if how.workers > 1 else ""
    where = f"on {url} (page at /, API docs at /docs){workers}"
    log(f"Serving {shown} ({predictor.precision} on {predictor.backend}) {where}")
    if how.host not in LOCAL_HOSTS and not settings.get("api_key"):
        log("Warning: listening beyond this machine without --api-key")
    if how.workers > 1:
        del predictor  # each worker loads its own
        _supervise(settings, uvicorn_options, sockets)
    else:
        _serve_one(settings, predictor, uvicorn_options, sockets[0])


def _settings(model: str | os.PathLike | None, how: RunOptions, app_options: dict[str, Any]) -> dict[str, Any]:
    """The worker settings (plain JSON-able values): the resolved model path, how it loads, the app's
    options. With several workers and no --threads, each takes an equal share of the usable CPUs."""
    from zoo import rundir
    from zoo.hardware import usable_cpu_count

    try:
        path = rundir.resolve_model(None if model is None else str(model))
    except rundir.RunError as e:
        raise ServeError(str(e)) from None
    threads = how.threads
    if threads is None and how.workers > 1:
        threads = max(1, usable_cpu_count() // how.workers)
    loading = {"backend": how.backend, "precision": how.precision, "threads": threads, "log_level": how.log_level}
    return {"model": str(path), **loading, **app_options}


def _load(settings: dict[str, Any]) -> Predictor:
    """The model, loaded here with one process; with several, loaded once here to fail early, then in
    each worker."""
    import infer

    from . import worker

    try:
        return worker.load_predictor(settings)
    except (infer.ModelFileError, infer.BackendUnavailable, FileNotFoundError, ValueError) as e:
        raise ServeError(str(e)) from None


def _listen(host: str, port: int, workers: int) -> tuple[list[socket.socket], str]:
    """(one listening socket per worker, all on the one port; the URL they answer on)."""
    import socket

    from . import worker

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sockets = worker.listening_sockets(host, port, workers, family)
    except OSError as e:
        raise ServeError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port") from None
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    return sockets, f"http://{url_host}:{sockets[0].getsockname()[1]}"


def _uvicorn_options(how: RunOptions) -> dict[str, Any]:
    """uvicorn.Config's options; raises the open-file limit, which the default max_connections follows."""
    from . import worker

    open_files = worker.raise_open_file_limit()
    max_connections = how.max_connections
    if max_connections is None:
        max_connections = worker.default_max_connections(open_files)
    return dict(
        log_level=how.log_level,
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=how.timeout_graceful_shutdown,
        **worker.connection_options(how.timeout_header, max_connections, how.max_header_kb),
    )


def _supervise(settings: dict[str, Any], options: dict[str, Any], sockets: list[socket.socket]) -> None:
    """workers > 1: the supervisor, each worker loading the model from the settings in its environment."""
    import json

    import uvicorn

    from . import worker

    os.environ[worker.SETTINGS_ENV] = json.dumps(settings)
    config = uvicorn.Config("serve.worker:app_from_environment", factory=True, **options)
    if not worker.supervise(config, sockets):  # SIGTERM / SIGINT: each worker drains, then exit 0
        raise ServeError("a worker process failed to start (the log above says why)")


def _serve_one(settings: dict[str, Any], predictor: Predictor, options: dict[str, Any], sock: socket.socket) -> None:
    """One server process: the app on the model loaded here, served until SIGTERM / SIGINT, then drained."""
    import functools

    import uvicorn

    from . import worker

    config = uvicorn.Config(functools.partial(worker.serving_app, settings, predictor), factory=True, **options)
    worker.serve_on(config, sock)

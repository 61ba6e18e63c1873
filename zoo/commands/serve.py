from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from infer.predictor import BACKENDS
from serve.options import DEFAULTS
from zoo import rundir
from zoo import threads as threads_
from zoo.card import PRECISIONS
from zoo.errors import UserError

if TYPE_CHECKING:
    import socket
    from types import FrameType

    from infer.predictor import Predictor

LOG_LEVELS = ["critical", "error", "warning", "info", "debug"]


@click.command(epilog=rundir.MODEL_HELP)
@click.argument("model", required=False, type=click.Path())
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes the server to the network."
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port; the log says which).",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", *BACKENDS]),
    default="auto",
    show_default=True,
    help="Runtime to run the model on (auto: the fastest installed for the precision).",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", *PRECISIONS]),
    default="auto",
    show_default=True,
    help="Arithmetic to run in (auto: the fastest one the export verified and this machine has natively).",
)
@click.option("--name", default=None, help="Model name in URLs and answers [default: the model's].")
@click.option(
    "--max-batch-size",
    default=DEFAULTS.max_batch_size,
    show_default=True,
    type=click.IntRange(1),
    help="Most images the dynamic batcher runs as one batch.",
)
@click.option(
    "--max-delay-ms",
    default=DEFAULTS.max_delay_ms,
    show_default=True,
    type=click.FloatRange(0),
    help="How long a batch waits for more requests after its first.",
)
@click.option(
    "--max-body-mb",
    default=DEFAULTS.max_body_mb,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Larger request bodies are refused (413).",
)
@click.option(
    "--max-image-pixels",
    default=DEFAULTS.max_image_pixels,
    type=click.IntRange(1),
    show_default=True,
    help="Larger images are refused as decompression bombs (400).",
)
@click.option(
    "--max-images",
    default=DEFAULTS.max_images,
    type=click.IntRange(1),
    show_default=True,
    help="Most images in one request (/predict files, v2 batch N); more are refused (413) before "
    "any is decoded. Larger requests run --max-batch-size images at a time.",
)
@click.option(
    "--max-queue",
    default=DEFAULTS.max_queue,
    show_default=True,
    type=click.IntRange(1),
    help="Requests that may wait for the model; more are answered 503.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Server processes, each with its own copy of the model and its own batcher, sharing "
    "the port: more requests per second where one process keeps a core busy.",
)
@threads_.option(
    help="Threads the model uses (ONNX Runtime / torch intra-op) [default: the library's; "
    "with --workers N, CPUs / N each]."
)
@click.option(
    "--api-key",
    envvar="ZOO_API_KEY",
    default=None,
    show_envvar=True,
    help="Require `Authorization: Bearer KEY` on everything but the health endpoints.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    default="info",
    show_default=True,
    help="info logs one line per request.",
)
@click.option(
    "--timeout-graceful-shutdown",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0),
    help="On SIGTERM, seconds to let requests in flight finish.",
)
@click.option(
    "--timeout-header",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Seconds a client may take to send a request's headers (from connecting, or from the "
    "answer before); then the connection is closed.",
)
@click.option(
    "--timeout-body",
    default=DEFAULTS.timeout_body,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Seconds a client may take to send a request's body; then it is answered 408.",
)
@click.option(
    "--max-connections",
    default=None,
    type=click.IntRange(1),
    show_default="the open-file limit less 64",
    help="Connections served at once per process; a request on one more is answered 503 "
    "(/health too). The open-file soft limit is raised to the hard limit at start.",
)
def serve(
    model,
    host,
    port,
    backend,
    precision,
    name,
    max_batch_size,
    max_delay_ms,
    max_body_mb,
    max_image_pixels,
    max_images,
    max_queue,
    workers,
    threads,
    api_key,
    log_level,
    timeout_graceful_shutdown,
    timeout_header,
    timeout_body,
    max_connections,
):
    """Serve MODEL over HTTP: /predict, KServe v2, a page at /.

    Requests that arrive within --max-delay-ms run as one batch. SIGTERM (or Ctrl+C) drains: requests
    in flight finish, new ones are refused, then the server exits 0. With --workers N, N processes
    share the port (each its own model and batcher; /metrics and readiness are per process).
    """
    import logging

    from serve import worker

    logging.basicConfig(level=log_level.upper(), format=worker.LOG_FORMAT)
    if threads is None and workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
    settings = _settings(
        model,
        backend=backend,
        precision=precision,
        threads=threads,
        log_level=log_level,
        max_batch_size=max_batch_size,
        max_delay_ms=max_delay_ms,
        max_body_mb=max_body_mb,
        max_image_pixels=max_image_pixels,
        api_key=api_key,
        model_name=name,
        max_queue=max_queue,
        max_images=max_images,
        timeout_body=timeout_body,
    )
    predictor = _load_predictor(settings)
    shown = name or predictor.name
    click.echo(f"{predictor.name}: {predictor.selection}; {predictor.device}", err=True)

    sockets, family = _listen(host, port, workers)
    options = _server_options(log_level, timeout_graceful_shutdown, timeout_header, max_connections)
    _announce(predictor, shown, host, family, sockets[0].getsockname()[1], workers, api_key)

    if workers > 1:
        del predictor  # each worker loads its own
        _run_workers(settings, options, sockets)
        return
    _run_one(settings, predictor, options, sockets[0])


def _settings(model: str | None, **values: Any) -> dict[str, Any]:
    """The worker settings (plain JSON-able values): the resolved model path, then `values`."""

    try:
        model = rundir.resolve_model(model)
    except rundir.RunError as e:
        raise UserError(str(e)) from None
    return {"model": str(model), **values}


def _load_predictor(settings: dict[str, Any]) -> Predictor:
    """The model, loaded here with one process; with several, loaded once here to fail early, then in
    each worker."""
    import infer
    from serve import worker

    try:
        return worker.load_predictor(settings)
    except (infer.ModelFileError, infer.BackendUnavailable, FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None


def _listen(host: str, port: int, workers: int) -> tuple[list[socket.socket], socket.AddressFamily]:
    """(one listening socket per worker, all on the one port; their address family)."""
    import socket

    from serve import worker

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sockets = worker.listening_sockets(host, port, workers, family)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port") from None
    return sockets, family


def _server_options(
    log_level: str, timeout_graceful_shutdown: float, timeout_header: float, max_connections: int | None
) -> dict[str, Any]:
    """uvicorn.Config's options; raises the open-file limit, which the default --max-connections follows."""
    from serve import worker

    open_files = worker.raise_open_file_limit()
    if max_connections is None:
        max_connections = worker.default_max_connections(open_files)
    return dict(
        log_level=log_level,
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        **worker.connection_options(timeout_header, max_connections),
    )


def _announce(
    predictor: Predictor,
    shown: str,
    host: str,
    family: socket.AddressFamily,
    bound: int,
    workers: int,
    api_key: str | None,
) -> None:
    """The startup lines: where the server listens, and a warning where it is open without a key."""
    import socket

    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    click.echo(
        f"Serving {shown} ({predictor.precision} on {predictor.backend}) on http://{url_host}:{bound} "
        f"(page at /, API docs at /docs){f', {workers} worker processes' if workers > 1 else ''}",
        err=True,
    )
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        click.echo("Warning: listening beyond this machine without --api-key", err=True)


def _run_workers(settings: dict[str, Any], options: dict[str, Any], sockets: list[socket.socket]) -> None:
    """--workers N: the supervisor, each worker loading the model from the settings in its environment."""
    import json

    import uvicorn

    from serve import worker

    os.environ[worker.SETTINGS_ENV] = json.dumps(settings)
    config = uvicorn.Config("serve.worker:app_from_environment", factory=True, **options)
    if not worker.supervise(config, sockets):  # SIGTERM / SIGINT: each worker drains, then exit 0
        raise UserError("a worker process failed to start (the log above says why)")


def _run_one(settings: dict[str, Any], predictor: Predictor, options: dict[str, Any], sock: socket.socket) -> None:
    """One server process, serving until SIGTERM / SIGINT, then draining."""
    import signal

    import uvicorn

    from serve import worker

    app = worker.build(settings, predictor)
    config = uvicorn.Config(app, **options)

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # SIGTERM / SIGINT: refuse new requests from now on
            app.state.zoo.start_draining()
            super().handle_exit(sig, frame)

    # uvicorn re-raises the signal it caught once it has shut down; a no-op handler makes that a clean exit 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    DrainingServer(config).run(sockets=[sock])

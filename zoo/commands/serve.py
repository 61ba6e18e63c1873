import click

from infer.predictor import BACKENDS
from serve.options import DEFAULTS
from zoo import rundir
from zoo import threads as threads_
from zoo.card import PRECISIONS

LOG_LEVELS = ["critical", "error", "warning", "info", "debug"]


@click.command(epilog=rundir.MODEL_HELP)
@click.argument("model", required=False, type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; 0.0.0.0 exposes the server to the network.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port; the log says which).")
@click.option("--backend", type=click.Choice(["auto", *BACKENDS]), default="auto",
              show_default=True, help="Runtime to run the model on (auto: the fastest installed for the precision).")
@click.option("--precision", type=click.Choice(["auto", *PRECISIONS]), default="auto", show_default=True,
              help="Arithmetic to run in (auto: the fastest one the export verified and this machine has natively).")
@click.option("--name", default=None, help="Model name in URLs and answers [default: the model's].")
@click.option("--max-batch-size", default=DEFAULTS.max_batch_size, show_default=True, type=click.IntRange(1),
              help="Most images the dynamic batcher runs as one batch.")
@click.option("--max-delay-ms", default=DEFAULTS.max_delay_ms, show_default=True, type=click.FloatRange(0),
              help="How long a batch waits for more requests after its first.")
@click.option("--max-body-mb", default=DEFAULTS.max_body_mb, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Larger request bodies are refused (413).")
@click.option("--max-image-pixels", default=DEFAULTS.max_image_pixels, type=click.IntRange(1), show_default=True,
              help="Larger images are refused as decompression bombs (400).")
@click.option("--max-images", default=DEFAULTS.max_images, type=click.IntRange(1), show_default=True,
              help="Most images in one request (/predict files, v2 batch N); more are refused (413) before "
                   "any is decoded. Larger requests run --max-batch-size images at a time.")
@click.option("--max-queue", default=DEFAULTS.max_queue, show_default=True, type=click.IntRange(1),
              help="Requests that may wait for the model; more are answered 503.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Server processes, each with its own copy of the model and its own batcher, sharing "
                   "the port: more requests per second where one process keeps a core busy.")
@threads_.option(help="Threads the model uses (ONNX Runtime / torch intra-op) [default: the library's; "
                   "with --workers N, CPUs / N each].")
@click.option("--api-key", envvar="ZOO_API_KEY", default=None, show_envvar=True,
              help="Require `Authorization: Bearer KEY` on everything but the health endpoints.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True,
              help="info logs one line per request.")
@click.option("--timeout-graceful-shutdown", default=30.0, show_default=True, type=click.FloatRange(0),
              help="On SIGTERM, seconds to let requests in flight finish.")
@click.option("--timeout-header", default=10.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Seconds a client may take to send a request's headers (from connecting, or from the "
                   "answer before); then the connection is closed.")
@click.option("--timeout-body", default=DEFAULTS.timeout_body, show_default=True,
              type=click.FloatRange(0, min_open=True),
              help="Seconds a client may take to send a request's body; then it is answered 408.")
@click.option("--max-connections", default=None, type=click.IntRange(1),
              show_default="the open-file limit less 64",
              help="Connections served at once per process; a request on one more is answered 503 "
                   "(/health too). The open-file soft limit is raised to the hard limit at start.")
def serve(model, host, port, backend, precision, name, max_batch_size, max_delay_ms, max_body_mb, max_image_pixels,
          max_images, max_queue, workers, threads, api_key, log_level, timeout_graceful_shutdown, timeout_header,
          timeout_body, max_connections):
    """Serve MODEL over HTTP: /predict, KServe v2, a page at /.

    Requests that arrive within --max-delay-ms run as one batch. SIGTERM (or Ctrl+C) drains: requests
    in flight finish, new ones are refused, then the server exits 0. With --workers N, N processes
    share the port (each its own model and batcher; /metrics and readiness are per process).
    """
    import json
    import logging
    import os
    import signal
    import socket

    import uvicorn

    import infer
    from serve import worker
    from zoo.cli import UserError

    logging.basicConfig(level=log_level.upper(), format=worker.LOG_FORMAT)
    if threads is None and workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
    try:
        model = rundir.resolve_model(model)
    except rundir.RunError as e:
        raise UserError(str(e)) from None
    settings = {"model": str(model), "backend": backend, "precision": precision, "threads": threads, "log_level": log_level,
                "max_batch_size": max_batch_size, "max_delay_ms": max_delay_ms, "max_body_mb": max_body_mb,
                "max_image_pixels": max_image_pixels, "api_key": api_key, "model_name": name,
                "max_queue": max_queue, "max_images": max_images, "timeout_body": timeout_body}
    try:  # loaded here with one process; with several, loaded once here to fail early, then in each worker
        predictor = worker.load_predictor(settings)
    except (infer.ModelFileError, infer.BackendUnavailable, FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    shown = name or predictor.name
    click.echo(f"{predictor.name}: {predictor.selection}; {predictor.device}", err=True)

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sockets = worker.listening_sockets(host, port, workers, family)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port") from None
    sock = sockets[0]
    bound = sock.getsockname()[1]

    open_files = worker.raise_open_file_limit()
    if max_connections is None:
        max_connections = worker.default_max_connections(open_files)
    options = dict(log_level=log_level, access_log=False, lifespan="on", server_header=False,
                   timeout_graceful_shutdown=timeout_graceful_shutdown,
                   **worker.connection_options(timeout_header, max_connections))
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    click.echo(f"Serving {shown} ({predictor.precision} on {predictor.backend}) on http://{url_host}:{bound} "
               f"(page at /, API docs at /docs){f', {workers} worker processes' if workers > 1 else ''}",
               err=True)
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        click.echo("Warning: listening beyond this machine without --api-key", err=True)

    if workers > 1:
        del predictor  # each worker loads its own
        os.environ[worker.SETTINGS_ENV] = json.dumps(settings)
        config = uvicorn.Config("serve.worker:app_from_environment", factory=True, **options)
        if not worker.supervise(config, sockets):  # SIGTERM / SIGINT: each worker drains, then exit 0
            raise UserError("a worker process failed to start (the log above says why)")
        return

    app = worker.build(settings, predictor)
    config = uvicorn.Config(app, **options)

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame):  # SIGTERM / SIGINT: refuse new requests from now on
            app.state.zoo.start_draining()
            super().handle_exit(sig, frame)

    # uvicorn re-raises the signal it caught once it has shut down; a no-op handler makes that a clean exit 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    DrainingServer(config).run(sockets=[sock])

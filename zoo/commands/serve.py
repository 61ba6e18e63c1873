import click

LOG_LEVELS = ["critical", "error", "warning", "info", "debug"]


@click.command()
@click.argument("model", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; 0.0.0.0 exposes the server to the network.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port; the log says which).")
@click.option("--backend", type=click.Choice(["auto", "tensorrt", "onnxruntime", "torch"]), default="auto",
              show_default=True, help="Backend to run the model on (auto: the fastest available).")
@click.option("--name", default=None, help="Model name in URLs and answers [default: the model's].")
@click.option("--max-batch-size", default=32, show_default=True, type=click.IntRange(1),
              help="Most images the dynamic batcher runs as one batch.")
@click.option("--max-delay-ms", default=5.0, show_default=True, type=click.FloatRange(0),
              help="How long a batch waits for more requests after its first.")
@click.option("--max-body-mb", default=16.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Larger request bodies are refused (413).")
@click.option("--max-image-pixels", default=None, type=click.IntRange(1),
              show_default="64,000,000: zoo.data.preprocess's limit",
              help="Larger images are refused as decompression bombs (400).")
@click.option("--max-queue", default=1024, show_default=True, type=click.IntRange(1),
              help="Requests that may wait for the model; more are answered 503.")
@click.option("--threads", default=None, type=click.IntRange(1),
              help="Threads the model uses (ONNX Runtime / torch intra-op) [default: the library's].")
@click.option("--api-key", envvar="ZOO_API_KEY", default=None, show_envvar=True,
              help="Require `Authorization: Bearer KEY` on everything but the health endpoints.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True,
              help="info logs one line per request.")
@click.option("--timeout-graceful-shutdown", default=30.0, show_default=True, type=click.FloatRange(0),
              help="On SIGTERM, seconds to let requests in flight finish.")
def serve(model, host, port, backend, name, max_batch_size, max_delay_ms, max_body_mb, max_image_pixels,
          max_queue, threads, api_key, log_level, timeout_graceful_shutdown):
    """Serve MODEL (a run directory, .onnx or .engine file) over HTTP: /predict, KServe v2, a page at /.

    Requests that arrive within --max-delay-ms run as one batch. SIGTERM (or Ctrl+C) drains: requests
    in flight finish, new ones are refused, then the server exits 0.
    """
    import logging
    import signal
    import socket

    import uvicorn

    import infer
    from serve.app import create_app
    from zoo.cli import UserError

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        predictor = infer.load(model, backend=backend, threads=threads)
    except (infer.ModelFileError, infer.BackendUnavailable, FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    limits = {"max_image_pixels": max_image_pixels} if max_image_pixels else {}
    app = create_app(predictor, max_batch_size=max_batch_size, max_delay_ms=max_delay_ms,
                     max_body_mb=max_body_mb, api_key=api_key, model_name=name, max_queue=max_queue, **limits)

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port") from None
    sock.listen(2048)
    bound = sock.getsockname()[1]

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=timeout_graceful_shutdown, server_header=False)

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame):  # SIGTERM / SIGINT: refuse new requests from now on
            app.state.zoo.start_draining()
            super().handle_exit(sig, frame)

    # uvicorn re-raises the signal it caught once it has shut down; a no-op handler makes that a clean exit 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    click.echo(f"Serving {name or predictor.name} ({predictor.backend}) on http://{url_host}:{bound} "
               f"(page at /, API docs at /docs)", err=True)
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        click.echo("Warning: listening beyond this machine without --api-key", err=True)
    DrainingServer(config).run(sockets=[sock])

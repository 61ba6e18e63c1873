import click

from infer.predictor import BACKENDS
from serve.options import DEFAULTS, LOG_LEVELS, RUN_DEFAULTS
from zoo import rundir
from zoo import threads as threads_
from zoo.card import PRECISIONS
from zoo.commands.options import with_defaults
from zoo.errors import UserError

app_option, run_option = with_defaults(DEFAULTS), with_defaults(RUN_DEFAULTS)  # serve/options.py's defaults


@click.command(epilog=rundir.MODEL_HELP)
@click.argument("model", required=False, type=click.Path())
@run_option("--host", help="Address to bind; 0.0.0.0 exposes the server to the network.")
@run_option("--port", type=click.IntRange(0, 65535), help="Port to listen on (0: any free port; the log says which).")
@run_option(
    "--backend",
    type=click.Choice(["auto", *BACKENDS]),
    help="Runtime to run the model on (auto: the fastest installed for the precision).",
)
@run_option(
    "--precision",
    type=click.Choice(["auto", *PRECISIONS]),
    help="Arithmetic to run in (auto: the fastest one the export verified and this machine has natively).",
)
@click.option("--name", default=None, help="Model name in URLs and answers [default: the model's].")
@app_option("--max-batch-size", type=click.IntRange(1), help="Most images the dynamic batcher runs as one batch.")
@app_option(
    "--max-delay-ms", type=click.FloatRange(0), help="How long a batch waits for more requests after its first."
)
@app_option("--max-body-mb", type=click.FloatRange(0, min_open=True), help="Larger request bodies are refused (413).")
@app_option(
    "--max-image-pixels", type=click.IntRange(1), help="Larger images are refused as decompression bombs (400)."
)
@app_option(
    "--max-images",
    type=click.IntRange(1),
    help="Most images in one request (/predict files, v2 batch N); more are refused (413) before "
    "any is decoded. Larger requests run --max-batch-size images at a time.",
)
@app_option(
    "--max-decode-mb",
    type=click.FloatRange(0, min_open=True),
    help="Memory the images decoding at once may hold together; larger decodes wait, and an image "
    "that alone needs more is refused (413).",
)
@app_option("--max-queue", type=click.IntRange(1), help="Requests that may wait for the model; more are answered 503.")
@run_option(
    "--workers",
    type=click.IntRange(1),
    help="Server processes, each with its own copy of the model and its own batcher, sharing "
    "the port: more requests per second where one process keeps a core busy.",
)
@threads_.option(
    help="Threads the model uses (ONNX Runtime / torch intra-op) [default: the library's; "
    "with --workers N, usable CPUs / N each]."
)
@click.option(
    "--api-key",
    envvar="ZOO_API_KEY",
    default=None,
    show_envvar=True,
    help="Require `Authorization: Bearer KEY` on everything but the health endpoints.",
)
@run_option("--log-level", type=click.Choice(LOG_LEVELS), help="info logs one line per request.")
@run_option(
    "--timeout-graceful-shutdown",
    type=click.FloatRange(0),
    help="On SIGTERM, seconds to let requests in flight finish.",
)
@run_option(
    "--timeout-header",
    type=click.FloatRange(0, min_open=True),
    help="Seconds a client may take to send a request's headers (from connecting, or from the "
    "answer before); then the connection is closed.",
)
@run_option(
    "--max-header-kb",
    type=click.IntRange(1),
    help="KiB a request's line and headers may take; past them it is answered 431 and the connection closed.",
)
@app_option(
    "--timeout-body",
    type=click.FloatRange(0, min_open=True),
    help="Seconds a client may take to send a request's body; then it is answered 408.",
)
@run_option(
    "--max-connections",
    type=click.IntRange(1),
    show_default="the open-file limit less 64",
    help="Connections served at once per process; a request on one more is answered 503 "
    "(/health too). The open-file soft limit is raised to the hard limit at start.",
)
def serve(model, name, **options):
    """Serve MODEL over HTTP: /predict, KServe v2, a page at /.

    Requests that arrive within --max-delay-ms run as one batch. SIGTERM (or Ctrl+C) drains: requests
    in flight finish, new ones are refused, then the server exits 0. With --workers N, N processes
    share the port (each its own model and batcher; /metrics and readiness are per process).
    """
    from serve import ServeError, run

    try:  # serve.run says the start-up lines, then serves until SIGTERM / SIGINT and drains
        run(model, model_name=name, log=lambda line: click.echo(line, err=True), **options)
    except ServeError as e:
        raise UserError(str(e)) from None

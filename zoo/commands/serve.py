import click

from infer.predictor import BACKENDS
from serve.options import DEFAULTS, LOG_FORMATS, LOG_LEVELS, RUN_DEFAULTS
from zoo import rundir
from zoo import threads as threads_
from zoo.card import PRECISIONS
from zoo.commands.options import with_defaults
from zoo.errors import UserError

ENV_PREFIX = "ZOO_SERVE_"  # every flag from the environment: --drain-delay is $ZOO_SERVE_DRAIN_DELAY


def env(flag: str) -> str:
    """The environment variable of a flag (or of MODEL): ZOO_SERVE_ and its name, dashes as underscores."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def with_env(factory):
    """An option factory like `factory` whose option also reads its environment variable (`env`), shown
    in --help; the command line wins over the environment."""

    def option(*decls, **kwargs):
        kwargs.setdefault("envvar", env(next(d for d in decls if d.startswith("--"))))
        kwargs.setdefault("show_envvar", True)
        return factory(*decls, **kwargs)

    return option


option = with_env(click.option)
app_option, run_option = with_env(with_defaults(DEFAULTS)), with_env(with_defaults(RUN_DEFAULTS))  # their defaults


@click.command(
    epilog=rundir.MODEL_HELP + f" MODEL may also be a folder holding one model file (KServe's /mnt/models), "
    f"and come from ${env('model')}."
)
@click.argument("model", required=False, type=click.Path(), envvar=env("model"))
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
@option("--name", default=None, help="Model name in URLs and answers [default: the model's].")
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
    "with --workers N, usable CPUs / N each].",
    envvar=env("threads"),
    show_envvar=True,
)
@option(
    "--api-key",
    envvar=[env("api-key"), "ZOO_API_KEY"],
    default=None,
    help="Require `Authorization: Bearer KEY` on everything but the health endpoints.",
)
@run_option(
    "--api-key-file",
    type=click.Path(dir_okay=False),
    help="Read the API key from this file (all of it, less a trailing newline): a mounted Secret.",
)
@run_option("--log-level", type=click.Choice(LOG_LEVELS), help="info logs one line per request.")
@run_option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    help="json: one JSON object per line (time, level, logger, message; a request's method, path, "
    "status, duration_ms), uvicorn's lines and ours, in every worker.",
)
@run_option(
    "--drain-delay",
    type=click.FloatRange(0),
    help="On SIGTERM, seconds to keep answering requests (readiness 503, the socket open) before "
    "the server stops accepting: the time a load balancer takes to drop it (Kubernetes: a few).",
)
@run_option(
    "--timeout-graceful-shutdown",
    type=click.FloatRange(0),
    help="Then, seconds to let requests in flight finish.",
)
@run_option(
    "--timeout-header",
    type=click.FloatRange(0, min_open=True),
    help="Seconds a client may take to send a request's headers (from connecting, or from the "
    "answer before); then the connection is closed.",
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
@run_option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    envvar=[env("cache-dir"), "ZOO_CACHE_DIR"],
    show_default="none: nothing is cached",
    help="The one folder the server writes: OpenVINO's compiled models, ONNX Runtime's TensorRT "
    "engines, temporary files (a read-only root filesystem with a writable volume here).",
)
def serve(model, name, **options):
    """Serve MODEL over HTTP: /predict, KServe v2, a page at /.

    It listens at once and loads the model meanwhile: /v2/health/live answers 200 from the start,
    /v2/health/ready 200 once the model is loaded and warmed up. Requests that arrive within
    --max-delay-ms run as one batch. SIGTERM (or Ctrl+C) drains: readiness turns 503, requests are
    answered for --drain-delay seconds, then the server stops accepting, requests in flight finish and
    it exits 0. With --workers N, N processes share the port (each its own model and batcher; /metrics
    and readiness are per process). Every option can come from the environment (ZOO_SERVE_ and its
    name, as each option shows); the command line wins.
    """
    from serve import ServeError, run

    try:  # serve.run says the start-up lines, then serves until SIGTERM / SIGINT and drains
        run(model, model_name=name, log=lambda line: click.echo(line, err=True), **options)
    except ServeError as e:
        raise UserError(str(e)) from None

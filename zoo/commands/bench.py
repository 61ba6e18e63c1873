import click

from infer.bench import DEFAULT_BATCH_SIZES, FORMATTERS
from infer.predictor import BACKENDS
from zoo import rundir
from zoo import threads as threads_
from zoo.card import PRECISIONS
from zoo.commands import options
from zoo.errors import UserError


class _CommaChoice(click.ParamType):
    """One or more of `choices`, comma-separated (the option may also be repeated)."""

    def __init__(self, choices):
        self.choices = tuple(choices)
        self.name = "|".join(self.choices)

    def get_metavar(self, param, ctx=None):
        return "[" + "|".join(self.choices) + "]"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        items = tuple(v.strip() for v in str(value).split(",") if v.strip())
        bad = [v for v in items if v not in self.choices]
        if bad or not items:
            self.fail(f"{', '.join(map(repr, bad)) or repr(value)} is not one of {', '.join(self.choices)}", param, ctx)
        return items


def _batch_sizes(ctx, param, value):
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r}: give positive integers separated by commas, e.g. 1,32")
    return sizes


@click.command(epilog=rundir.MODEL_HELP)
@click.argument("model", required=False, type=click.Path())
@click.option(
    "--runtime",
    "-r",
    "runtimes",
    type=_CommaChoice(BACKENDS),
    multiple=True,
    help="Runtimes to measure (repeat, or separate with commas).  [default: every one that can "
    "run MODEL here; ONNX Runtime fp32 is always measured as the baseline]",
)
@click.option(
    "--precision",
    "-p",
    "precisions",
    type=_CommaChoice(PRECISIONS),
    multiple=True,
    help="Precisions to measure (repeat, or separate with commas).  [default: every one this "
    "machine computes natively for which MODEL has a file]",
)
@click.option(
    "--batch-size",
    "-b",
    "batch_sizes",
    default=",".join(map(str, DEFAULT_BATCH_SIZES)),
    show_default=True,
    callback=_batch_sizes,
    metavar="N[,N...]",
    help="Batch sizes, comma-separated.",
)
@threads_.option(help="Intra-op threads for every runtime.  [default: each runtime's own]")
@click.option(
    "--seconds",
    type=click.FloatRange(0, min_open=True),
    default=3.0,
    show_default=True,
    help="Timed seconds per runtime, precision and batch size (at least --min-iterations calls).",
)
@click.option(
    "--warmup",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="Seconds of untimed calls first (at least one).",
)
@click.option(
    "--min-iterations",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Timed calls at least, however long they take.",
)
@options.device(help="Where runtimes that have both run: auto (a GPU where the runtime has one), cpu, cuda or cuda:N.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATTERS)),
    default=None,
    help="Output format.  [default: table; for a FILE ending in .json or .csv, that format]",
)
@click.option(
    "--output",
    "-o",
    default="-",
    show_default=True,
    metavar="FILE",
    help="Where the results go; - is stdout (progress lines go to stderr).",
)
def bench(model, runtimes, precisions, batch_sizes, threads, seconds, warmup, min_iterations, device, fmt, output):
    """Measure MODEL's throughput (img/s) and latency (p50/p99 ms per call) in every runtime and
    precision this machine can run, at each batch size, against ONNX Runtime fp32 measured in the same
    run.

    A run directory's files are every one `zoo export` wrote beside the weights (model.onnx,
    model.int8.onnx, model.fp16.onnx, model.engine). Inputs are random (speed does
    not depend on them). Pairs that cannot run here are listed with the reason; the JSON schema is in
    infer/bench.py.
    """
    import pathlib

    import infer
    from infer.bench import FORMATTERS, BenchError, run_bench
    from zoo import atomic

    runtimes = tuple(dict.fromkeys(r for group in runtimes for r in group)) or None
    precisions = tuple(dict.fromkeys(p for group in precisions for p in group)) or None
    if fmt is None:
        suffix = pathlib.Path(output).suffix.lower() if output != "-" else ""
        fmt = {".json": "json", ".csv": "csv"}.get(suffix, "table")
    try:
        model = rundir.resolve_model(model)
        report = run_bench(
            model,
            runtimes,
            precisions,
            batch_sizes,
            threads=threads,
            seconds=seconds,
            warmup=warmup,
            min_iterations=min_iterations,
            device=None if device == "auto" else device,
            progress=lambda line: click.echo(line, err=True),
        )
    except (BenchError, infer.ModelFileError, infer.BackendUnavailable, rundir.RunError) as e:
        raise UserError(str(e)) from None
    text = FORMATTERS[fmt](report)
    if output == "-":
        click.echo(text, nl=False)
    else:
        try:
            atomic.write_text(output, text)
        except atomic.OutputError as e:
            raise UserError(str(e)) from None
        click.echo(f"wrote {output}", err=True)

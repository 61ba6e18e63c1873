import click

import infer
import infer.classify
from infer.decoding import WorkerDied
from infer.predictor import BACKENDS
from infer.results import FORMATS, OutputError
from infer.shards import CLASSIFY_FORMATS
from infer.shards import FORMATS as SHARD_FORMATS
from zoo import atomic, rundir
from zoo import threads as threads_
from zoo.answer import DEFAULT_TOP_K
from zoo.card import PRECISIONS
from zoo.data.walk import PathError, printable
from zoo.errors import UserError


@click.command(epilog=rundir.MODEL_HELP)
@click.argument("model", type=click.Path())
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--backend",
    type=click.Choice(["auto", *BACKENDS]),
    default="auto",
    show_default=True,
    help="Inference runtime; auto takes the fastest one installed for the precision among the files "
    "MODEL has, and says which and why.",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", *PRECISIONS]),
    default="auto",
    show_default=True,
    help="Arithmetic to run in; auto takes the fastest one the export verified for accuracy that this "
    "machine computes natively (int8 > bf16 > fp16 > fp32). bf16/fp16 are refused where not native.",
)
@click.option(
    "--top-k",
    "-k",
    type=click.IntRange(1),
    default=DEFAULT_TOP_K,
    show_default=True,
    help="Labels (with softmax probabilities) per image.",
)
@click.option(
    "--batch-size", "-b", type=click.IntRange(1), default=32, show_default=True, help="Images per inference call."
)
@click.option(
    "--workers",
    "-j",
    type=click.IntRange(0),
    default=None,
    help="Processes decoding and resizing images while the model runs (0: in the main "
    "process).  [default: 0 on 2 CPU cores or fewer, else CPU cores - 1, at most 4]",
)
@threads_.option(help="Intra-op threads of the inference library (default: its own choice).")
@click.option("--output", "-o", default="-", show_default=True, metavar="FILE", help="Where results go; - is stdout.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(CLASSIFY_FORMATS),
    default=None,
    help="Result format.  [default: table on stdout; for a FILE, csv if it ends in .csv, else jsonl; "
    "--ray: jsonl or parquet shards]",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Finish an earlier run into the same --output FILE: keep the results already in FILE (or in "
    "FILE.partial, left by a run that crashed) and classify only the other images. Results for files no "
    "longer there are dropped, and counted.",
)
@click.option(
    "--follow-links",
    is_flag=True,
    help="Follow symbolic links that lead out of the folders named too (never into /proc, /sys or /dev); "
    "by default a folder's links are followed only where they stay inside it.",
)
@click.option(
    "--ray",
    "address",
    is_flag=False,
    flag_value="auto",
    default=None,
    metavar="[ADDRESS]",
    help="Classify on a Ray cluster (pip install 'cnnzoo[ray]'; s3:// needs 'cnnzoo[s3]'): ADDRESS as "
    "ray.init takes it (host:port, ray://host:port; alone: auto, the cluster this machine is in), or local "
    "(one started here). PATHS may also be fsspec URLs (s3://, gs://, file://), globs and manifests (.txt, "
    ".csv, .parquet lists of paths or URLs); --output is a folder or URL of result shards.",
)
@click.option("--actors", type=click.IntRange(1), help="--ray: most model actors.  [default: as many as fit]")
@click.option("--actor-cpus", type=click.IntRange(1), default=1, help="--ray: CPUs, threads per actor.  [default: 1]")
def classify(
    model, paths, backend, precision, top_k, batch_size, workers, threads, output, fmt, resume, follow_links, **ray
):
    """Classify images with MODEL.

    PATHS are image files and folders. Folders are read recursively in sorted order, following symbolic
    links that stay inside them (--follow-links: the others too); they skip hidden files, files without an
    image extension, FIFOs, devices and symbolic link loops, and the final line counts and names what was
    skipped. A file named in PATHS is read whatever
    its extension. Where an image's folder is named after a class, the result says whether the model
    was right, and a final line gives the accuracy. A file that is not a readable image gets a result
    with an `error` field; the run goes on and exits 1 at the end.

    A FILE is written as results come, to FILE.partial, renamed to FILE when the run ends: a FILE that
    exists is complete, and a crashed run's results are in FILE.partial (finish it with --resume). A
    FIFO or device is written straight through, never replaced (no FILE.partial, no --resume); a
    symbolic link is followed, the link kept. Paths are written as UTF-8; a file name that is not UTF-8
    also gets `path_bytes`, its bytes in base64.
    """

    def say(line: str) -> None:
        click.echo(line, err=True)

    if ray["address"] is not None:
        if workers is not None or threads is not None:
            raise UserError("--workers and --threads are for a local run; with --ray use --actors and --actor-cpus")
        options = {"backend": backend, "precision": precision, "top_k": top_k, "batch_size": batch_size}
        return _on_cluster(model, paths, output, fmt, resume, follow_links, ray, options, say)
    if fmt in SHARD_FORMATS and fmt not in FORMATS:
        raise UserError(f"--format {fmt} is for the result shards of --ray; a local run writes {', '.join(FORMATS)}")
    try:
        model = rundir.resolve_model(model)
        job = infer.classify.plan(paths, output, fmt, resume, follow_links=follow_links)
    except (rundir.RunError, PathError, atomic.OutputError) as e:
        raise UserError(str(e)) from None
    try:
        predictor = infer.load(model, backend, precision=precision, threads=threads)
    except (infer.ModelFileError, infer.BackendUnavailable, rundir.RunError, ValueError) as e:
        raise UserError(str(e)) from None
    say(f"{predictor.name}: {predictor.selection}; {predictor.device}")
    try:
        summary = infer.classify.run(
            job, predictor, top_k=top_k, batch_size=batch_size, workers=workers, progress=True, log=say
        )
    except (OutputError, WorkerDied) as e:
        raise UserError(str(e)) from None
    except BrokenPipeError:
        if job.output is None or not atomic.is_stream(job.output):
            raise  # stdout (`| head -1`): click's convention, exit 1 quietly
        raise UserError(f"{printable(str(job.output))}: the reader closed it") from None
    for line in summary.lines():
        say(line)
    if summary.tally.errors:
        click.get_current_context().exit(1)


def _on_cluster(model, paths, output, fmt, resume, follow_links, ray, options, say) -> None:
    """`zoo classify --ray`: infer.cluster's plan, connect, prepare and run, each error one line."""
    import infer.cluster as cluster

    try:
        model = rundir.resolve_model(model)
        job = cluster.plan(paths, output, fmt, follow_links=follow_links)
        cluster.connect(ray["address"])
        setup = cluster.prepare(model, actors=ray["actors"], actor_cpus=ray["actor_cpus"], **options)
        say(setup.line)
        summary = cluster.run(job, setup, resume=resume, log=say)
    except (rundir.RunError, PathError, atomic.OutputError, cluster.ClusterError) as e:
        raise UserError(str(e)) from None
    except (infer.ModelFileError, infer.BackendUnavailable, ValueError) as e:
        raise UserError(str(e)) from None
    finally:
        cluster.disconnect()  # Ray's teardown logs come before the summary, not after it
    for line in summary.lines():
        say(line)
    if summary.tally.errors:
        click.get_current_context().exit(1)

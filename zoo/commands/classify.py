import os

import click

from infer.predictor import BACKENDS
from zoo.card import PRECISIONS


def _default_workers() -> int:
    """Decoding processes: none on 2 CPUs or fewer, where a decoding process only takes a core from the
    model's threads (measured on 2 cores: resnet18 int8 371 img/s with none, 259 with one; fp32 84 and
    73), else CPUs - 1, at most 4."""
    cpus = os.cpu_count() or 2
    return 0 if cpus <= 2 else min(4, cpus - 1)


@click.command()
@click.argument("model", type=click.Path())
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--backend", type=click.Choice(["auto", *BACKENDS]), default="auto", show_default=True,
              help="Inference runtime; auto takes the fastest one installed for the precision among the files "
                   "MODEL has, and says which and why.")
@click.option("--precision", type=click.Choice(["auto", *PRECISIONS]), default="auto", show_default=True,
              help="Arithmetic to run in; auto takes the fastest one the export verified for accuracy that this "
                   "machine computes natively (int8 > bf16 > fp16 > fp32). bf16/fp16 are refused where not native.")
@click.option("--top-k", "-k", type=click.IntRange(1), default=5, show_default=True,
              help="Labels (with softmax probabilities) per image.")
@click.option("--batch-size", "-b", type=click.IntRange(1), default=32, show_default=True,
              help="Images per inference call.")
@click.option("--workers", "-j", type=click.IntRange(0), default=None,
              help="Processes decoding and resizing images while the model runs (0: in the main "
                   "process).  [default: 0 on 2 CPU cores or fewer, else CPU cores - 1, at most 4]")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Intra-op threads of the inference library (default: its own choice).")
@click.option("--output", "-o", default="-", show_default=True, metavar="FILE",
              help="Where results go; - is stdout.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "table"]), default=None,
              help="Result format.  [default: table on stdout; for a FILE, csv if it ends in .csv, else jsonl]")
def classify(model, paths, backend, precision, top_k, batch_size, workers, threads, output, fmt):
    """Classify images with MODEL (a run directory, .onnx or .engine file).

    PATHS are image files and folders; folders are read recursively in sorted order, skipping hidden
    files and files without an image extension. Where an image's folder is named after a class, the
    result says whether the model was right, and a final line gives the accuracy. A file that is not a
    readable image gets a result with an `error` field; the run goes on and exits 1 at the end.
    """
    import pathlib
    import sys
    import time

    from tqdm import tqdm

    import infer
    from infer.classify import ResultWriter, Tally, classify as run_classify, collect
    from zoo import atomic, rundir
    from zoo.cli import UserError

    try:
        files, skipped = collect(paths)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    if not files:
        raise UserError(f"no images in {', '.join(paths)} (looked for {', '.join(sorted(_extensions()))}"
                        + (f"; {skipped} other files skipped" if skipped else "") + ")")
    try:
        predictor = infer.load(model, backend, precision=precision, threads=threads)
    except (infer.ModelFileError, infer.BackendUnavailable, rundir.RunError, ValueError) as e:
        raise UserError(str(e)) from None
    click.echo(f"{predictor.name}: {predictor.selection}; {predictor.device}", err=True)

    fmt = fmt or ("table" if output == "-" else "csv" if output.lower().endswith(".csv") else "jsonl")
    workers = _default_workers() if workers is None else workers
    tally = Tally()
    width = min(max(len(str(f)) for f in files), 80)
    start = time.perf_counter()

    def run(stream):
        writer = ResultWriter(fmt, stream, top_k, path_width=width)
        with tqdm(total=len(files), unit="img", file=sys.stderr, disable=None, dynamic_ncols=True) as bar:
            for result in run_classify(predictor, files, top_k=top_k, batch_size=batch_size,
                                       workers=workers, progress=bar):
                writer.write(result)
                tally.add(result)

    if output == "-":
        run(sys.stdout)
    else:
        with atomic.atomic_path(pathlib.Path(output)) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
            run(f)
    elapsed = time.perf_counter() - start
    line = f"{tally.images} images in {elapsed:.1f} s ({tally.images / elapsed:.1f} img/s, {predictor.precision} on {predictor.backend})"
    if tally.errors:
        line += f"; {tally.errors} unreadable"
    if skipped:
        line += f"; {skipped} non-image files skipped"
    click.echo(line, err=True)
    if tally.accuracy is not None:
        click.echo(f"accuracy: {tally.accuracy:.2%} ({tally.correct}/{tally.labelled} images whose folder "
                   "names a class)", err=True)
    if tally.errors:
        click.get_current_context().exit(1)


def _extensions():
    from zoo.data.preprocess import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS

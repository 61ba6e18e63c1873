import os

import click

from infer.classify import ResultWriter
from infer.predictor import BACKENDS
from zoo import rundir
from zoo import threads as threads_
from zoo.card import PRECISIONS
from zoo.errors import UserError


def _default_workers() -> int:
    """Decoding processes: none on 2 CPUs or fewer, where a decoding process only takes a core from the
    model's threads (measured on 2 cores: resnet18 int8 371 img/s with none, 259 with one; fp32 84 and
    73), else CPUs - 1, at most 4."""
    cpus = os.cpu_count() or 2
    return 0 if cpus <= 2 else min(4, cpus - 1)


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
    default=5,
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
    type=click.Choice(ResultWriter.FORMATS),
    default=None,
    help="Result format.  [default: table on stdout; for a FILE, csv if it ends in .csv, else jsonl]",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Finish an earlier run into the same --output FILE: keep the results already in FILE (or in "
    "FILE.partial, left by a run that crashed) and classify only the other images.",
)
def classify(model, paths, backend, precision, top_k, batch_size, workers, threads, output, fmt, resume):
    """Classify images with MODEL.

    PATHS are image files and folders. Folders are read recursively in sorted order, following symbolic
    links; they skip hidden files, files without an image extension, FIFOs, devices and symbolic link
    loops, and the final line counts and names what was skipped. A file named in PATHS is read whatever
    its extension. Where an image's folder is named after a class, the result says whether the model
    was right, and a final line gives the accuracy. A file that is not a readable image gets a result
    with an `error` field; the run goes on and exits 1 at the end.

    A FILE is written as results come, to FILE.partial, renamed to FILE when the run ends: a FILE that
    exists is complete, and a crashed run's results are in FILE.partial (finish it with --resume). Paths
    are written as UTF-8; a file name that is not UTF-8 also gets `path_bytes`, its bytes in base64.
    """
    import pathlib
    import time

    import infer
    from infer.classify import PathError, collect, describe_skipped
    from zoo.text import plural

    try:
        model = rundir.resolve_model(model)
        files, skipped = collect(paths)
    except (rundir.RunError, PathError) as e:
        raise UserError(str(e)) from None
    if not files:
        raise UserError(
            f"no images in {', '.join(paths)} (looked for {', '.join(sorted(_extensions()))}"
            + (f"; {describe_skipped(skipped)}" if skipped else "")
            + ")"
        )
    fmt = fmt or ("table" if output == "-" else "csv" if output.lower().endswith(".csv") else "jsonl")
    out = None if output == "-" else pathlib.Path(output)
    source, carried = _earlier_results(out, fmt, resume)
    try:
        predictor = infer.load(model, backend, precision=precision, threads=threads)
    except (infer.ModelFileError, infer.BackendUnavailable, rundir.RunError, ValueError) as e:
        raise UserError(str(e)) from None
    click.echo(f"{predictor.name}: {predictor.selection}; {predictor.device}", err=True)
    carried, todo = _carry_over(source, carried, files, predictor.card, top_k)

    workers = _default_workers() if workers is None else workers
    width = min(max(len(str(f)) for f in files), 80)
    start = time.perf_counter()
    tally = _stream(
        predictor,
        todo,
        carried,
        _writer(out, fmt, top_k, width, carried),
        out,
        top_k=top_k,
        batch_size=batch_size,
        workers=workers,
    )
    elapsed = time.perf_counter() - start
    new = tally.images - len(carried)
    line = (
        f"{plural(new, 'image')} in {elapsed:.1f} s ({new / elapsed:.1f} img/s, "
        f"{predictor.precision} on {predictor.backend})"
    )
    if tally.errors:
        line += f"; {tally.errors:,} unreadable"
    if skipped:
        line += f"; {describe_skipped(skipped)}"
    click.echo(line, err=True)
    if tally.accuracy is not None:
        click.echo(
            f"accuracy: {tally.accuracy:.2%} ({tally.correct:,}/{plural(tally.labelled, 'image')} whose "
            f"folder names a class)",
            err=True,
        )
    if tally.errors:
        click.get_current_context().exit(1)


def _stream(predictor, todo: list, carried: list, writing, out, **options):
    """Classify `todo` into the writer `writing` opens, flushed per batch; the Tally of `carried` and
    the new results. A crash keeps what was written and says where; a dead worker is one line."""
    import sys

    from tqdm import tqdm

    from infer.classify import Tally, WorkerDied, classify_batches

    tally = Tally()
    for r in carried:
        tally.add(r)
    written = len(carried)
    try:
        with (
            writing as writer,
            tqdm(total=len(todo), unit="img", file=sys.stderr, disable=None, dynamic_ncols=True) as bar,
        ):
            for batch in classify_batches(predictor, todo, progress=bar, **options):
                for result in batch:
                    writer.write(result)
                    tally.add(result)
                writer.flush()
                written += len(batch)
    except WorkerDied as e:
        raise UserError(f"{e}; {_kept(out, written)}") from None
    except OSError as e:
        if out is None or e.filename is None:
            raise
        raise UserError(f"cannot write {out} ({e.strerror or e}); {_kept(out, written)}") from None
    except (Exception, KeyboardInterrupt):
        if out is not None:
            click.echo(_kept(out, written), err=True)
        raise
    return tally


def _earlier_results(out, fmt: str, resume: bool) -> tuple:
    """(the file --resume reads: FILE.partial before FILE, or None where neither exists; its results).
    Without --resume, refuse to overwrite the results a crashed run left in FILE.partial."""
    from infer.classify import ResumeError, partial_path, read_results

    partial = None if out is None else partial_path(out)
    if out is not None and out.is_dir():
        raise UserError(f"--output {out} is a folder; name a file")
    if not resume:
        if partial is not None and partial.exists():
            raise UserError(
                f"{partial} holds the results of an unfinished run: add --resume to finish it, or delete it"
            )
        return None, []
    if out is None or fmt == "table":
        raise UserError("--resume needs an --output FILE in jsonl or csv format")
    source = next((p for p in (partial, out) if p.exists()), None)
    try:
        return source, [] if source is None else read_results(source, fmt)
    except ResumeError as e:
        raise UserError(str(e)) from None


def _carry_over(source, carried: list, files: list, card, top_k: int) -> tuple[list, list]:
    """(results kept from `source`, files still to classify), saying so in a line."""
    import os

    from infer.classify import ResumeError, check_carried, printable
    from zoo.text import plural

    if source is None:
        return [], files
    try:
        check_carried(carried, source, card.class_names, top_k)
    except ResumeError as e:
        raise UserError(str(e)) from None
    unique: dict[bytes, object] = {}
    for r in carried:
        unique.setdefault(os.fsencode(r.path), r)
    carried, done = list(unique.values()), set(unique)
    todo = [f for f in files if os.fsencode(f) not in done]
    others = len(carried) - (len(files) - len(todo))
    click.echo(
        f"carried over {plural(len(carried), 'result')} from {printable(str(source))}"
        + (f" ({others:,} for images not among PATHS)" if others else "")
        + f"; classifying the other {plural(len(todo), 'image')}",
        err=True,
    )
    return carried, todo


def _writer(out, fmt: str, top_k: int, width: int, carried: list):
    import contextlib
    import sys

    from infer.classify import ResultWriter, streamed

    if out is None:
        return contextlib.nullcontext(ResultWriter(fmt, sys.stdout, top_k, path_width=width))
    return streamed(out, fmt, top_k, carried, path_width=width)


def _kept(out, written: int) -> str:
    from infer.classify import partial_path, printable
    from zoo.text import plural

    if out is None:
        return "the results so far are above"
    if not partial_path(out).exists():
        return "no results were kept"
    return (
        f"{plural(written, 'finished result')} kept in {printable(str(partial_path(out)))}: "
        "finish the run with --resume"
    )


def _extensions():
    from zoo.data.preprocess import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS

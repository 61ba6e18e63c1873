"""Classify files and folders of images with a Predictor: one result per image, in order, streamed to a
file that is complete once it exists, and a run killed at any point finished with `resume`.

    >>> predictor = infer.load("runs/lenet5-...")
    >>> summary = classify_paths(predictor, ["digits/"], "out.jsonl", top_k=3)   # what `zoo classify` does
    >>> print("\\n".join(summary.lines()))
    >>> for result in classify(predictor, collect(["digits/"])[0], top_k=3):     # or result by result
    ...     print(result.to_dict())

`plan` checks what a run reads and writes (the paths named and that there is an image: zoo.data.walk;
the earlier results to resume) before a model is loaded; `run` classifies the images not already done
as the walk finds them, writing each batch's results as infer/results.py says, so results stream
before the walk ends and memory does not grow with the tree; `classify_paths` is the two in one call.
Decoding (infer/decoding.py) runs in worker processes, overlapped with inference.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pathlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from zoo import answer
from zoo.data import walk as walker
from zoo.data.preprocess import IMAGE_EXTENSIONS
from zoo.data.walk import PathError, Skips, describe_skipped
from zoo.text import plural

from .decoding import WorkerDied, decoded_batches, default_workers
from .results import (
    OutputError,
    Remaining,
    Result,
    ResultWriter,
    Tally,
    carried_over,
    carry_over,
    default_format,
    earlier_results,
    kept,
    streamed,
)

if TYPE_CHECKING:
    from tqdm import tqdm

    from .predictor import Predictor


def folder_label(path: pathlib.Path, class_names: Sequence[str]) -> str | None:
    """The class the image's folder names (exactly, else ignoring case), or None."""
    parent = path.parent.name
    if parent in class_names:
        return parent
    folded = {c.casefold(): c for c in class_names}
    return folded.get(parent.casefold())


def classify_batches(
    predictor: Predictor,
    files: Iterable[pathlib.Path],
    *,
    top_k: int = answer.DEFAULT_TOP_K,
    batch_size: int = 32,
    workers: int = 2,
    progress: tqdm | None = None,
) -> Iterator[list[Result]]:
    """One list of Results per batch of files, in order, `files` consumed lazily (a batch and the
    decoding's read-ahead at a time). `progress`: a tqdm-like object to `update(n)` per batch."""
    for chunk, decoded in decoded_batches(files, predictor.card, batch_size, workers):
        results = batch_results(predictor, chunk, decoded, top_k)
        if progress is not None:
            progress.update(len(chunk))
        yield results


def batch_results(
    predictor: Predictor, chunk: Sequence[str | os.PathLike], decoded: tuple, top_k: int = answer.DEFAULT_TOP_K
) -> list[Result]:
    """The Results of one batch of files (a path or a URL each) from what decoding.decode made of them:
    the answer for each readable image, the error for each other one. A cluster worker calls it too."""
    x, ok, errors = decoded
    card = predictor.card
    results = [Result(str(p), true_label=folder_label(pathlib.Path(p), card.class_names)) for p in chunk]
    if len(ok):
        for i, top in zip(ok, answer.top_k(predictor.predict(x), card.class_names, top_k)):
            results[i].top = top
    for i, message in errors:
        results[i].error = message
    return results


def classify(predictor: Predictor, files: Iterable[pathlib.Path], **kwargs: Any) -> Iterator[Result]:
    """One Result per file, in order (the options of classify_batches)."""
    for batch in classify_batches(predictor, files, **kwargs):
        yield from batch


@dataclass
class Job:
    """What a classify run reads and writes, checked before a model is loaded (`plan`). Run once: its
    images are a walk still going."""

    images: Iterator[pathlib.Path]  # the images, in order, lazily (zoo.data.walk.images)
    skipped: Skips  # entries of the folders left out, and why: counted as the walk passes them
    output: pathlib.Path | None  # None: a stream (stdout)
    fmt: str  # one of results.FORMATS
    source: pathlib.Path | None = None  # the earlier results carried over (resume)
    carried: list[Result] = field(default_factory=list)  # read from `source`


def plan(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    output: str | os.PathLike | None = None,
    fmt: str | None = None,
    resume: bool = False,
    *,
    follow_links: bool = False,
) -> Job:
    """The images under `paths` (files and folders, or one of them; zoo.data.walk's rules), walked
    lazily: only as far as the first image here, the rest as `run` goes; and the output: a FILE, or None
    (or "-") for a stream; `fmt` by default as results.default_format says; `follow_links`:
    zoo.data.walk's, for links out of the folders named. `resume`: carry over the results already in
    FILE.partial or FILE. PathError for a named path that is not a file or folder, or where there is no
    image; OutputError / ResumeError where the output cannot be used (without `resume`, a FILE.partial
    left by a crashed run is never overwritten)."""
    paths = [str(paths)] if isinstance(paths, (str, os.PathLike)) else [str(p) for p in paths]
    walker.check_named(paths)
    skipped = Skips()
    images = first_found(walker.images(paths, skipped, follow_links), paths, skipped)
    out = None if output is None or str(output) == "-" else pathlib.Path(output)
    fmt = fmt or default_format(out)
    source, carried = earlier_results(out, fmt, resume)
    return Job(images, skipped, out, fmt, source, carried)


def first_found(images: Iterator, paths: Sequence[str], skipped: Skips) -> Iterator:
    """`images` (a listing of `paths` still going), walked now as far as its first image; PathError
    where there is none, saying what was looked for and what was skipped."""
    first = next(images, None)
    if first is None:
        raise PathError(
            f"no images in {', '.join(paths)} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}"
            + (f"; {describe_skipped(skipped)}" if skipped else "")
            + ")"
        )
    return itertools.chain([first], images)


@dataclass
class Summary:
    """What a run did, for its final lines."""

    tally: Tally  # over every result in the output, carried over or new
    carried: int  # results carried over from an earlier run
    seconds: float  # classifying the new ones
    skipped: Skips
    precision: str
    backend: str

    @property
    def new(self) -> int:
        return self.tally.images - self.carried

    def lines(self) -> list[str]:
        """ "12 images in 0.4 s (30.0 img/s, fp32 on onnxruntime); 1 unreadable; 1 file skipped (...)",
        and the accuracy over the images whose folder names a class, where there are any."""
        t = self.tally
        line = (
            f"{plural(self.new, 'image')} in {self.seconds:.1f} s ({self.new / self.seconds:.1f} img/s, "
            f"{self.precision} on {self.backend})"
        )
        if t.errors:
            line += f"; {t.errors:,} unreadable"
        if self.skipped:
            line += f"; {describe_skipped(self.skipped)}"
        if t.accuracy is None:
            return [line]
        return [
            line,
            f"accuracy: {t.accuracy:.2%} ({t.correct:,}/{plural(t.labelled, 'image')} whose folder names a class)",
        ]


def run(
    job: Job,
    predictor: Predictor,
    *,
    top_k: int = answer.DEFAULT_TOP_K,
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    stream: TextIO | None = None,
) -> Summary:
    """Classify the job's images not carried over as its walk finds them, writing every result (carried
    over first) to the job's output, or to `stream` (default stdout) where it has none, batch by batch.
    `workers`: decoding processes (None: decoding.default_workers()); `progress`: a bar on stderr (on a
    terminal); `log`: where the lines about carried-over results (once the walk is through) and kept
    results go. ResumeError where the carried-over results are not this run's; WorkerDied and
    OutputError (a write failed) say where the results so far are."""
    carried, todo = carry_over(job.source, job.carried, job.images, predictor.card.class_names, top_k)
    start = time.perf_counter()  # the walk goes on as the images are classified: its time counts
    head, rest = _head(todo, batch_size)
    width = min(max((len(str(f)) for f in head), default=0), 80)  # the table's path column: the first batch's
    if job.output is None:
        writing = contextlib.nullcontext(ResultWriter(job.fmt, stream or sys.stdout, top_k, path_width=width))
    else:
        writing = streamed(job.output, job.fmt, top_k, carried, path_width=width)
    tally = _stream(
        predictor,
        itertools.chain(head, rest),
        carried,
        writing,
        job.output,
        progress=progress,
        log=log,
        top_k=top_k,
        batch_size=batch_size,
        workers=default_workers() if workers is None else workers,
    )
    seconds = time.perf_counter() - start
    if job.source is not None and log is not None:
        for line in carried_over(job.source, len(carried), todo):
            log(line)
    return Summary(tally, len(carried), seconds, job.skipped, predictor.precision, predictor.backend)


def _head(items: Remaining, n: int) -> tuple[list[pathlib.Path], Iterator[pathlib.Path]]:
    """The first `n` of `items`, and an iterator over the rest."""
    rest = iter(items)
    return list(itertools.islice(rest, n)), rest


def _stream(predictor, todo: Iterable, carried: list, writing, out, *, progress: bool, log, **options) -> Tally:
    """Classify `todo` into the writer `writing` opens, flushed per batch; the Tally of `carried` and
    the new results. A crash keeps what was written and says where."""
    tally = Tally()
    for r in carried:
        tally.add(r)
    written = len(carried)
    try:
        with writing as writer, _bar(progress) as bar:
            for batch in classify_batches(predictor, todo, progress=bar, **options):
                for result in batch:
                    writer.write(result)
                    tally.add(result)
                writer.flush()
                written += len(batch)
    except WorkerDied as e:
        raise WorkerDied(f"{e}; {kept(out, written)}") from None
    except OSError as e:
        if out is None or e.filename is None:
            raise
        raise OutputError(f"cannot write {out} ({e.strerror or e}); {kept(out, written)}") from None
    except (Exception, KeyboardInterrupt):
        if out is not None and log is not None:
            log(kept(out, written))
        raise
    return tally


def _bar(progress: bool):
    """A tqdm bar on stderr (shown only on a terminal; no total, the walk is still going), or nothing."""
    if not progress:
        return contextlib.nullcontext()
    from tqdm import tqdm

    return tqdm(unit="img", file=sys.stderr, disable=None, dynamic_ncols=True)


def classify_paths(
    predictor: Predictor,
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    output: str | os.PathLike | None = None,
    *,
    fmt: str | None = None,
    resume: bool = False,
    follow_links: bool = False,
    **options: Any,
) -> Summary:
    """`plan` and `run` in one call: the images under `paths` classified into `output` (None: a stream),
    as `zoo classify` does it (the options of `run`)."""
    return run(plan(paths, output, fmt, resume, follow_links=follow_links), predictor, **options)

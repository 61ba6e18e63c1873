"""Decoding image files into a model's inputs for `classify`: in worker processes, overlapped with
inference, at most `prefetch` batches ahead of the model, so memory stays bounded on folders of any size
(the files come lazily, as a walk finds them).

Images become model inputs only through zoo.data.preprocess.preprocess, with the predictor's card. The
workers import NumPy and Pillow only (not torch). A worker that dies (killed for memory, say) ends the
run with WorkerDied, never a hang.
"""

from __future__ import annotations

import collections
import io
import itertools
import multiprocessing
import pathlib
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from zoo.card import ModelCard
from zoo.data.preprocess import ImageError, preprocess
from zoo.hardware import usable_cpu_count


class WorkerDied(RuntimeError):
    """A decoding worker process died (killed, out of memory): the run cannot go on."""


def default_workers() -> int:
    """Decoding processes: none on 2 CPUs or fewer, where a decoding process only takes a core from the
    model's threads (measured on 2 cores: resnet18 int8 371 img/s with none, 259 with one; fp32 84 and
    73), else CPUs - 1, at most 4."""
    cpus = usable_cpu_count()
    return 0 if cpus <= 2 else min(4, cpus - 1)


def decode(
    paths: Sequence[str], card: ModelCard, data: Sequence[bytes] | None = None
) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """Preprocess a batch of files: (stacked inputs of the readable ones, their indices, (index, error)
    for the others). Runs in the worker processes. `data`: the files' bytes, already read (a cluster
    worker reads them from wherever they are); the messages still name `paths`."""
    arrays, ok, errors = [], [], []
    for i, path in enumerate(paths):
        try:
            arrays.append(preprocess(path if data is None else _named(data[i], path), card))
            ok.append(i)
        except ImageError as e:
            errors.append((i, str(e)))
        except OSError as e:  # unreadable: permissions, vanished, a folder named like a file
            errors.append((i, f"{path}: cannot read ({e.strerror or e})"))
        except Exception as e:  # whatever else one file does, the run goes on  # noqa: BLE001
            errors.append((i, f"{path}: {type(e).__name__}: {e}"))
    stacked = np.stack(arrays) if arrays else np.zeros((0, *card.input_shape), np.float32)
    return stacked, ok, errors


def _named(data: bytes, name: str) -> io.BytesIO:
    """`data` as a file that zoo.data.preprocess's messages call `name`."""
    f = io.BytesIO(data)
    f.name = name
    return f


def decoded_batches(
    files: Iterable[pathlib.Path], card: ModelCard, batch_size: int, workers: int, prefetch: int | None = None
) -> Iterator[tuple[list[pathlib.Path], tuple]]:
    """(batch of paths, decode(batch)) in order; decoded by `workers` processes (0: in this one)
    that keep up to `prefetch` batches (default 2 per worker) ready ahead of the caller. `files` is
    consumed lazily (a walk still going): at most `prefetch` + 1 batches ahead of the one yielded.
    Raises WorkerDied if a worker process dies."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    files = iter(files)
    chunks = iter(lambda: list(itertools.islice(files, batch_size)), [])
    if workers <= 0:
        for chunk in chunks:
            yield chunk, decode([str(p) for p in chunk], card)
        return
    # spawn: the workers start clean, without the threads an inference library may have started here.
    # concurrent.futures, not multiprocessing.Pool: its pool breaks when a worker dies, where
    # Pool replaces the worker and waits forever for the batch it was decoding.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:

        def submit(chunk):
            return chunk, pool.submit(decode, [str(p) for p in chunk], card)

        pending = collections.deque(submit(c) for c in itertools.islice(chunks, prefetch or 2 * workers))
        while pending:
            chunk, job = pending.popleft()
            try:
                nxt = next(chunks, None)
                if nxt is not None:
                    pending.append(submit(nxt))
                decoded = job.result()
            except BrokenProcessPool:
                raise WorkerDied("a decoding worker process died (killed, perhaps for lack of memory)") from None
            yield chunk, decoded
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

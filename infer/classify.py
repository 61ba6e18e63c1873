"""Classify files and folders of images with a Predictor: decoding in worker processes, overlapped
with inference, one result per image, streamed to a file that is complete once it exists.

    >>> predictor = infer.load("runs/lenet5-...")
    >>> files, skipped = collect(["digits/"])
    >>> for result in classify(predictor, files, top_k=3):
    ...     print(result.to_dict())

Images become model inputs only through zoo.data.preprocess.preprocess, with the predictor's card.
The workers import NumPy and Pillow only (not torch), and they run at most `prefetch` batches ahead
of the model, so memory stays bounded on folders of any size. A worker that dies (killed for memory,
say) ends the run with WorkerDied, never a hang.

File names need not be UTF-8 (a Linux name is bytes). Inside, a path is Python's str of those bytes
(undecodable bytes as lone surrogates); outside, `path` is always valid UTF-8 (undecodable bytes shown
as U+FFFD, for people) and, only for such a name, `path_bytes` holds the name's bytes in base64: the
one lossless form, which `read_results` (and so `zoo classify --resume`) reads back.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import errno
import itertools
import multiprocessing
import os
import pathlib
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

from zoo import answer
from zoo.card import ModelCard
from zoo.data.preprocess import IMAGE_EXTENSIONS, ImageError, preprocess
from zoo.text import plural

if TYPE_CHECKING:
    from tqdm import tqdm

    from .predictor import Predictor

PARTIAL_SUFFIX = ".partial"  # out.jsonl.partial: the results of a run still going, or of one that crashed


class PathError(ValueError):
    """A path named for classification is missing or is not a file or folder to read."""


class WorkerDied(RuntimeError):
    """A decoding worker process died (killed, out of memory): the run cannot go on."""


class ResumeError(ValueError):
    """An earlier output file cannot be read back for --resume; the message names it."""


def printable(text: str) -> str:
    """`text` as valid UTF-8: the undecodable bytes of a file name (lone surrogates) become U+FFFD."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file name decodes to
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def path_bytes(path: str) -> str | None:
    """The base64 of a file name's bytes where the name is not valid UTF-8, else None."""
    try:
        path.encode("utf-8")
        return None
    except UnicodeEncodeError:
        return base64.b64encode(os.fsencode(path)).decode("ascii")


@dataclass
class Result:
    """What `classify` says about one image."""

    path: str  # as the file system gave it (undecodable bytes as lone surrogates)
    top: list[dict] = field(default_factory=list)  # zoo.answer.top_k's {label, index, probability}, best first
    label: str | None = None  # the class its folder names, where the folder names one
    error: str | None = None

    @property
    def correct(self) -> bool | None:
        if self.label is None or not self.top:
            return None
        return self.top[0]["label"] == self.label

    def to_dict(self) -> dict:
        d: dict = {"path": printable(self.path)}
        raw = path_bytes(self.path)
        if raw is not None:
            d["path_bytes"] = raw
        if self.error is not None:
            d["error"] = printable(self.error)
        else:
            d["top_k"] = self.top
        if self.label is not None:
            d["label"] = self.label
            if self.error is None:
                d["correct"] = self.correct
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Result:
        """The inverse of to_dict (a jsonl line read back; a CSV row's labels carry no index)."""
        path = os.fsdecode(base64.b64decode(d["path_bytes"], validate=True)) if d.get("path_bytes") else d["path"]
        if not isinstance(path, str):
            raise TypeError("path is not a string")
        top = [
            {
                "label": str(t["label"]),
                **({"index": int(t["index"])} if "index" in t else {}),
                "probability": float(t["probability"]),
            }
            for t in d.get("top_k", [])
        ]
        return cls(path, top, d.get("label"), d.get("error"))


def _special(mode: int) -> str:
    return (
        "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "not a file"
    )


def _kind(path: pathlib.Path) -> tuple[str, os.stat_result | None]:
    """("dir" | "file" | why it is neither, its stat) for a path, following symbolic links."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ("broken symbolic link" if os.path.islink(path) else "no such file or folder"), None
    except OSError as e:
        return ("symbolic link loop" if e.errno == errno.ELOOP else f"cannot read ({e.strerror or e})"), None
    if stat.S_ISDIR(st.st_mode):
        return "dir", st
    if stat.S_ISREG(st.st_mode):
        return "file", st
    return f"not a regular file ({_special(st.st_mode)})", st


def _walk(folder: pathlib.Path, st: os.stat_result, files: list, skipped: list, above: frozenset) -> None:
    """Images under `folder` in sorted order; symbolic links are followed, except back into a folder
    above (a loop, skipped like the rest: (path, why) in `skipped`)."""
    here = above | {(st.st_dev, st.st_ino)}
    try:
        names = sorted(os.listdir(folder))
    except OSError as e:
        skipped.append((folder, f"cannot read ({e.strerror or e})"))
        return
    for name in names:
        if name.startswith("."):  # hidden: left out, uncounted
            continue
        path = folder / name
        kind, info = _kind(path)
        if kind == "dir":
            if (info.st_dev, info.st_ino) in here:
                skipped.append((path, "symbolic link loop"))
            else:
                _walk(path, info, files, skipped, here)
        elif kind != "file":
            skipped.append((path, kind))
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            files.append(path)
        else:
            skipped.append((path, "no image extension"))


def collect(paths: Iterable[str | os.PathLike]) -> tuple[list[pathlib.Path], list[tuple[pathlib.Path, str]]]:
    """(image files, (path, why) for each entry skipped) for files and folders.

    Folders are walked recursively in sorted order, following symbolic links. Hidden files and folders
    (a name starting with ".") are left out; files without an image extension (IMAGE_EXTENSIONS), FIFOs,
    devices, broken links and symbolic link loops are skipped and listed. A regular file named directly
    is always taken, whatever its name. A named path that is missing or not a regular file or folder
    (a FIFO would block the read forever) raises PathError.
    """
    files: list[pathlib.Path] = []
    skipped: list[tuple[pathlib.Path, str]] = []
    for p in map(pathlib.Path, paths):
        kind, info = _kind(p)
        if kind == "dir":
            _walk(p, info, files, skipped, frozenset())
        elif kind == "file":
            files.append(p)
        else:
            raise PathError(f"{printable(str(p))}: " + kind.replace("regular file (", "regular file or folder ("))
    return files, skipped


def describe_skipped(skipped: Sequence[tuple[pathlib.Path, str]]) -> str:
    """ "3 files skipped (a/notes.txt: no image extension (+1 more); a/loop: symbolic link loop)":
    the first file of each reason, and how many more had it."""
    by_reason: dict[str, list[pathlib.Path]] = {}
    for path, why in skipped:
        by_reason.setdefault(why, []).append(path)
    parts = [
        f"{printable(str(ps[0]))}: {why}" + (f" (+{len(ps) - 1} more)" if len(ps) > 1 else "")
        for why, ps in by_reason.items()
    ]
    return f"{plural(len(skipped), 'file')} skipped ({'; '.join(parts)})"


def folder_label(path: pathlib.Path, class_names: Sequence[str]) -> str | None:
    """The class the image's folder names (exactly, else ignoring case), or None."""
    parent = path.parent.name
    if parent in class_names:
        return parent
    folded = {c.casefold(): c for c in class_names}
    return folded.get(parent.casefold())


def decode(paths: Sequence[str], card: ModelCard) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """Preprocess a batch of files: (stacked inputs of the readable ones, their indices, (index, error)
    for the others). Runs in the worker processes."""
    arrays, ok, errors = [], [], []
    for i, path in enumerate(paths):
        try:
            arrays.append(preprocess(path, card))
            ok.append(i)
        except ImageError as e:
            errors.append((i, str(e)))
        except OSError as e:  # unreadable: permissions, vanished, a folder named like a file
            errors.append((i, f"{path}: cannot read ({e.strerror or e})"))
        except Exception as e:  # whatever else one file does, the run goes on  # noqa: BLE001
            errors.append((i, f"{path}: {type(e).__name__}: {e}"))
    stacked = np.stack(arrays) if arrays else np.zeros((0, *card.input_shape), np.float32)
    return stacked, ok, errors


def decoded_batches(
    files: Sequence[pathlib.Path], card: ModelCard, batch_size: int, workers: int, prefetch: int | None = None
) -> Iterator[tuple[list[pathlib.Path], tuple]]:
    """(batch of paths, decode(batch)) in order; decoded by `workers` processes (0: in this one)
    that keep up to `prefetch` batches (default 2 per worker) ready ahead of the caller.
    Raises WorkerDied if a worker process dies."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    chunks = [list(files[i : i + batch_size]) for i in range(0, len(files), batch_size)]
    if workers <= 0:
        for chunk in chunks:
            yield chunk, decode([str(p) for p in chunk], card)
        return
    # spawn: the workers start clean, without the threads an inference library may have started here.
    # concurrent.futures, not multiprocessing.Pool: its pool breaks when a worker dies, where
    # Pool replaces the worker and waits forever for the batch it was decoding.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        todo = iter(chunks)

        def submit(chunk):
            return chunk, pool.submit(decode, [str(p) for p in chunk], card)

        pending = collections.deque(submit(c) for c in itertools.islice(todo, prefetch or 2 * workers))
        while pending:
            chunk, job = pending.popleft()
            try:
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(submit(nxt))
                decoded = job.result()
            except BrokenProcessPool:
                raise WorkerDied("a decoding worker process died (killed, perhaps for lack of memory)") from None
            yield chunk, decoded
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def classify_batches(
    predictor: Predictor,
    files: Sequence[pathlib.Path],
    *,
    top_k: int = 5,
    batch_size: int = 32,
    workers: int = 2,
    progress: tqdm | None = None,
) -> Iterator[list[Result]]:
    """One list of Results per batch of files, in order. `progress`: a tqdm-like object to
    `update(n)` per batch."""
    card = predictor.card
    for chunk, (x, ok, errors) in decoded_batches(files, card, batch_size, workers):
        results = [Result(str(p), label=folder_label(p, card.class_names)) for p in chunk]
        if len(ok):
            for i, top in zip(ok, answer.top_k(predictor.predict(x), card.class_names, top_k)):
                results[i].top = top
        for i, message in errors:
            results[i].error = message
        if progress is not None:
            progress.update(len(chunk))
        yield results


def classify(predictor: Predictor, files: Sequence[pathlib.Path], **kwargs: Any) -> Iterator[Result]:
    """One Result per file, in order (the options of classify_batches)."""
    for batch in classify_batches(predictor, files, **kwargs):
        yield from batch


@dataclass
class Tally:
    """Counts over a classify run, for the final line."""

    images: int = 0
    errors: int = 0
    labelled: int = 0
    correct: int = 0

    def add(self, r: Result) -> None:
        self.images += 1
        self.errors += r.error is not None
        if r.correct is not None:
            self.labelled += 1
            self.correct += r.correct

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


def csv_header(top_k: int) -> list[str]:
    return (
        ["path", "label", "correct"]
        + [f"{c}{i}" for i in range(1, top_k + 1) for c in ("top", "p")]
        + ["error", "path_bytes"]
    )


class ResultWriter:
    """Writes results as they come: "jsonl" (one JSON object per line, as Result.to_dict), "csv" (a
    header, then path, label, correct, top1, p1 ... topK, pK, error, path_bytes) or "table" (aligned
    columns). Every path is written as valid UTF-8; see the module's notes on path_bytes."""

    FORMATS = ("jsonl", "csv", "table")

    def __init__(self, fmt: str, stream, top_k: int, path_width: int = 40, header: bool = True):
        import csv

        if fmt not in self.FORMATS:
            raise ValueError(f"unknown format {fmt!r}; use {', '.join(self.FORMATS)}")
        self.fmt, self.stream, self.top_k, self.width = fmt, stream, top_k, path_width
        if fmt == "csv":
            self.csv = csv.writer(stream)
            if header:
                self.csv.writerow(csv_header(top_k))
        elif fmt == "table" and header:
            stream.write(f"{'path':<{self.width}}  {'label':<12}  {'ok':<3}  top-{top_k}\n")

    def write(self, r: Result) -> None:
        if self.fmt == "jsonl":
            import json

            self.stream.write(json.dumps(r.to_dict()) + "\n")
        elif self.fmt == "csv":
            tops = [v for t in r.top for v in (t["label"], f"{t['probability']:.6f}")]
            tops += [""] * (2 * self.top_k - len(tops))
            ok = "" if r.correct is None else str(r.correct).lower()
            self.csv.writerow(
                [printable(r.path), r.label or "", ok, *tops, printable(r.error or ""), path_bytes(r.path) or ""]
            )
        else:
            ok = {None: "", True: "yes", False: "no"}[r.correct]
            what = printable(r.error) if r.error else "  ".join(f"{t['label']} {t['probability']:.3f}" for t in r.top)
            self.stream.write(f"{printable(r.path):<{self.width}}  {r.label or '':<12}  {ok:<3}  {what}\n")

    def flush(self) -> None:
        self.stream.flush()


def partial_path(output: str | os.PathLike) -> pathlib.Path:
    """Where a run writing `output` keeps its results until it finishes: `output` + ".partial"."""
    output = pathlib.Path(output)
    return output.with_name(output.name + PARTIAL_SUFFIX)


@contextlib.contextmanager
def streamed(
    output: str | os.PathLike, fmt: str, top_k: int, carried: Sequence[Result] = (), path_width: int = 40
) -> Iterator[ResultWriter]:
    """A ResultWriter onto `output`'s partial file, which holds `carried` first (written atomically,
    so results read from that same file are never lost). Flush it per batch. On success the partial
    file becomes `output` in one rename; on failure it stays, with every result written to it."""
    from zoo import atomic

    partial = partial_path(output)
    with atomic.atomic_path(partial) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = ResultWriter(fmt, f, top_k, path_width)
        for r in carried:
            writer.write(r)
    with open(partial, "a", encoding="utf-8", newline="") as f:
        yield ResultWriter(fmt, f, top_k, path_width, header=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, output)


def read_results(path: str | os.PathLike, fmt: str) -> list[Result]:
    """The results in a jsonl or csv file this module wrote, e.g. by a run that crashed. A last line
    cut short (the process was killed while writing it) is left out; any other bad line raises
    ResumeError naming the file and line."""
    path = pathlib.Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ResumeError(f"{path}: cannot read ({e.strerror or e})") from None
    data = data[: data.rfind(b"\n") + 1]  # whole lines only
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ResumeError(
            f"{printable(str(path))}: not UTF-8 text (byte {e.start}), so not results this command wrote"
        ) from None
    return _read_csv(path, text) if fmt == "csv" else _read_jsonl(path, text)


def _read_jsonl(path: pathlib.Path, text: str) -> list[Result]:
    import json

    results = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            results.append(Result.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ResumeError(
                f"{printable(str(path))}, line {n}: not a result of `zoo classify` ({type(e).__name__}: {e})"
            ) from None
    return results


def _read_csv(path: pathlib.Path, text: str) -> list[Result]:
    import csv
    import io

    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if header is None:
        return []
    k = sum(1 for h in header if h.startswith("top"))
    if header != csv_header(k):
        raise ResumeError(f"{printable(str(path))}: its columns are not those `zoo classify` writes")
    results = []
    for n, row in enumerate(rows, 2):
        try:
            d = dict(zip(header, row, strict=True))
            top = [{"label": d[f"top{i}"], "probability": float(d[f"p{i}"])} for i in range(1, k + 1) if d[f"top{i}"]]
            results.append(
                Result.from_dict(
                    {
                        "path": d["path"],
                        "path_bytes": d["path_bytes"],
                        "top_k": top,
                        "label": d["label"] or None,
                        "error": d["error"] or None,
                    }
                )
            )
        except (ValueError, KeyError) as e:
            raise ResumeError(f"{printable(str(path))}, record {n}: not a result of `zoo classify` ({e})") from None
    return results


def check_carried(results: Sequence[Result], source: pathlib.Path, class_names: Sequence[str], top_k: int) -> None:
    """Refuse results read back from `source` that this run would not have written: labels the model
    does not have, or another number of labels per image (--top-k)."""
    k = min(top_k, len(class_names))
    names = set(class_names)
    for r in results:
        if r.error is None and len(r.top) != k:
            raise ResumeError(
                f"{printable(str(source))}: its results hold {len(r.top)} labels per image and "
                f"this run {k}; resume with the same --top-k"
            )
        if any(t["label"] not in names for t in r.top):
            raise ResumeError(
                f"{printable(str(source))}: its results name labels this model does not have; "
                "resume with the same model"
            )

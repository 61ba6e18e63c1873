"""The results of `classify`, as files: one Result per image, written as it comes ("jsonl", "csv" or
"table") to FILE.partial, flushed per batch and renamed to FILE at the end, and read back to resume.
FILE is a target as zoo.atomic says: a link is followed (FILE.partial beside the file it names), and a
FIFO or device is written straight through (no FILE.partial, so no resume), never replaced.

A JSON line is `{"path", "path_bytes"?, "top_k" | "error", "true_label"?, "correct"?}`: the image's
answer (zoo.answer.image_answer) beside where it came from; `true_label` is the class its folder names
(files before the name `true_label` said `label`, and are still read). Outside, `path` is always valid
UTF-8 (undecodable bytes shown as U+FFFD, for people) and, only for a name that is not UTF-8,
`path_bytes` holds the name's bytes in base64: the one lossless form, which `read_results` (and so
`--resume`) reads back.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pathlib
from collections.abc import Iterable, Iterator, Sequence, Set
from dataclasses import dataclass, field
from typing import TextIO

from zoo import answer, atomic
from zoo.data.walk import printable
from zoo.text import plural

PARTIAL_SUFFIX = ".partial"  # out.jsonl.partial: the results of a run still going, or of one that crashed
FORMATS = ("jsonl", "csv", "table")


class OutputError(atomic.OutputError):
    """The output file cannot be used (a folder, unwritable...); the message names it."""


class ResumeError(OutputError):
    """An earlier output file cannot be read back for --resume (or would be lost without it)."""


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
    true_label: str | None = None  # the class its folder names, where the folder names one
    error: str | None = None

    @property
    def correct(self) -> bool | None:
        if self.true_label is None or not self.top:
            return None
        return self.top[0]["label"] == self.true_label

    def to_dict(self) -> dict:
        d: dict = {"path": printable(self.path)}
        raw = path_bytes(self.path)
        if raw is not None:
            d["path_bytes"] = raw
        if self.error is not None:
            d["error"] = printable(self.error)
        else:
            d.update(answer.image_answer(self.top))
        if self.true_label is not None:
            d["true_label"] = self.true_label
            if self.error is None:
                d["correct"] = self.correct
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Result:
        """The inverse of to_dict (a jsonl line read back, `label` for `true_label` in older files; a CSV
        row's labels carry no index)."""
        path = os.fsdecode(base64.b64decode(d["path_bytes"], validate=True)) if d.get("path_bytes") else d["path"]
        if not isinstance(path, str):
            raise TypeError("path is not a string")
        return cls(path, answer.read_top(d), d.get("true_label", d.get("label")), d.get("error"))


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


def default_format(output: str | os.PathLike | None) -> str:
    """The format where none is named: table on stdout (None), csv for a FILE ending in .csv, else jsonl."""
    if output is None:
        return "table"
    return "csv" if str(output).lower().endswith(".csv") else "jsonl"


def csv_header(top_k: int) -> list[str]:
    return (
        ["path", "label", "correct"]
        + [f"{c}{i}" for i in range(1, top_k + 1) for c in ("top", "p")]
        + ["error", "path_bytes"]
    )


class ResultWriter:
    """Writes results as they come: "jsonl" (one JSON object per line, as Result.to_dict), "csv" (a
    header, then path, label (the true class), correct, top1, p1 ... topK, pK, error, path_bytes) or
    "table" (aligned columns). Every path is written as valid UTF-8; see the module's notes on path_bytes."""

    def __init__(self, fmt: str, stream: TextIO, top_k: int, path_width: int = 40, header: bool = True):
        import csv

        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; use {', '.join(FORMATS)}")
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
                [printable(r.path), r.true_label or "", ok, *tops, printable(r.error or ""), path_bytes(r.path) or ""]
            )
        else:
            ok = {None: "", True: "yes", False: "no"}[r.correct]
            what = printable(r.error) if r.error else "  ".join(f"{t['label']} {t['probability']:.3f}" for t in r.top)
            self.stream.write(f"{printable(r.path):<{self.width}}  {r.true_label or '':<12}  {ok:<3}  {what}\n")

    def flush(self) -> None:
        self.stream.flush()


def partial_path(output: str | os.PathLike) -> pathlib.Path:
    """Where a run writing `output` keeps its results until it finishes: `output` + ".partial" (a link
    followed: beside the file it names, zoo.atomic.target)."""
    output = atomic.target(output)
    return output.with_name(output.name + PARTIAL_SUFFIX)


@contextlib.contextmanager
def streamed(
    output: str | os.PathLike, fmt: str, top_k: int, carried: Sequence[Result] = (), path_width: int = 40
) -> Iterator[ResultWriter]:
    """A ResultWriter onto `output`'s partial file, which holds `carried` first (written atomically,
    so results read from that same file are never lost). Flush it per batch. On success the partial
    file becomes `output` (a link: the file it names) in one rename; on failure it stays, with every
    result written to it. A FIFO or device (zoo.atomic.is_stream) is written straight through."""
    if atomic.is_stream(output):
        with open(output, "w", encoding="utf-8", newline="") as f:
            yield ResultWriter(fmt, f, top_k, path_width)
        return
    partial = partial_path(output)
    with atomic.atomic_path(partial) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = ResultWriter(fmt, f, top_k, path_width)
        for r in carried:
            writer.write(r)
    with open(partial, "a", encoding="utf-8", newline="") as f:
        yield ResultWriter(fmt, f, top_k, path_width, header=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, atomic.target(output))


def kept(output: pathlib.Path | None, written: int) -> str:
    """What a run that stopped early leaves, for its last line: where its results are, and how to finish."""
    if output is None:
        return "the results so far are above"
    if atomic.is_stream(output):
        return f"the results so far went to {printable(str(output))}"
    if not partial_path(output).exists():
        return "no results were kept"
    return (
        f"{plural(written, 'finished result')} kept in {printable(str(partial_path(output)))}: "
        "finish the run with --resume"
    )


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
                        "true_label": d["label"] or None,
                        "error": d["error"] or None,
                    }
                )
            )
        except (ValueError, KeyError) as e:
            raise ResumeError(f"{printable(str(path))}, record {n}: not a result of `zoo classify` ({e})") from None
    return results


def earlier_results(output: pathlib.Path | None, fmt: str, resume: bool) -> tuple[pathlib.Path | None, list[Result]]:
    """(the file --resume reads: FILE.partial before FILE, or None where neither exists; its results).
    Without `resume`, refuse to overwrite the results a crashed run left in FILE.partial (ResumeError)."""
    partial = None if output is None else partial_path(output)
    if output is not None and output.is_dir():
        raise OutputError(f"--output {output} is a folder; name a file")
    stream = output is not None and atomic.is_stream(output)  # (a socket: zoo.atomic.OutputError)
    if not resume:
        if partial is not None and partial.exists():
            raise ResumeError(
                f"{partial} holds the results of an unfinished run: add --resume to finish it, or delete it"
            )
        return None, []
    if output is None or fmt == "table":
        raise ResumeError("--resume needs an --output FILE in jsonl or csv format")
    if stream:
        raise ResumeError(
            f"--resume needs a regular --output FILE; {printable(str(output))} is a FIFO or device, written "
            "straight through"
        )
    source = next((p for p in (partial, output) if p.exists()), None)
    return source, [] if source is None else read_results(source, fmt)


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


class Remaining:
    """The images of a walk still to classify, lazily: those whose results were not carried over
    (`done`: their names' bytes), counting as they pass how many were done already and how many not."""

    def __init__(self, files: Iterable[pathlib.Path], done: Set[bytes] = frozenset(), dropped: Sequence = ()):
        self.files, self.done = files, done
        self.dropped = list(dropped)  # earlier results not carried over: their files are no longer there
        self.found = 0  # images of the walk whose results were carried over
        self.todo = 0  # images of the walk still to classify

    def __iter__(self) -> Iterator[pathlib.Path]:
        for f in self.files:
            if self.done and os.fsencode(f) in self.done:
                self.found += 1
            else:
                self.todo += 1
                yield f


def carry_over(
    source: pathlib.Path | None,
    carried: Sequence[Result],
    files: Iterable[pathlib.Path],
    class_names: Sequence[str],
    top_k: int,
) -> tuple[list[Result], Remaining]:
    """(results kept from `source`, one per path; the files still to classify, lazily). The results for
    files no longer there are not carried over (`Remaining.dropped` has them, `carried_over` says so).
    ResumeError where the results are not this run's (check_carried)."""
    if source is None:
        return [], Remaining(files)
    check_carried(carried, source, class_names, top_k)
    unique: dict[bytes, Result] = {}
    dropped: list[Result] = []
    for r in carried:
        key = os.fsencode(r.path)
        if os.path.lexists(key):
            unique.setdefault(key, r)
        else:
            dropped.append(r)
    return list(unique.values()), Remaining(files, set(unique), dropped)


def carried_over(source: pathlib.Path, kept_results: int, remaining: Remaining) -> list[str]:
    """The lines that say what a resumed run carried over, once its walk is through: "dropped 1 earlier
    result for files no longer there (first: a/b.png)" where any were, and "carried over 4 results from
    out.jsonl.partial; classifying the other 6 images"."""
    others = kept_results - remaining.found
    lines = (
        [
            f"dropped {plural(len(remaining.dropped), 'earlier result')} for files no longer there "
            f"(first: {printable(remaining.dropped[0].path)})"
        ]
        if remaining.dropped
        else []
    )
    return lines + [
        f"carried over {plural(kept_results, 'result')} from {printable(str(source))}"
        + (f" ({others:,} for images not among PATHS)" if others else "")
        + f"; classifying the other {plural(remaining.todo, 'image')}"
    ]

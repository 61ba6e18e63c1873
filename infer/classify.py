"""Classify files and folders of images with a Predictor: decoding in worker processes, overlapped
with inference, one result per image.

    >>> predictor = infer.load("runs/lenet5-...")
    >>> files, skipped = collect(["digits/"])
    >>> for result in classify(predictor, files, top_k=3):
    ...     print(result.to_dict())

Images become model inputs only through zoo.data.preprocess.preprocess, with the predictor's card.
The workers import NumPy and Pillow only (not torch), and they run at most `prefetch` batches ahead
of the model, so memory stays bounded on folders of any size.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import pathlib
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

from zoo.card import ModelCard
from zoo.data.preprocess import IMAGE_EXTENSIONS, ImageError, preprocess


@dataclass
class Result:
    """What `classify` says about one image."""

    path: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (label, softmax probability), best first
    label: str | None = None  # the class its folder names, where the folder names one
    error: str | None = None

    @property
    def correct(self) -> bool | None:
        if self.label is None or not self.top:
            return None
        return self.top[0][0] == self.label

    def to_dict(self) -> dict:
        d: dict = {"path": self.path}
        if self.error is not None:
            d["error"] = self.error
        else:
            d["top_k"] = [{"label": lab, "probability": round(p, 6)} for lab, p in self.top]
        if self.label is not None:
            d["label"] = self.label
            if self.error is None:
                d["correct"] = self.correct
        return d


def _hidden(path: pathlib.Path, root: pathlib.Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def collect(paths: Iterable[str | os.PathLike]) -> tuple[list[pathlib.Path], int]:
    """(image files, count of other files skipped) for files and folders.

    Folders are walked recursively in sorted order; hidden files and folders (a name starting with
    ".") and files without an image extension are skipped there. A file named directly is always
    taken, whatever its name. Missing paths raise FileNotFoundError.
    """
    files: list[pathlib.Path] = []
    skipped = 0
    for p in map(pathlib.Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if not f.is_file() or _hidden(f, p):
                    continue
                if f.suffix.lower() in IMAGE_EXTENSIONS:
                    files.append(f)
                else:
                    skipped += 1
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return files, skipped


def folder_label(path: pathlib.Path, class_names: Sequence[str]) -> str | None:
    """The class the image's folder names (exactly, else ignoring case), or None."""
    parent = path.parent.name
    if parent in class_names:
        return parent
    folded = {c.casefold(): c for c in class_names}
    return folded.get(parent.casefold())


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ranked(logits: np.ndarray, class_names: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    """The k most probable (label, softmax probability) per row, best first."""
    probs = softmax(logits)
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(class_names[j], float(row[j])) for j in idx] for row, idx in zip(probs, order)]


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


def decoded_batches(files: Sequence[pathlib.Path], card: ModelCard, batch_size: int, workers: int,
                    prefetch: int | None = None) -> Iterator[tuple[list[pathlib.Path], tuple]]:
    """(batch of paths, decode(batch)) in order; decoded by `workers` processes (0: in this one)
    that keep up to `prefetch` batches (default 2 per worker) ready ahead of the caller."""
    chunks = [list(files[i:i + batch_size]) for i in range(0, len(files), batch_size)]
    if workers <= 0:
        for chunk in chunks:
            yield chunk, decode([str(p) for p in chunk], card)
        return
    # spawn: the workers start clean, without the threads an inference library may have started here
    ctx = multiprocessing.get_context("spawn")
    prefetch = prefetch or 2 * workers
    with ctx.Pool(workers) as pool:
        pending: collections.deque = collections.deque()
        todo = iter(chunks)
        for chunk in todo:
            pending.append((chunk, pool.apply_async(decode, ([str(p) for p in chunk], card))))
            if len(pending) >= prefetch:
                break
        while pending:
            chunk, job = pending.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, pool.apply_async(decode, ([str(p) for p in nxt], card))))
            yield chunk, job.get()


def classify(predictor, files: Sequence[pathlib.Path], *, top_k: int = 5, batch_size: int = 32,
             workers: int = 2, progress=None) -> Iterator[Result]:
    """One Result per file, in order. `progress`: a tqdm-like object to `update(n)` per batch."""
    card = predictor.card
    for chunk, (x, ok, errors) in decoded_batches(files, card, batch_size, workers):
        results = [Result(str(p), label=folder_label(p, card.class_names)) for p in chunk]
        if len(ok):
            for i, top in zip(ok, ranked(predictor.predict(x), card.class_names, top_k)):
                results[i].top = top
        for i, message in errors:
            results[i].error = message
        if progress is not None:
            progress.update(len(chunk))
        yield from results


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


class ResultWriter:
    """Writes results as they come: "jsonl" (one JSON object per line), "csv" (a header, then path,
    label, correct, top1, p1 ... topK, pK, error) or "table" (aligned columns)."""

    FORMATS = ("jsonl", "csv", "table")

    def __init__(self, fmt: str, stream, top_k: int, path_width: int = 40):
        import csv

        if fmt not in self.FORMATS:
            raise ValueError(f"unknown format {fmt!r}; use {', '.join(self.FORMATS)}")
        self.fmt, self.stream, self.top_k, self.width = fmt, stream, top_k, path_width
        if fmt == "csv":
            self.csv = csv.writer(stream)
            self.csv.writerow(["path", "label", "correct"]
                              + [f"{c}{i}" for i in range(1, top_k + 1) for c in ("top", "p")] + ["error"])
        elif fmt == "table":
            stream.write(f"{'path':<{self.width}}  {'label':<12}  {'ok':<3}  top-{top_k}\n")

    def write(self, r: Result) -> None:
        if self.fmt == "jsonl":
            import json

            self.stream.write(json.dumps(r.to_dict()) + "\n")
        elif self.fmt == "csv":
            tops = [v for lab, p in r.top for v in (lab, f"{p:.6f}")]
            tops += [""] * (2 * self.top_k - len(tops))
            ok = "" if r.correct is None else str(r.correct).lower()
            self.csv.writerow([r.path, r.label or "", ok, *tops, r.error or ""])
        else:
            ok = {None: "", True: "yes", False: "no"}[r.correct]
            what = r.error if r.error else "  ".join(f"{lab} {p:.3f}" for lab, p in r.top)
            self.stream.write(f"{r.path:<{self.width}}  {r.label or '':<12}  {ok:<3}  {what}\n")

"""Datasets: what `--data` names, split into train / val / test, as uint8 images at the card's size.

    source = open_source("mnist-small", val_split=0.1)   # or "mnist", an IDX directory, an image folder
    source.class_names, source.channels                   # what the model card needs
    sets, skipped = source.load(card)                     # {"train": ImageSet, "val": ..., "test": ...}
    for x, y in sets["train"].batches(128, shuffle=True, seed=0, epoch=3):
        x = standardize(to_unit(x.to(device)), card)      # float32 NCHW, exactly as `preprocess` makes it

Images stay uint8 until they reach the training device, where they become floats in [0, 1] (the
augmentations work there) and are then standardized with the card's mean/std. Image files go through
`zoo.data.preprocess.prepare` (decode, colour mode, DIGITS resize): the first half of `preprocess`, so
training sees exactly what `classify` and the server see. Small image folders are decoded once into
memory; large ones are decoded batch by batch in DataLoader workers.
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..card import ModelCard
from . import SPLITS, mnist, walk
from .preprocess import IMAGE_EXTENSIONS, UNIT, ImageError, Normalization, normalization, prepare

SMALL = "mnist-small"
MNIST = "mnist"
FOLDER = "folder"  # `kind` of any other --data: an image folder (or nothing)
CACHE_LIMIT_BYTES = 2 << 30  # image folders whose decoded images fit in this stay in memory


class DataError(ValueError):
    """Unusable data (empty folder, one class, no images of a readable kind...): one line to the user."""


@dataclass
class RawSplit:
    """Labels with either MNIST digits (uint8 [N, 28, 28]) or image file paths."""

    labels: np.ndarray
    images: np.ndarray | None = None
    files: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> "RawSplit":
        return RawSplit(
            self.labels[idx],
            None if self.images is None else self.images[idx],
            None if self.files is None else [self.files[i] for i in idx],
        )


@dataclass
class Source:
    """The data a `--data` value names: class names and the raw train / val / test splits."""

    name: str
    class_names: list[str]
    splits: dict[str, RawSplit]
    notes: dict = field(default_factory=dict)  # how the splits were made, for the card's provenance
    ignored: list[str] = field(default_factory=list)  # files in the folders of another kind than images

    @property
    def channels(self) -> int | None:
        """1 for MNIST digits; None for image files (they take the model's colour mode)."""
        return 1 if self.splits["train"].images is not None else None

    def describe(self) -> dict:
        return {"source": self.name, **{s: len(r) for s, r in self.splits.items()}, **self.notes}

    def load(
        self, card: ModelCard, workers: int = 0, cache_limit: int = CACHE_LIMIT_BYTES, progress: bool = True
    ) -> tuple[dict[str, "ImageSet"], list[str]]:
        """Each split as an ImageSet at the card's input shape; also the files skipped (not of an image
        kind, or not decodable), "path: why" each."""
        sets, skipped = {}, list(self.ignored)
        for name, raw in self.splits.items():
            if raw.images is not None:
                sets[name] = ImageSet(torch.from_numpy(raw.labels), images=_digits(raw.images, card))
                continue
            files = _Files(raw.files, raw.labels, card)
            if len(raw) * int(np.prod(card.input_shape)) > cache_limit:
                sets[name] = ImageSet(torch.from_numpy(raw.labels), files=files, workers=workers)
                continue
            images, labels, bad = files.decode_all(workers, desc=f"decoding {name}" if progress else None)
            skipped += bad
            if len(labels) == 0:
                raise DataError(f"{self.name}: none of the {len(raw)} {name} images could be decoded (first: {bad[0]})")
            sets[name] = ImageSet(labels, images=images)
        return sets, skipped


def kind(spec: str) -> str:
    """What a --data value is, for the recipes of zoo/models ("mnist-small", "mnist" for the full set or
    any directory of MNIST IDX files, else "folder"); reads nothing but the directory's file names."""
    if spec == SMALL:
        return SMALL
    if spec == MNIST or mnist.is_idx_dir(pathlib.Path(spec).expanduser()):
        return MNIST
    return FOLDER


def open_source(
    spec: str,
    *,
    val_split: float = 0.0,
    val_dir: str | None = None,
    test_dir: str | None = None,
    test_split: float | None = None,
    seed: int = 0,
    class_names: list[str] | None = None,
) -> Source:
    """Resolve `spec` ("mnist-small", "mnist", an IDX directory or an image folder) and make the splits.

    val_split / test_split: a fraction (< 1) or a number of images taken out of train; validation is a
    stratified random pick (seeded), the test hold-out is the last images of MNIST IDX files (the order
    their creators gave) and a stratified random pick of an image folder. val_dir / test_dir: image
    folders with (some of) the training classes. class_names: a trained model's classes, to label the
    data with (evaluation): the data's classes must be among them, and one class is enough.
    """
    notes: dict = {}
    ignored: list[str] = []
    names, splits = _read(spec, class_names, ignored)
    if class_names is not None:
        return Source(spec, list(class_names), _relabel(splits, names, class_names, spec), ignored=ignored)
    if "train" not in splits:  # only the official t10k files: data to evaluate on, not to train on
        raise DataError(
            f"{spec}: only MNIST test files (t10k-*); training needs train-images-idx3-ubyte[.gz] "
            f"and train-labels-idx1-ubyte[.gz] (evaluate a run on it: zoo evaluate RUN --data {spec})"
        )
    _check_classes(splits["train"], names, f"{spec} (train)")
    _hold_out_test(spec, splits, names, test_dir, test_split, seed, notes, ignored)
    if val_dir:
        splits["val"] = scan_folder(val_dir, names, ignored)[1]
    elif val_split:
        train = splits["train"]
        keep, take = stratified(train.labels, _count(val_split, len(train), "--val-split"), seed)
        splits["train"], splits["val"] = train.subset(keep), train.subset(take)
        notes["val_split"] = f"{len(take)} random of train (seed {seed})"
    for name in SPLITS[1:]:
        if name in splits and len(splits[name]) == 0:
            raise DataError(f"{spec}: the {name} split is empty")
    _check_classes(splits["train"], names, f"{spec} (train after the splits)")
    return Source(spec, list(names), {k: splits[k] for k in SPLITS if k in splits}, notes, ignored)


def _read(spec: str, class_names: list[str] | None, ignored: list[str]) -> tuple[list[str], dict[str, RawSplit]]:
    """(class names, the splits the data comes with) for what a --data value names."""
    path, data = pathlib.Path(spec).expanduser(), kind(spec)
    if data == SMALL:
        return mnist.CLASS_NAMES, {k: RawSplit(y, images=x) for k, (x, y) in mnist.load_small().items()}
    if data == MNIST:
        try:
            root = mnist.ensure_downloaded(mnist.mnist_root()) if spec == MNIST else path
            return mnist.CLASS_NAMES, {k: RawSplit(y, images=x) for k, (x, y) in mnist.load_dir(root).items()}
        except mnist.MnistError as e:
            raise DataError(str(e)) from None
    if path.is_dir():
        names, train = scan_folder(path, class_names, ignored)
        return names, {"train": train}
    raise DataError(
        f"--data {spec}: no such directory; use {SMALL}, {MNIST}, a directory of MNIST "
        "IDX files or an image folder (one subfolder per class)"
    )


def _hold_out_test(
    spec: str,
    splits: dict[str, RawSplit],
    names: list[str],
    test_dir: str | None,
    test_split: float | None,
    seed: int,
    notes: dict,
    ignored: list[str],
) -> None:
    """Add the test split to `splits`: a folder, or held out of train (MNIST: its last images)."""
    if test_dir:
        if "test" in splits:
            raise DataError(f"{spec} has its own test split; leave out --test")
        splits["test"] = scan_folder(test_dir, names, ignored)[1]
    elif test_split:
        if "test" in splits:
            raise DataError(f"{spec} has its own test split; leave out --test-split")
        train = splits["train"]
        n = _count(test_split, len(train), "--test-split")
        if train.images is not None:  # MNIST: the last n images, as the literature holds them out
            keep, take = np.arange(len(train) - n), np.arange(len(train) - n, len(train))
            notes["test_split"] = f"last {n} of train"
        else:
            keep, take = stratified(train.labels, n, seed + 1)
            notes["test_split"] = f"{n} random of train (seed {seed + 1})"
        splits["train"], splits["test"] = train.subset(keep), train.subset(take)


def scan_folder(
    root: str | os.PathLike, class_names: list[str] | None = None, ignored: list[str] | None = None
) -> tuple[list[str], RawSplit]:
    """An image folder (one subfolder per class) -> (class names, files and labels).

    With `class_names` (a validation or test folder), its classes must be among them. Each class's
    subfolder is read as zoo.data.walk reads folders (recursively, following symbolic links, hidden
    entries left out); files of other kinds (by extension) and the other entries it skips (FIFOs, broken
    links, link loops) are left out and appended to `ignored`, "path: why" each.
    """
    root = pathlib.Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        loose = any(p.suffix.lower() in IMAGE_EXTENSIONS for p in root.iterdir())
        raise DataError(
            f"{root}: "
            + (
                "images but no class subfolders; put each class's images in a subfolder named after the class"
                if loose
                else "empty folder (expected one subfolder of images per class)"
            )
        )
    names = list(class_names) if class_names is not None else classes
    unknown = sorted(set(classes) - set(names))
    if unknown:
        raise DataError(f"{root}: classes {', '.join(unknown)} are not among the training classes ({', '.join(names)})")
    files, labels = [], []
    for cls in classes:
        images, skipped = walk.collect([root / cls], tree=root)  # links may go across classes
        images = sorted(map(str, images))
        others = sorted(str(p) for p, why in skipped if why == "no image extension")
        if ignored is not None:
            kinds = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
            ignored += [f"{f}: not an image kind ({kinds})" for f in others]
            ignored += [f"{p}: {why}" for p, why in skipped if why != "no image extension"]
        if not images:
            kinds = sorted({pathlib.Path(f).suffix.lower() or "(no extension)" for f in others})
            what = f"only {', '.join(kinds)} files" if kinds else "no files"
            raise DataError(
                f"{root / cls}: {what}; images must be one of {', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)}"
            )
        files += images
        labels += [names.index(cls)] * len(images)
    return names, RawSplit(np.asarray(labels, np.int64), files=files)


def _relabel(splits: dict[str, RawSplit], names: list[str], class_names: list[str], spec: str):
    """Labels as indices into class_names (a model's classes), which must hold all of `names`."""
    missing = [n for n in names if n not in class_names]
    if missing:
        raise DataError(
            f"{spec}: classes {', '.join(missing)} are not among the model's classes ({', '.join(class_names)})"
        )
    to_model = np.asarray([class_names.index(n) for n in names], np.int64)
    return {k: RawSplit(to_model[r.labels], r.images, r.files) for k, r in splits.items()}


def _check_classes(split: RawSplit, names: list[str], what: str) -> None:
    present = np.unique(split.labels)
    if len(split) == 0:
        raise DataError(f"{what}: no images")
    if len(present) < 2:
        only = names[present[0]] if len(present) else "none"
        raise DataError(f"{what}: only one class ({only}); a classifier needs at least two")


def _count(amount: float, n: int, option: str) -> int:
    """A fraction (< 1) or a count of n images; at least one, and never all of them."""
    k = int(round(amount * n)) if amount < 1 else int(amount)
    if not 0 < k < n:
        raise DataError(f"{option} {amount:g} leaves no images on one side of {n}")
    return k


def stratified(labels: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep, take) indices: `take` holds exactly k images chosen at random, each class in proportion."""
    order = np.random.default_rng(seed).permutation(len(labels))
    rank = np.empty(len(labels))  # position within its class in the random order, as a fraction
    for c in np.unique(labels):
        members = order[labels[order] == c]
        rank[members] = (np.arange(len(members)) + 0.5) / len(members)
    take = np.sort(order[np.argsort(rank[order], kind="stable")[:k]])
    return np.setdiff1d(np.arange(len(labels)), take), take


def _chw(arr: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.array(arr))  # a writable copy (PIL hands out read-only arrays)
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1)


def _digits(images: np.ndarray, card) -> torch.Tensor:
    """MNIST digits as uint8 [N, C, H, W] at the card's input shape (through `prepare` if they must change)."""
    if list(card.input_shape) == [1, *images.shape[1:]]:
        return torch.from_numpy(images)[:, None]
    from PIL import Image

    return torch.stack([_chw(prepare(Image.fromarray(img), card)) for img in images])


class _Files(torch.utils.data.Dataset):
    """Image files decoded by `prepare`; an undecodable file gives None (the collate drops it)."""

    def __init__(self, files: list[str], labels: np.ndarray, card):
        self.files, self.labels, self.card = files, labels, card

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):
        try:
            return _chw(prepare(self.files[i], self.card)), int(self.labels[i]), None
        except ImageError as e:
            return None, None, str(e)

    @staticmethod
    def collate(items):
        ok = [(x, y) for x, y, _ in items if x is not None]
        bad = [err for x, _, err in items if x is None]
        if not ok:
            return None, None, bad
        return torch.stack([x for x, _ in ok]), torch.tensor([y for _, y in ok]), bad

    def decode_all(self, workers: int, desc: str | None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        from tqdm import tqdm

        loader = torch.utils.data.DataLoader(self, batch_size=32, num_workers=workers, collate_fn=self.collate)
        xs, ys, bad = [], [], []
        for x, y, errors in tqdm(
            loader, desc=desc, unit="batch", leave=False, disable=True if desc is None else None
        ):  # None: only on a terminal
            bad += errors
            if x is not None:
                xs.append(x)
                ys.append(y)
        if not xs:
            return torch.empty(0, *self.card.input_shape, dtype=torch.uint8), torch.empty(0), bad
        return torch.cat(xs), torch.cat(ys), bad


class ImageSet:
    """One split: uint8 images at the card's input shape with int64 labels, in memory or on disk."""

    def __init__(
        self, labels: torch.Tensor, images: torch.Tensor | None = None, files: _Files | None = None, workers: int = 0
    ):
        self.labels, self.images, self.files, self.workers = labels, images, files, workers
        self.failed: list[str] = []  # files that could not be decoded while streaming

    def __len__(self) -> int:
        return len(self.labels)

    def num_batches(self, batch_size: int, world: int = 1, drop_last: bool = False) -> int:
        """How many batches `batches(..., shuffle=True)` yields to each of `world` processes."""
        share = -(-len(self) // world)  # the DistributedSampler pads every share to the same length
        return share // batch_size if drop_last and share > batch_size else -(-share // batch_size)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world: int = 1,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (uint8 images [B, C, H, W], int64 labels [B]) for this process's share of the split.

        Shuffled: a DistributedSampler permutation seeded with seed + epoch, so every epoch's order is
        a function of (seed, epoch) alone and each of `world` processes gets an equal share. In order:
        every world-th image from `rank`, each image exactly once over all processes.
        """
        n = len(self)
        if shuffle:
            sampler = torch.utils.data.DistributedSampler(
                range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed
            )
            sampler.set_epoch(epoch)
            order = list(sampler)
        else:
            order = list(range(rank, n, world))
        drop = drop_last and len(order) > batch_size
        chunks = list(torch.utils.data.BatchSampler(order, batch_size, drop_last=drop))
        if self.images is not None:
            for idx in chunks:
                idx = torch.as_tensor(idx)
                yield self.images[idx], self.labels[idx]
            return
        loader = torch.utils.data.DataLoader(
            self.files, batch_sampler=chunks, num_workers=self.workers, collate_fn=_Files.collate
        )
        for x, y, errors in loader:
            self.failed += errors
            if x is not None:
                yield x, y


# torch's side of `preprocess.normalize`: the constants are preprocess's (UNIT, `normalization(card)`),
# applied in the same float32 order, so a batch here is bit for bit what `preprocess` makes.
_UNIT = torch.from_numpy(np.asarray(UNIT))


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] (the first step of `preprocess.normalize`)."""
    return x.float() * _UNIT.to(x.device)


def standardize(x: torch.Tensor, card: ModelCard) -> torch.Tensor:
    """Subtract the card's mean and divide by its std, per channel (the rest of `normalize`)."""
    mean, std = _on_device(normalization(card), x.device)
    return (x - mean) / std


@functools.lru_cache(maxsize=16)
def _on_device(norm: Normalization, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = norm.arrays()
    return torch.tensor(mean, device=device), torch.tensor(std, device=device)  # (copies: the arrays are shared)

"""MNIST: the IDX file reader, the download from the canonical mirrors, and the embedded MNIST-small.

    read_idx("train-images-idx3-ubyte.gz")  -> uint8 array [60000, 28, 28]
    load_dir("path/to/idx-dir")             -> {"train": (images, labels), "test": (...)?}
    ensure_downloaded(mnist_root())         -> the directory, with the four files in it
    load_small()                            -> the embedded stratified subset (train and test)

NumPy only (the download is zoo.download's); nothing here imports torch.
"""

from __future__ import annotations

import gzip
import os
import pathlib

import numpy as np

from .. import download

# The files of the MNIST distribution and their MD5 checksums (as published with the data set).
FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# Tried in order; ZOO_MNIST_MIRRORS (comma-separated URLs) replaces the list.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
SPLITS = {"train": "train", "test": "t10k"}  # split -> file prefix
CLASS_NAMES = [str(d) for d in range(10)]
SMALL_FILE = pathlib.Path(__file__).with_name("mnist_small.npz")

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class MnistError(ValueError):
    """Missing, corrupt or undownloadable MNIST files; the message says what to do."""


def mnist_root() -> pathlib.Path:
    """Where `--data mnist` lives: $ZOO_DATA/mnist, by default the cache root's mnist/ folder."""
    return pathlib.Path(os.environ.get("ZOO_DATA") or download.cache_dir()) / "mnist"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (raw, or gzip-compressed when its name ends in .gz) as a NumPy array."""
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise MnistError(f"{path}: cannot read ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise MnistError(f"{path}: not an IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    body = data[4 + 4 * ndim :]
    if len(body) != int(np.prod(dims)) * dtype.itemsize:
        raise MnistError(f"{path}: IDX header says {dims} but the file holds {len(body)} bytes")
    return np.frombuffer(body, dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _find(directory: pathlib.Path, name: str) -> pathlib.Path | None:
    """`name` (ending .gz) or its uncompressed form; the gzip file first."""
    for candidate in (directory / name, directory / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def is_idx_dir(directory: str | os.PathLike) -> bool:
    """A directory with MNIST IDX images of either split (only the t10k files: a test set to evaluate on)."""
    directory = pathlib.Path(directory)
    return directory.is_dir() and any(
        _find(directory, f"{prefix}-images-idx3-ubyte.gz") is not None for prefix in SPLITS.values()
    )


def load_dir(directory: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images uint8 [N, 28, 28], labels int64 [N]), "test": ...}: each split whose files
    exist (the official test files alone make a test split); at least one of them."""
    directory = pathlib.Path(directory)
    splits = {}
    for split, prefix in SPLITS.items():
        images = _find(directory, f"{prefix}-images-idx3-ubyte.gz")
        labels = _find(directory, f"{prefix}-labels-idx1-ubyte.gz")
        if images is None and labels is None:
            continue
        if images is None or labels is None:
            have, lack = (images, "labels-idx1") if labels is None else (labels, "images-idx3")
            raise MnistError(f"{directory}: {have.name} without {prefix}-{lack}-ubyte[.gz]")
        x, y = read_idx(images), read_idx(labels)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise MnistError(
                f"{directory}: {images.name} {list(x.shape)} and {labels.name} {list(y.shape)} do not match"
            )
        splits[split] = (np.ascontiguousarray(x, np.uint8), y.astype(np.int64))
    if not splits:
        raise MnistError(
            f"{directory}: no train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] "
            "(nor t10k-...) (the MNIST IDX files)"
        )
    return splits


def ensure_downloaded(
    directory: str | os.PathLike,
    mirrors: list[str] | tuple[str, ...] | None = None,
    files: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> pathlib.Path:
    """Download the MNIST files missing from `directory`, trying each mirror in turn.

    Files already there (gzip or uncompressed) are used as they are. Offline, or when no mirror
    serves a file with the right checksum, raise MnistError naming the directory to put them in.
    """
    directory = pathlib.Path(directory)
    files = FILES if files is None else files
    if mirrors is None:
        env = os.environ.get("ZOO_MNIST_MIRRORS")
        mirrors = [m.strip() for m in env.split(",") if m.strip()] if env else MIRRORS
    missing = [name for name in files if _find(directory, name) is None]
    for name in missing:
        try:
            download.download(
                [m.rstrip("/") + "/" + name for m in mirrors],
                directory / name,
                digest=files[name],
                algorithm="md5",
                timeout=timeout,
            )
        except download.DownloadError as e:
            raise MnistError(
                f"cannot download {name} ({'; '.join(e.reasons)}); put the MNIST files "
                f"({', '.join(files)}) in {directory} (or set ZOO_DATA)"
            ) from None
    return directory


def load_small() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The embedded MNIST-small: {"train": (images, labels), "test": (images, labels)}."""
    with np.load(SMALL_FILE) as z:
        return {split: (z[f"x_{split}"], z[f"y_{split}"].astype(np.int64)) for split in ("train", "test")}

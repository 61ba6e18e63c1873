"""The images a quantization calibrates on: training images, never the run's held-out ones.

    >>> from zoo.data.calibration import calibration_images
    >>> images = calibration_images(card, None, 300)         # 300 of the run's training split
    >>> images = calibration_images(card, "photos/", 300)    # a --data value, or a plain folder of images
    >>> images.data, images.split, images.seed, len(images)

The pick is seeded (the run's seed) and stratified by class (`datasets.stratified`). What a --data value
is, is `datasets.kind`'s to say: MNIST-small, MNIST or an IDX directory give their training split, an
image folder with class subfolders all of it; a plain folder of images (no classes) is taken whole too.
"""

from __future__ import annotations

import pathlib

import numpy as np

from ..card import ModelCard
from . import walk
from .datasets import FOLDER, DataError, RawSplit, kind, open_source, scan_folder, stratified
from .heldout import Images, run_source
from .preprocess import IMAGE_EXTENSIONS
from .provenance import TrainingData, same_data


def calibration_images(card: ModelCard, calibration: str | None, count: int) -> Images:
    """`count` images to calibrate on, drawn seeded and stratified (by class) from the run's training
    split, or from `calibration`: a --data value (its training split; a folder with class subfolders:
    all of it) or a plain folder of images. Never the run's validation or test images (DataError, one
    line, as for data that is missing or has no images)."""
    if count < 1:
        raise DataError(f"--calibration-images {count}: must be at least 1")
    run = TrainingData.of(card)
    seed = int((run.seed if run is not None and run.seed is not None else card.provenance.get("seed", 0)) or 0)
    if calibration is None and run is None:
        raise DataError(
            "the run's card names no training data to calibrate on (it was not trained by "
            "`zoo train`): pass --calibration DATA (a --data value or a folder of images)"
        )
    which = run.held_out_name(calibration) if run is not None else None
    if which:
        raise DataError(
            f"--calibration {calibration}: that is the run's held-out {which} data, "
            "which verifies the int8 model; calibrate on training images"
        )
    if calibration is None or (run is not None and same_data(calibration, run.data)):
        data, split, raw = run.data, "train", run_source(card, "--calibration DATA").splits["train"]
    else:
        data, (split, raw) = calibration, _other_data(calibration)
    if len(raw) > count:
        raw = raw.subset(stratified(raw.labels, count, seed)[1])
    return Images(data, split, raw, seed=seed)


def _other_data(calibration: str) -> tuple[str, RawSplit]:
    """(split, images) of a --calibration value other than the run's own data."""
    path = pathlib.Path(calibration).expanduser()
    try:
        if kind(calibration) != FOLDER:
            return "train", open_source(calibration).splits["train"]
        if path.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
            return "all", scan_folder(path)[1]
    except DataError as e:
        raise DataError(f"--calibration {calibration}: {e}") from None
    if not path.is_dir():
        raise DataError(
            f"--calibration {calibration}: no such directory; use mnist-small, mnist, "
            "a directory of MNIST IDX files or a folder of images"
        )
    files = _image_files(path)  # a plain folder of images: no classes
    if not files:
        raise DataError(
            f"--calibration {calibration}: no images in it (expected "
            f"{', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)} files, or class subfolders of them)"
        )
    return "all", RawSplit(np.zeros(len(files), np.int64), files=files)


def _image_files(folder: pathlib.Path) -> list[str]:
    """The image files under `folder` as the one walker finds them (zoo.data.walk), sorted by path."""
    return sorted(str(p) for p in walk.collect([folder])[0])

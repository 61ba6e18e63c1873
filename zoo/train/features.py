"""Feature extraction (`zoo features`): a model's penultimate-layer embedding of every image of a --data.

    from zoo.train.features import features_of, save_features
    result = features_of("runs/resnet18-20261121-120000", "photos/", split="all")
    result.features.shape, result.paths[:3], result.skipped   # skipped: [(path, why), ...]
    save_features("photos.npz", result)

The embedding is the input of the model's head layer (`get_spec(arch).head`), captured with a forward
hook, through the same preprocessing as training and `zoo classify`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import atomic, rundir
from ..data.datasets import DataError, ImageSet, Source, open_source, standardize, to_unit
from ..models import get_spec

if TYPE_CHECKING:
    from ..card import ModelCard

NPZ_KEYS = ("features", "labels", "paths", "class_names")  # what save_features writes


@dataclass
class Features:
    features: np.ndarray  # [N, D] float32
    labels: np.ndarray  # [N] int64, indices into class_names
    paths: np.ndarray  # [N] str: the image files; "mnist:SPLIT:I" for IDX digits
    class_names: np.ndarray  # [K] str: the data's classes (not the model's)
    architecture: str
    layer: str  # the head layer whose input the features are
    skipped: list[tuple[str, str]]  # (path, why) for each file left out


def features_of(
    model: str | os.PathLike,
    data: str,
    split: str = "all",
    *,
    batch_size: int = 128,
    device: str = "cpu",
    workers: int = 2,
) -> Features:
    """The embeddings of `data`'s `split` ("all" or one of its splits) under the model of a run directory
    or .safetensors file. RunError / DataError, one line, for a model or data that cannot be read."""
    net, card = rundir.load_model(model, device=device)
    source = open_source(data)
    if split not in ("all", *source.splits):
        raise DataError(f"{data} has no {split} split (it has {', '.join(source.splits)})")
    source.splits = {s: r for s, r in source.splits.items() if split in ("all", s)}
    sets, skipped = source.load(card, workers=workers)
    return extract(net, card, sets, source, skipped, batch_size=batch_size, device=device)


def extract(
    net: torch.nn.Module,
    card: ModelCard,
    sets: dict[str, ImageSet],
    source: Source,
    skipped: list[str],
    *,
    batch_size: int = 128,
    device: str = "cpu",
) -> Features:
    """Run every split of `sets` through `net`, capturing the input of the card's head layer; the files
    that could not be decoded (`skipped` from `source.load`, and those found while streaming) are left
    out and listed."""
    from tqdm import tqdm

    layer = get_spec(card.architecture).head
    captured = []
    hook = net.get_submodule(layer).register_forward_hook(
        lambda module, inputs, output: captured.append(inputs[0].detach().flatten(1).float().cpu())
    )
    labels, paths, left_out = [], [], _left_out(source, skipped)
    try:
        with torch.no_grad():
            for name, images in sets.items():
                raw = source.splits[name]
                bar = tqdm(
                    images.batches(batch_size),
                    total=images.num_batches(batch_size),
                    desc=f"features ({name})",
                    unit="batch",
                    leave=False,
                    disable=None,
                )  # None: shown only on a terminal, like training's
                for x, y in bar:
                    net(standardize(to_unit(x.to(device)), card))
                    labels.append(y.cpu())
                if raw.files is None:
                    paths += [f"mnist:{name}:{i}" for i in range(len(raw))]
                else:
                    left_out += _left_out(source, images.failed)
                    failed = {path for path, _ in left_out}
                    paths += [f for f in raw.files if f not in failed]
    finally:
        hook.remove()
    feats = torch.cat(captured).numpy() if captured else np.zeros((0, 0), np.float32)
    return Features(
        feats.astype(np.float32),
        torch.cat(labels).numpy().astype(np.int64),
        np.asarray(paths, dtype=str),
        np.asarray(source.class_names, dtype=str),
        card.architecture,
        layer,
        left_out,
    )


def _left_out(source: Source, messages: list[str]) -> list[tuple[str, str]]:
    """(path, why) for each "path: why" message of `source.load` / `ImageSet.failed` (the data package
    reports skipped files as lines; a path may itself hold ': ', so it is matched against the files)."""
    known = {f for raw in source.splits.values() if raw.files is not None for f in raw.files}
    pairs = []
    for m in messages:
        cut = m.find(": ")
        while cut != -1 and m[:cut] not in known:
            cut = m.find(": ", cut + 1)
        pairs.append((m[:cut], m[cut + 2 :]) if cut != -1 else (m.partition(": ")[0], m.partition(": ")[2]))
    return pairs


def save_features(path: str | os.PathLike, result: Features) -> None:
    """An .npz of NPZ_KEYS, written atomically."""

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, **{k: getattr(result, k) for k in NPZ_KEYS})

    atomic.write_with(path, write)

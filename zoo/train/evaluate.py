"""Evaluation: accuracy, top-5, per-class accuracy, confusion matrix and mean loss of a model on data.

    from zoo.train.evaluate import evaluate, evaluate_data
    result = evaluate(model, card, image_set)                 # an ImageSet already at the card's shape
    result.to_dict()  # {"accuracy", "top5", "per_class", "confusion", "loss", "n"}
    scored = evaluate_data(model, card)                      # the run's held-out split (test, else val)
    scored = evaluate_data(model, card, "photos/")           # other data: its test split if it has one
    scored.split, scored.held_out, scored.result             # held_out False: the images it trained on
    run = evaluate_run("runs/lenet5-...")                     # `zoo evaluate`: load, score, confusion.png

`model` is anything that maps a float32 NCHW batch (standardized as the card says) to logits: a torch
module, or a wrapper around another backend (e.g. `lambda x: torch.from_numpy(sess.run(x.numpy()))`).
The trainer uses the same function for validation and test, sharded over processes under torchrun.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F

from ..data.datasets import ImageSet, standardize, to_unit
from ..data.heldout import held_out

if TYPE_CHECKING:
    from ..card import ModelCard


@dataclass
class Evaluation:
    n: int
    loss: float
    accuracy: float
    top5: float | None  # only with more than 5 classes
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    class_names: list[str]

    @property
    def per_class(self) -> dict[str, dict]:
        out = {}
        for i, name in enumerate(self.class_names):
            n = sum(self.confusion[i])
            out[name] = {"accuracy": self.confusion[i][i] / n if n else None, "n": n}
        return out

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "top5": self.top5,
            "per_class": self.per_class,
            "confusion": self.confusion,
            "loss": self.loss,
            "n": self.n,
        }


@torch.no_grad()
def evaluate(
    model: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor],
    card: ModelCard,
    images: ImageSet,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    rank: int = 0,
    world: int = 1,
    label_smoothing: float = 0.0,
) -> Evaluation:
    """Evaluate on `images`; with world > 1 each process takes its share and the sums are all-reduced.

    The loss is the mean cross-entropy (with the training's label smoothing when the trainer asks, so
    its train and validation losses compare).
    """
    k = card.num_classes
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()
    confusion = torch.zeros(k * k, dtype=torch.int64, device=device)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss, top-5 hits
    for x, y in images.batches(batch_size, rank=rank, world=world):
        x, y = standardize(to_unit(x.to(device)), card), y.to(device)
        logits = model(x).float()
        sums[0] += F.cross_entropy(logits, y, reduction="sum", label_smoothing=label_smoothing).double()
        confusion += torch.bincount(y * k + logits.argmax(1), minlength=k * k)
        if k > 5:
            sums[1] += (logits.topk(5, dim=1).indices == y[:, None]).any(1).sum()
    if world > 1:
        torch.distributed.all_reduce(confusion)
        torch.distributed.all_reduce(sums)
    if was_training:
        model.train()
    matrix = confusion.view(k, k).cpu()
    n = int(matrix.sum())
    return Evaluation(
        n=n,
        loss=float(sums[0]) / max(n, 1),
        accuracy=float(matrix.trace()) / max(n, 1),
        top5=float(sums[1]) / max(n, 1) if k > 5 else None,
        confusion=matrix.tolist(),
        class_names=list(card.class_names),
    )


@dataclass
class DataEvaluation:
    """What `evaluate_data` scored: the numbers, on which images, and whether the model saw them in training."""

    result: Evaluation
    data: str  # the --data value, or the run's own validation / test folder
    split: str
    held_out: bool | None  # False: images the run trained on; None: data its card does not name
    skipped: list[str]  # files that could not be decoded

    def to_dict(self) -> dict:
        return {"data": self.data, "split": self.split, "held_out": self.held_out, **self.result.to_dict()}


def evaluate_data(
    model: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor],
    card: ModelCard,
    data: str | None = None,
    *,
    split: str = "auto",
    device: str = "cpu",
    batch_size: int = 256,
    workers: int = 0,
) -> DataEvaluation:
    """Evaluate on a `--data` value, by default (None) the data the run was trained on, its `split`
    ("auto": the held-out one). Which images those are, and whether the run trained on them, is the one
    held-out policy's to say: `zoo.data.heldout.held_out` (DataError, one line, where there are none).
    """
    images = held_out(card, data, split)
    image_set, skipped = images.load(card, workers=workers)
    result = evaluate(model, card, image_set, device=device, batch_size=batch_size)
    return DataEvaluation(result, images.data, images.split, images.held_out, skipped)


@dataclass
class RunEvaluation:
    """What `evaluate_run` did: the model file it loaded, its card, the scores and the confusion picture."""

    path: pathlib.Path
    card: ModelCard
    scored: DataEvaluation
    confusion_png: pathlib.Path


def evaluate_run(
    model: str | os.PathLike | None = None,
    data: str | None = None,
    *,
    split: str = "auto",
    device: str = "auto",
    batch_size: int = 256,
    workers: int = 0,
    confusion_png: str | os.PathLike | None = None,
) -> RunEvaluation:
    """`zoo evaluate`: load MODEL's weights (a run directory or .safetensors; None: the newest finished run),
    score them with `evaluate_data` and draw the confusion matrix (default: confusion.png beside the
    model). RunError (runlock.RunBusy where `zoo train` is still writing the run), DataError, DeviceError:
    one line each."""
    from .. import atomic, devices, rundir, runlock
    from ..data.datasets import DataError
    from ..viz import figures

    path = rundir.resolve_model(model, weights=True)
    runlock.check_idle(path if path.is_dir() else path.parent, "evaluate it once the run has finished")
    device = devices.resolve(device)
    net, card = rundir.load_model(path, device=device)
    if not data and not card.provenance.get("data", {}).get("source"):
        raise DataError(f"{path}: its card does not say what data it was trained on; pass --data")
    scored = evaluate_data(net, card, data, split=split, device=device, batch_size=batch_size, workers=workers)
    png = pathlib.Path(confusion_png) if confusion_png else (path if path.is_dir() else path.parent) / rundir.CONFUSION
    title = f"{card.architecture} on {scored.data} ({scored.split}): {100 * scored.result.accuracy:.2f}%"
    atomic.write_bytes(png, figures.confusion(scored.result.confusion, card.class_names, title=title))
    return RunEvaluation(path, card, scored, png)

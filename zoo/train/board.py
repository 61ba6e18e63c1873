"""TensorBoard event files in the run directory, so that `tensorboard --logdir runs` shows every run side
by side, live. Written through torch.utils.tensorboard where the `tensorboard` package is installed
(`pip install 'cnnzoo[tensorboard]'`); where it is not, or with `--no-tensorboard`, nothing is written.

    board = Board.open(run_dir, first_step=0)      # None without tensorboard
    board.inputs(x); board.graph(model, x)          # once: augmented inputs, the model graph
    board.step(step, loss=..., lr=..., images_per_s=...)    # every --log-every batches
    board.epoch(step, row)                          # after each epoch: its history row
    board.close()

Every scalar is plotted against the global step (batches so far), the epoch scalars too, so that a
resumed run purges what its crashed predecessor wrote after the checkpoint (SummaryWriter's purge_step)
and the curves join without a fold. Tags: train/loss, train/accuracy, val/loss, val/accuracy, lr,
images_per_s (per epoch); step/loss, step/lr, step/images_per_s (every --log-every batches).
"""

from __future__ import annotations

import errno
import importlib.util
import pathlib
import warnings
from typing import Callable

import torch

from .. import atomic, rundir
from ..atomic import NoSpaceError

INPUT_IMAGES = 16  # augmented inputs shown once
EPOCH_TAGS = {  # history column -> tag
    "train_loss": "train/loss",
    "train_acc": "train/accuracy",
    "val_loss": "val/loss",
    "val_acc": "val/accuracy",
    "lr": "lr",
    "images_per_s": "images_per_s",
}


def available() -> bool:
    """Whether the tensorboard package is installed (torch.utils.tensorboard needs it)."""
    return importlib.util.find_spec("tensorboard") is not None


class Board:
    def __init__(self, writer, shown: bool) -> None:
        self.writer = writer
        self.shown = shown  # whether the augmented inputs are written (once, by the run's first batch)

    @classmethod
    def open(cls, run_dir: pathlib.Path, first_step: int) -> "Board | None":
        """A writer of event files in `run_dir`, dropping any events at or after `first_step` (those a
        resumed run writes again); None where tensorboard is not installed."""
        if not available():
            return None
        from torch.utils.tensorboard import SummaryWriter

        run_dir = atomic.directory(run_dir)  # a link to a folder that is not there yet makes the folder
        try:
            writer = SummaryWriter(str(run_dir), purge_step=first_step or None)
        except OSError as e:  # its first write is of its event file, whose name it makes itself
            if e.errno == errno.ENOSPC:
                raise NoSpaceError(run_dir / f"{rundir.EVENTS_PREFIX}*") from None
            raise
        return cls(writer, shown=bool(first_step))

    def inputs(self, x: torch.Tensor) -> None:
        """A few training inputs as the network sees them before standardization: augmented, in [0, 1]."""
        self.writer.add_images("inputs/augmented", x[:INPUT_IMAGES].detach().float().clamp(0, 1).cpu(), 0)

    def graph(self, model: torch.nn.Module, x: torch.Tensor, log: Callable[[str], None]) -> None:
        """The model's graph (traced in eval mode on one input); a line of log where it cannot be traced."""
        was_training = model.training
        model.eval()
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the tracer's warnings about Python values
                self.writer.add_graph(model, x[:1])
        except Exception as e:  # noqa: BLE001 (tracing fails in many ways; the graph is an extra)
            log(f"tensorboard: no model graph ({' '.join(str(e).split())[:120]})")
        finally:
            model.train(was_training)

    def step(self, step: int, **scalars: float) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(f"step/{name}", value, step)

    def epoch(self, step: int, row: dict) -> None:
        """One epoch's history row (its empty columns left out); written to disk at once."""
        for column, tag in EPOCH_TAGS.items():
            if row.get(column) is not None:
                self.writer.add_scalar(tag, row[column], step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

"""The run directory a training run writes (its file names: zoo/rundir.py), and its checkpoint read back.

    files = RunFiles(path, cfg, card, data=source.describe(), augment="rotate=10", memory_format=...)
    files.save_epoch(plain, model, optimizer, scaler, state, best)   # after each epoch (rank 0)
    files.write_card(state, test, finished=True)                        # at the end
    state = restore(load_checkpoint(path), model, optimizer, scaler, path)   # --resume

After each epoch: the weights (last, best, snapshots), the checkpoint (model, optimizer, AMP scaler and
the training state), the card with the run's provenance so far, history.csv / history.json and, at most
every CURVES_EVERY_S, curves.png. Every file is written atomically, so a run killed at any point leaves
the files of a whole epoch, which `--resume` continues from; `finished` says whether the final card is
written.
"""

from __future__ import annotations

import csv
import io
import json
import math
import pathlib
import time
from dataclasses import asdict, dataclass

import torch

from .. import __version__, atomic, rundir
from ..card import CardError, ModelCard
from ..viz import figures
from .config import HISTORY_FIELDS, TrainConfig, TrainError
from .evaluate import Evaluation

CURVES_EVERY_S = 20.0  # curves.png is redrawn after an epoch at most this often, and at the end
CHECKPOINT_FORMAT = "cnnzoo.checkpoint/1"
NOT_RECORDED = ("output", "resume", "workers", "device")  # options the card's "training" leaves out


@dataclass
class RunFiles:
    """The files of one training run, in `path`; only rank 0 writes them."""

    path: pathlib.Path
    cfg: TrainConfig
    card: ModelCard  # the run's card: its provenance is rewritten with each write
    data: dict  # what the data source says of itself (Source.describe)
    augment: str  # --augment as the card records it (zoo.data.augment.describe)
    memory_format: torch.memory_format  # of the model and its training inputs
    curves_drawn: tuple[int, float] = (-1, -math.inf)  # (epochs in curves.png, time.monotonic() it was drawn)

    def save_epoch(
        self,
        plain: torch.nn.Module,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        state: dict,
        best: bool,
    ) -> None:
        """The run directory after an epoch: the deployable model's weights (`plain`), the checkpoint
        (`model` as trained, optimizer, scaler, `state`), the card (it records the thread count that
        `--resume` takes again), history, and curves where the last were drawn CURVES_EVERY_S ago or more
        (drawing them takes longer than an epoch of a small model: `draw_last_curves` draws the last)."""
        epoch = state["epoch"]
        rundir.save_weights(self.path / rundir.LAST, plain)
        if best:
            rundir.save_weights(self.path / rundir.WEIGHTS, plain)
        if self.cfg.snapshot_every and epoch % self.cfg.snapshot_every == 0:
            rundir.save_weights(self.path / rundir.SNAPSHOT.format(epoch=epoch), plain)
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "config": asdict(self.cfg),
            "state": state,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
        }
        atomic.write_with(self.path / rundir.CHECKPOINT, lambda tmp: torch.save(checkpoint, tmp))
        self.write_card(state, None, finished=False)
        self.write_history(state["history"], curves=time.monotonic() - self.curves_drawn[1] >= CURVES_EVERY_S)

    def write_history(self, history: list[dict], curves: bool = True) -> None:
        """history.csv, history.json and (where `curves`) curves.png: everything in them comes from the
        checkpoint's state."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if r.get(k) is None else r[k]) for k in HISTORY_FIELDS} for r in history)
        atomic.write_text(self.path / rundir.HISTORY_CSV, buf.getvalue())
        atomic.write_text(self.path / rundir.HISTORY_JSON, json.dumps(history, indent=1) + "\n")
        if curves:
            title = f"{self.card.architecture} on {self.cfg.data}"
            atomic.write_bytes(self.path / rundir.CURVES, figures.curves(history, title=title))
            self.curves_drawn = (len(history), time.monotonic())

    def draw_last_curves(self, history: list[dict]) -> None:
        """The history and curves of every epoch, where curves.png lacks the last ones."""
        if self.curves_drawn[0] != len(history):
            self.write_history(history)

    def write_card(self, state: dict, test: Evaluation | None, finished: bool) -> None:
        """The card with the run's provenance so far: data, epochs, options, metrics, weights, freezing."""
        cfg = self.cfg
        self.card.provenance = {
            "data": self.data,
            "epochs": state["epoch"],
            "seed": cfg.seed,
            "augment": self.augment,
            "metrics": _metrics(state, test),
            "training": {k: v for k, v in asdict(cfg).items() if k not in NOT_RECORDED},
            "finished": finished,
            "weights": state.get("weights", "trained from scratch"),
            "frozen": state.get("frozen"),
            "cnnzoo": __version__,
            "precision": state.get("precision", "float32"),
            "memory_format": "channels_last" if self.memory_format == torch.channels_last else "contiguous",
            "stopped": state.get("stopped"),
            # the thread count changes the float sums: `--resume` takes it again (bit-identical)
            "threads": torch.get_num_threads(),
        }
        self.card.save(self.path / rundir.CARD)


def _metrics(state: dict, test: Evaluation | None) -> dict:
    """The card's metrics: the best and last validation accuracy, the last training loss, the test split's."""
    history = state["history"]
    last_val = next((r["val_acc"] for r in reversed(history) if r["val_acc"] is not None), None)
    metrics = {
        "best_val_acc": state["best_acc"] if state["best_acc"] >= 0 else None,
        "best_epoch": state["best_epoch"],
        "last_val_acc": last_val,
        "last_train_loss": history[-1]["train_loss"] if history else None,
    }
    if test is not None:
        metrics.update(test_acc=test.accuracy, test_top5=test.top5, test_loss=test.loss, test_n=test.n)
    return metrics


def restore(
    checkpoint: dict,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    run_dir: pathlib.Path,
) -> dict:
    """Put a checkpoint's model, optimizer and scaler state in place; its training state."""
    try:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        state = checkpoint["state"]
        if not isinstance(state.get("epoch"), int) or not isinstance(state.get("history"), list):
            raise TypeError("no epoch count or history in its state")
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        detail = " ".join(str(e).split())[:200]
        raise TrainError(f"{run_dir / rundir.CHECKPOINT}: does not fit the run it belongs to ({detail})") from None
    return state


def finished(run_dir: pathlib.Path) -> bool:
    """Whether the run's card says the run finished (its test evaluation and final card written). A card
    that is missing or unreadable does not: finishing the run writes it anew."""
    try:
        return ModelCard.load(run_dir / rundir.CARD).provenance.get("finished") is True
    except (OSError, CardError):
        return False

"""The training options (`zoo train --help`): one dataclass, with no heavy imports."""

from __future__ import annotations

import pathlib
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace

from .. import rundir

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "exp", "cosine", "plateau")
AMP_MODES = ("auto", "on", "off", "bfloat16")  # --amp (zoo/train/precision.py)
DEFAULT_GAMMA = {"step": 0.1, "exp": 0.6, "plateau": 0.1}  # exp: the lecture's 0.01 * 0.6**epoch
RESUME_OPTIONS = ("epochs", "device", "workers")  # what may change when a run is resumed
HISTORY_FIELDS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "seconds",
    "train_seconds",
    "images_per_s",
)


class TrainError(ValueError):
    """A bad option or a run that cannot go on; one line for the user."""


@dataclass
class TrainConfig:
    arch: str = "lenet5"
    # data (zoo/data/datasets.py)
    data: str = "mnist-small"
    val_split: float = 0.1  # fraction (< 1) or number of training images held out for validation
    val_dir: str | None = None
    test_dir: str | None = None
    test_split: float | None = None
    input_size: int | None = None  # square input side; None: the model's
    in_channels: int | None = None  # None: 1 for MNIST, the model's for image folders
    resize_mode: str = "squash"
    augment: str = "rotate=10,shift=0.1,zoom=0.1"
    # transfer learning (zoo/train/transfer.py)
    pretrained: str | None = None  # a run dir, .safetensors, torchvision .pth, or "imagenet"
    pretrained_partial: bool = False
    freeze: str = "none"  # "none", "backbone" or N (the last N stages train)
    backbone_lr_mult: float = 1.0  # "none" (or "") for none
    # optimization
    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    step_size: int = 5  # epochs between decays (step)
    gamma: float | None = None  # decay factor (step, exp, plateau); None: DEFAULT_GAMMA
    patience: int = 2  # epochs without a better val loss before a plateau decay
    min_lr: float = 0.0  # the end of the cosine
    warmup: float = 0.0  # epochs of linear warmup
    label_smoothing: float = 0.1
    aux_weight: float = 0.3  # GoogLeNet's auxiliary losses (the paper's 0.3)
    accumulate: int = 1
    seed: int = 0
    # machinery
    device: str = "auto"
    amp: str = "auto"  # one of AMP_MODES (zoo/train/precision.py)
    workers: int = 2
    output: str | None = None  # default runs/ARCH-YYYYmmdd-HHMMSS
    snapshot_every: int = 0
    val_every: int = 1
    target_accuracy: float | None = None  # stop after the epoch whose validation accuracy reaches it
    tensorboard: bool = True  # event files in the run directory, where tensorboard is installed
    log_every: int = 50  # batches between TensorBoard's step scalars
    resume: str | None = None
    recipe: str | None = None  # the model's recipe for the data, where `with_recipe` applied one

    def with_recipe(self, given: Iterable[str] = ()) -> "TrainConfig":
        """This configuration with the model's recipe for its kind of data (`recipes` in its spec,
        zoo/models; e.g. LeNet-5 on the full MNIST) in place of every option not in `given`; as it is
        where the model has none."""
        from ..data.datasets import kind
        from ..models import get_spec

        spec, data = get_spec(self.arch), kind(self.data)
        recipe = {k: v for k, v in spec.recipes.get(data, {}).items() if k not in set(given)}
        if not recipe:
            return self
        shown = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in recipe.items())
        return replace(self, **recipe, recipe=f"{spec.name} on {data}: {shown}")

    @classmethod
    def resumed(cls, run: str | pathlib.Path, **overrides) -> "TrainConfig":
        """The configuration a run was started with, to continue it (only RESUME_OPTIONS may change)."""
        bad = sorted(set(overrides) - set(RESUME_OPTIONS))
        if bad:
            raise TrainError(
                f"--{bad[0].replace('_', '-')} is fixed by the run being resumed; "
                f"only {', '.join('--' + o for o in RESUME_OPTIONS)} may change"
            )
        stored = load_checkpoint(run)["config"]
        known = {f.name for f in fields(cls)}
        return replace(
            cls(**{k: v for k, v in stored.items() if k in known}), **overrides, resume=str(run), output=str(run)
        )


CHECKPOINT_KEYS = ("config", "state", "model", "optimizer", "scaler")  # what every epoch's checkpoint holds


def load_checkpoint(run: str | pathlib.Path) -> dict:
    """The training state a run's checkpoint.pt holds (loaded weights_only); TrainError, one line naming
    the file, where there is none or it is damaged."""
    path = pathlib.Path(run) / rundir.CHECKPOINT
    if not path.is_file():
        raise TrainError(f"nothing to resume in {run}: no {rundir.CHECKPOINT} (one is written after each epoch)")
    import torch

    damaged = f"{path}: not a readable training checkpoint (truncated, damaged or not written by `zoo train`)"
    try:  # torch's own messages would advise loading unsafely: none of them is passed on
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 (pickle, zip and refused-global errors of any kind)
        raise TrainError(damaged) from None
    if not isinstance(checkpoint, dict) or not all(isinstance(checkpoint.get(k), dict) for k in CHECKPOINT_KEYS):
        raise TrainError(damaged)
    return checkpoint

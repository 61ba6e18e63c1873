"""What `zoo train` checks before it trains or writes anything: each a TrainError, one line that names
the option and what to do instead.

    augment_spec = check_options(cfg)           # every option in range; --augment, parsed
    device = pick_device(cfg.device)
    check_input(model, card)                     # the network takes the card's input shape
    run_dir, held = output_dir(cfg, arch, dist)  # --output is new (or --resume names the run); locked
"""

from __future__ import annotations

import pathlib
import time

import torch

from .. import devices, runlock
from ..card import ModelCard
from ..data import augment as augmentation
from ..data.datasets import ImageSet
from ..models import get_spec
from ..rundir import RunError
from . import distributed
from .config import OPTIMIZERS, SCHEDULES, TrainConfig, TrainError
from .runfiles import finished


def check_options(cfg: TrainConfig) -> dict[str, float]:
    """TrainError for an option out of range; --augment, parsed."""
    checks = [
        (cfg.batch_size >= 1, f"--batch-size {cfg.batch_size}: must be at least 1"),
        (cfg.epochs >= 1, f"--epochs {cfg.epochs}: must be at least 1"),
        (cfg.lr > 0, f"--lr {cfg.lr:g}: must be positive"),
        (cfg.accumulate >= 1, f"--accumulate {cfg.accumulate}: must be at least 1"),
        (cfg.val_every >= 1, f"--val-every {cfg.val_every}: must be at least 1"),
        (cfg.log_every >= 1, f"--log-every {cfg.log_every}: must be at least 1"),
        (cfg.optimizer in OPTIMIZERS, f"--optimizer {cfg.optimizer}: use one of {', '.join(OPTIMIZERS)}"),
        (cfg.schedule in SCHEDULES, f"--schedule {cfg.schedule}: use one of {', '.join(SCHEDULES)}"),
        (
            cfg.in_channels in (None, 1, 3),
            f"--in-channels {cfg.in_channels}: the data gives grayscale (1) or "
            "RGB (3) images; a model with another number of input channels "
            "cannot take them",
        ),
        (0 <= cfg.label_smoothing < 1, f"--label-smoothing {cfg.label_smoothing:g}: must be in [0, 1)"),
        (
            cfg.target_accuracy is None or 0 < cfg.target_accuracy <= 1,
            f"--target-accuracy {cfg.target_accuracy}: a fraction in (0, 1], e.g. 0.99",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise TrainError(message)
    try:
        return augmentation.parse(cfg.augment)
    except augmentation.AugmentError as e:
        raise TrainError(str(e)) from None


def pick_device(name: str) -> torch.device:
    """The device --device names (auto, cpu, cuda[:N]); TrainError where there is none."""
    try:
        return torch.device(devices.resolve(name))
    except devices.DeviceError as e:
        raise TrainError(str(e)) from None


def check_input(model: torch.nn.Module, card: ModelCard) -> None:
    """One forward pass of a blank image, so an input the network cannot take fails before training."""
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *card.input_shape))
    except RuntimeError as e:
        c, h, w = card.input_shape
        default = get_spec(card.architecture).input_size[1]
        raise TrainError(
            f"{card.architecture} cannot take {c}x{h}x{w} inputs "
            f"({str(e).splitlines()[0]}); use another --input-size (its own is {default})"
        ) from None
    finally:
        model.train()


def check_target(cfg: TrainConfig, sets: dict[str, ImageSet]) -> None:
    """--target-accuracy is measured on the validation split: TrainError where there is none."""
    if cfg.target_accuracy is not None and "val" not in sets:
        raise TrainError(
            f"--target-accuracy {100 * cfg.target_accuracy:g}: needs validation data (--val-split or --val)"
        )


def default_output(arch: str, stamp: str) -> pathlib.Path:
    """The run directory of a run without --output: runs/ARCH-STAMP (STAMP: YYYYmmdd-HHMMSS, or a glob)."""
    return pathlib.Path("runs") / f"{arch}-{stamp}"


def output_dir(cfg: TrainConfig, arch: str, dist: distributed.Dist) -> tuple[pathlib.Path, runlock.RunLock | None]:
    """The run directory, locked for this run (zoo.runlock; by rank 0, which writes it: None elsewhere):
    --resume's, else --output (default runs/ARCH-YYYYmmdd-HHMMSS, rank 0's clock), made now, which must
    not hold anything yet. TrainError where it does, or where a process is writing it (naming its PID)."""
    if cfg.resume:
        path, advice = pathlib.Path(cfg.resume), "resume it once that process has ended"
    else:
        stamp = distributed.broadcast_object(time.strftime("%Y%m%d-%H%M%S"), dist)
        path, advice = pathlib.Path(cfg.output or default_output(arch, stamp)), "choose another --output"
    held, problem = None, None
    if dist.main:
        try:
            held = runlock.lock(path, new=not cfg.resume, advice=advice)
        except FileExistsError:
            problem = f"{path} already exists; choose another --output, or continue it with --resume {path}"
        except RunError as e:  # RunBusy, or a --resume directory gone since its checkpoint was read
            problem = str(e)
    problem = distributed.broadcast_object(problem, dist)  # every rank stops where rank 0 does
    if problem:
        raise TrainError(problem)
    return path, held


def check_resumable(cfg: TrainConfig, state: dict, run_dir: pathlib.Path) -> None:
    """TrainError where a checkpoint's run has nothing left to do with these options."""
    if state.get("stopped") and finished(run_dir):
        raise TrainError(f"{cfg.resume} stopped early and finished ({state['stopped']}); nothing to resume")
    if state["epoch"] > cfg.epochs or (state["epoch"] == cfg.epochs and finished(run_dir)):
        raise TrainError(f"{cfg.resume} already has {state['epoch']} epochs; pass a larger --epochs")

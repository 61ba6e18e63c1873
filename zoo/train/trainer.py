"""The trainer behind `zoo train ARCH`, readable in one sitting.

    from zoo.train.trainer import TrainConfig, train
    result = train(TrainConfig(arch="lenet", data="mnist-small", epochs=15))
    result.run_dir, result.card, result.history, result.test.accuracy

One epoch: a shuffled order (seeded by seed + epoch); for each batch: uint8 images -> device -> [0, 1]
-> augmentation -> mean/std -> forward -> cross-entropy (+ 0.3 x each GoogLeNet auxiliary loss)
-> backward, and an optimizer step every --accumulate batches with the learning rate of the schedule.
Then validation, one line of log, and the run directory (zoo/rundir.py), every file written atomically.
Everything random in an epoch is seeded from (seed, epoch, rank) and the checkpoint holds the model,
optimizer, AMP scaler and schedule state after each epoch, so `--resume` reaches the same weights as a
run that was never interrupted. Under torchrun the model is wrapped in DistributedDataParallel
(zoo/train/distributed.py) and only rank 0 writes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import pathlib
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from .. import __version__, atomic, rundir
from ..card import CardError, ModelCard
from ..data import augment as augmentation
from ..data.datasets import open_source, standardize, to_unit
from ..models import create, get_spec
from ..text import plural
from . import distributed, transfer
from .config import (DEFAULT_GAMMA, HISTORY_FIELDS, OPTIMIZERS, SCHEDULES, TrainConfig,  # noqa: F401
                     TrainError, load_checkpoint)
from .evaluate import Evaluation, evaluate
from .plots import plot_curves

@dataclass
class Result:
    run_dir: pathlib.Path | None  # None on ranks other than 0
    card: ModelCard
    history: list[dict]
    model: torch.nn.Module  # the deployable model (no auxiliary heads), with the last epoch's weights
    test: Evaluation | None = None


def build_model(arch: str, card: ModelCard, cfg: TrainConfig) -> torch.nn.Module:
    """The network to train, from the card (pretrained weights and freezing are applied by `_train`)."""
    extra = {"aux_logits": True} if get_spec(arch).family == "googlenet" else {}
    return create(arch, num_classes=card.num_classes, in_channels=card.in_channels, **extra)


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """Parameter groups; a group's "lr_mult" scales the schedule's learning rate for it (the head at 1,
    the rest at --backbone-lr-mult)."""
    return transfer.param_groups(model, cfg.arch, cfg.backbone_lr_mult)


def build_optimizer(cfg: TrainConfig, groups: list[dict]) -> torch.optim.Optimizer:
    kw = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=cfg.momentum, **kw)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, **kw)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, **kw)
    return torch.optim.RMSprop(groups, momentum=cfg.momentum, **kw)


def lr_at(cfg: TrainConfig, epoch: int, step: int, steps: int, plateau_scale: float) -> float:
    """The learning rate for `step` of `epoch`: warmup, then the schedule (per epoch, cosine per step)."""
    gamma = _gamma(cfg)
    t = epoch + step / steps
    if cfg.schedule == "step":
        lr = cfg.lr * gamma ** (epoch // cfg.step_size)
    elif cfg.schedule == "exp":
        lr = cfg.lr * gamma ** epoch
    elif cfg.schedule == "cosine":
        lr = cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * t / cfg.epochs))
    else:  # constant, plateau
        lr = cfg.lr * plateau_scale
    if cfg.warmup and t < cfg.warmup:
        lr *= (epoch * steps + step + 1) / (cfg.warmup * steps)
    return lr


def _gamma(cfg: TrainConfig) -> float:
    return cfg.gamma if cfg.gamma is not None else DEFAULT_GAMMA.get(cfg.schedule, 1.0)


def deployable(model: torch.nn.Module, card: ModelCard) -> torch.nn.Module:
    """The model later stages load: without GoogLeNet's training-only auxiliary heads."""
    if not getattr(model, "aux_logits", False):
        return model
    plain = create(card.architecture, num_classes=card.num_classes, in_channels=card.in_channels)
    plain.load_state_dict(model.state_dict(), strict=False)  # drops aux1.*, aux2.*
    return plain.to(next(model.parameters()).device)


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> Result:
    _check_options(cfg)
    checkpoint = load_checkpoint(cfg.resume) if cfg.resume else None
    device = _pick_device(cfg.device, cfg.amp)
    dist = distributed.setup(device.type)
    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", dist.local_rank)
    try:
        return _train(cfg, checkpoint, device, dist, log)
    finally:
        distributed.teardown(dist)


def _train(cfg, checkpoint, device, dist, log) -> Result:
    # ---- data, card and model: everything is checked before the run directory exists ----
    source = open_source(cfg.data, val_split=cfg.val_split, val_dir=cfg.val_dir, test_dir=cfg.test_dir,
                         test_split=cfg.test_split, seed=cfg.seed)
    spec = get_spec(cfg.arch)
    card = ModelCard.for_model(
        spec.name, in_channels=cfg.in_channels or source.channels or spec.input_size[0],
        input_size=[cfg.input_size] * 2 if cfg.input_size else None, class_names=source.class_names,
        resize_mode=cfg.resize_mode)
    norm = transfer.normalization(spec.name, cfg.pretrained)
    if norm:
        card.mean, card.std = norm
    torch.manual_seed(cfg.seed)
    model = build_model(spec.name, card, cfg)
    _check_input(model, card)
    weights = "trained from scratch"
    if cfg.pretrained and checkpoint is None:  # a resumed run's weights come from its checkpoint
        weights = transfer.load_pretrained(model, spec.name, cfg.pretrained, partial=cfg.pretrained_partial,
                                           log=(lambda s: log(f"pretrained: {s}")) if dist.main else (lambda s: None))
    frozen = transfer.freeze(model, spec.name, cfg.freeze)
    if dist.main and cfg.freeze != "none":
        log(f"frozen: {', '.join(frozen['frozen_stages']) or 'nothing'} ({frozen['frozen_params']:,} parameters); "
            f"training {', '.join(frozen['trainable_stages'])} ({frozen['trainable_params']:,})")
    augment = augmentation.build(augmentation.parse(cfg.augment), card.input_size)
    run_dir = _run_dir(cfg, spec.name, dist)
    sets, skipped = source.load(card, workers=cfg.workers, progress=dist.main)
    if skipped and dist.main:
        log(f"warning: skipped {plural(len(skipped), 'file')} that are not readable images (first: {skipped[0]})")

    model.to(device)
    optimizer = build_optimizer(cfg, param_groups(model, cfg))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp)
    state = {"epoch": 0, "best_acc": -1.0, "best_epoch": 0, "history": [],
             "plateau": {"scale": 1.0, "best": math.inf, "bad": 0}, "weights": weights, "frozen": frozen}
    if checkpoint:
        state = _restore(checkpoint, model, optimizer, scaler, run_dir)
        if state["epoch"] > cfg.epochs or (state["epoch"] == cfg.epochs and _finished(run_dir)):
            raise TrainError(f"{cfg.resume} already has {state['epoch']} epochs; pass a larger --epochs")
    net = distributed.wrap(model, dist, device)  # what the training steps call
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    train_set, val_set = sets["train"], sets.get("val")
    steps = train_set.num_batches(cfg.batch_size, world=dist.world, drop_last=True)
    if dist.main:
        sizes = " / ".join(f"{len(s):,} {name}" for name, s in sets.items())
        log(f"training {spec.name} on {cfg.data} ({sizes}; {card.num_classes} classes, "
            f"{'x'.join(map(str, card.input_shape))}) on {device}"
            f"{f' x {dist.world} processes' if dist.world > 1 else ''}, "
            f"{torch.get_num_threads()} thread{'s' * (torch.get_num_threads() != 1)} -> {run_dir}")
    if state["epoch"] == cfg.epochs and dist.main:  # resumed after its last epoch: what is left is the end
        log(f"all {cfg.epochs} epoch(s) were done; finishing the run (test evaluation, final card)")
        _write_history(run_dir, cfg, card, state["history"])

    for epoch in range(state["epoch"], cfg.epochs):
        torch.manual_seed((cfg.seed * 100_003 + epoch) * 1_009 + dist.rank)  # augmentation, dropout
        net.train()
        started = time.perf_counter()
        loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
        bar = _progress(steps, f"epoch {epoch + 1}/{cfg.epochs}", dist.main)
        batches = train_set.batches(cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch,
                                    rank=dist.rank, world=dist.world, drop_last=True)
        for i, (x, y) in enumerate(batches):
            lr = lr_at(cfg, epoch, i, steps, state["plateau"]["scale"])
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_mult", 1.0)
            x, y = to_unit(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
            if augment is not None:
                x = augment(x)
            x = standardize(x, card)
            step_now = (i + 1) % cfg.accumulate == 0 or i + 1 == steps
            with (nullcontext() if step_now or dist.world == 1 else net.no_sync()):
                with torch.autocast(device.type, dtype=torch.float16, enabled=cfg.amp):
                    out = net(x)
                    logits, aux = (out[0], out[1:]) if isinstance(out, tuple) else (out, ())
                    loss = criterion(logits, y) + sum(cfg.aux_weight * criterion(a, y) for a in aux)
                scaler.scale(loss / cfg.accumulate).backward()
            if step_now:
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            if bar is not None:
                bar.update()
                if i % 20 == 0:
                    bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}",
                                    img_s=f"{seen * dist.world / (time.perf_counter() - started):.0f}")
        if bar is not None:
            bar.close()
        sums = torch.stack([loss_sum.float(), correct.float(), torch.tensor(float(seen), device=device)])
        if dist.world > 1:
            torch.distributed.all_reduce(sums)
        train_seconds = time.perf_counter() - started
        row = {"epoch": epoch + 1, "train_loss": float(sums[0] / sums[2]), "train_acc": float(sums[1] / sums[2]),
               "val_loss": None, "val_acc": None, "lr": lr, "train_seconds": round(train_seconds, 3),
               "images_per_s": round(float(sums[2]) / train_seconds, 1)}

        # ---- validation, schedule and model selection ----
        if val_set is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
            ev = evaluate(model, card, val_set, device=device, rank=dist.rank, world=dist.world,
                          label_smoothing=cfg.label_smoothing)
            row.update(val_loss=ev.loss, val_acc=ev.accuracy)
            p = state["plateau"]
            if ev.loss < p["best"] * (1 - 1e-4):
                p["best"], p["bad"] = ev.loss, 0
            else:
                p["bad"] += 1
                if cfg.schedule == "plateau" and p["bad"] > cfg.patience:
                    p["scale"], p["bad"] = p["scale"] * _gamma(cfg), 0
        best = row["val_acc"] is not None and row["val_acc"] > state["best_acc"]
        if best or val_set is None:
            state["best_acc"], state["best_epoch"] = row["val_acc"] or -1.0, epoch + 1
        row["seconds"] = round(time.perf_counter() - started, 3)
        state["history"].append(row)
        state["epoch"] = epoch + 1
        if dist.main:
            val = (f"val loss {row['val_loss']:.4f}  val acc {100 * row['val_acc']:.2f}%"
                   if row["val_acc"] is not None else "(no validation)")
            log(f"epoch {epoch + 1:>{len(str(cfg.epochs))}}/{cfg.epochs}  train loss {row['train_loss']:.4f}  "
                f"{val}  lr {lr:.3g}  {row['seconds']:.1f}s{'  *' if best else ''}")
            _save_epoch(run_dir, cfg, card, source, model, optimizer, scaler, state, best or val_set is None)

    # ---- the test split, with the best weights ----
    result = Result(run_dir if dist.main else None, card, state["history"], deployable(model, card))
    if dist.main:
        if "test" in sets:
            best_model = deployable(build_model(spec.name, card, cfg), card).to(device)
            try:
                rundir.load_weights(best_model, run_dir / rundir.WEIGHTS, device=str(device))
            except rundir.RunError as e:
                raise TrainError(str(e)) from None
            result.test = evaluate(best_model, card, sets["test"], device=device)
            log(f"test accuracy {100 * result.test.accuracy:.2f}% ({result.test.n:,} images, "
                f"weights of epoch {state['best_epoch']})")
        _write_card(run_dir, cfg, card, source, state, result.test, finished=True)
        log(f"wrote {run_dir}")
    return result


def _save_epoch(run_dir, cfg, card, source, model, optimizer, scaler, state, best: bool) -> None:
    """The run directory after an epoch: weights, checkpoint, history, card, curves."""
    plain = deployable(model, card)
    rundir.save_weights(run_dir / rundir.LAST, plain)
    if best:
        rundir.save_weights(run_dir / rundir.WEIGHTS, plain)
    if cfg.snapshot_every and state["epoch"] % cfg.snapshot_every == 0:
        rundir.save_weights(run_dir / rundir.SNAPSHOT.format(epoch=state["epoch"]), plain)
    checkpoint = {"format": "cnnzoo.checkpoint/1", "config": asdict(cfg), "state": state,
                  "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict()}
    atomic.write_with(run_dir / rundir.CHECKPOINT, lambda tmp: torch.save(checkpoint, tmp))
    _write_history(run_dir, cfg, card, state["history"])
    _write_card(run_dir, cfg, card, source, state, None, finished=False)


def _write_history(run_dir, cfg, card, history: list[dict]) -> None:
    """history.csv, history.json and curves.png: everything in them comes from the checkpoint's state."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r[k]) for k in HISTORY_FIELDS} for r in history)
    atomic.write_text(run_dir / rundir.HISTORY_CSV, buf.getvalue())
    atomic.write_text(run_dir / rundir.HISTORY_JSON, json.dumps(history, indent=1) + "\n")
    plot_curves(history, run_dir / rundir.CURVES, title=f"{card.architecture} on {cfg.data}")


def _restore(checkpoint: dict, model, optimizer, scaler, run_dir: pathlib.Path) -> dict:
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


def _finished(run_dir: pathlib.Path) -> bool:
    """Whether the run's card says the run finished (its test evaluation and final card written). A card
    that is missing or unreadable does not: finishing the run writes it anew."""
    try:
        return ModelCard.load(run_dir / rundir.CARD).provenance.get("finished") is True
    except (OSError, CardError):
        return False


def _write_card(run_dir, cfg, card, source, state, test: Evaluation | None, finished: bool) -> None:
    last_val = next((r["val_acc"] for r in reversed(state["history"]) if r["val_acc"] is not None), None)
    metrics = {"best_val_acc": state["best_acc"] if state["best_acc"] >= 0 else None,
               "best_epoch": state["best_epoch"], "last_val_acc": last_val,
               "last_train_loss": state["history"][-1]["train_loss"] if state["history"] else None}
    if test is not None:
        metrics.update(test_acc=test.accuracy, test_top5=test.top5, test_loss=test.loss, test_n=test.n)
    training = {k: v for k, v in asdict(cfg).items() if k not in ("output", "resume", "workers", "device")}
    card.provenance = {"data": source.describe(), "epochs": state["epoch"], "seed": cfg.seed,
                       "augment": augmentation.describe(augmentation.parse(cfg.augment)),
                       "metrics": metrics, "training": training, "finished": finished,
                       "weights": state.get("weights", "trained from scratch"),
                       "frozen": state.get("frozen"), "cnnzoo": __version__}
    card.save(run_dir / rundir.CARD)


def _check_options(cfg: TrainConfig) -> None:
    checks = [
        (cfg.batch_size >= 1, f"--batch-size {cfg.batch_size}: must be at least 1"),
        (cfg.epochs >= 1, f"--epochs {cfg.epochs}: must be at least 1"),
        (cfg.lr > 0, f"--lr {cfg.lr:g}: must be positive"),
        (cfg.accumulate >= 1, f"--accumulate {cfg.accumulate}: must be at least 1"),
        (cfg.val_every >= 1, f"--val-every {cfg.val_every}: must be at least 1"),
        (cfg.optimizer in OPTIMIZERS, f"--optimizer {cfg.optimizer}: use one of {', '.join(OPTIMIZERS)}"),
        (cfg.schedule in SCHEDULES, f"--schedule {cfg.schedule}: use one of {', '.join(SCHEDULES)}"),
        (cfg.in_channels in (None, 1, 3), f"--in-channels {cfg.in_channels}: the data gives grayscale (1) or "
                                          "RGB (3) images; a model with another number of input channels "
                                          "cannot take them"),
        (0 <= cfg.label_smoothing < 1, f"--label-smoothing {cfg.label_smoothing:g}: must be in [0, 1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise TrainError(message)
    try:
        augmentation.parse(cfg.augment)
    except augmentation.AugmentError as e:
        raise TrainError(str(e)) from None


def _pick_device(name: str, amp: bool) -> torch.device:
    cuda = torch.cuda.is_available()
    if name == "cuda" and not cuda:
        raise TrainError("--device cuda: no CUDA device here (torch.cuda.is_available() is False); "
                         "use --device cpu")
    if name not in ("auto", "cpu", "cuda"):
        raise TrainError(f"--device {name}: use auto, cpu or cuda")
    device = torch.device("cuda" if name == "cuda" or (name == "auto" and cuda) else "cpu")
    if amp and device.type != "cuda":
        raise TrainError("--amp needs a CUDA device (mixed precision is for GPUs); leave it out on CPU")
    return device


def _check_input(model: torch.nn.Module, card: ModelCard) -> None:
    """One forward pass of a blank image, so an input the network cannot take fails before training."""
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *card.input_shape))
    except RuntimeError as e:
        c, h, w = card.input_shape
        default = get_spec(card.architecture).input_size[1]
        raise TrainError(f"{card.architecture} cannot take {c}x{h}x{w} inputs "
                         f"({str(e).splitlines()[0]}); use another --input-size (its own is {default})") from None
    finally:
        model.train()


def _run_dir(cfg: TrainConfig, arch: str, dist: distributed.Dist) -> pathlib.Path:
    if cfg.resume:
        return pathlib.Path(cfg.resume)
    stamp = distributed.broadcast_object(time.strftime("%Y%m%d-%H%M%S"), dist)
    path = pathlib.Path(cfg.output or f"runs/{arch}-{stamp}")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise TrainError(f"{path} already exists; choose another --output, or continue it with --resume {path}")
    return path


def _progress(steps: int, desc: str, main: bool):
    if not main:
        return None
    from tqdm import tqdm

    return tqdm(total=steps, desc=desc, unit="batch", leave=False, dynamic_ncols=True, disable=None)

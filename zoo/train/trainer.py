"""The trainer behind `zoo train ARCH`, readable in one sitting.

    from zoo.train.trainer import TrainConfig, train
    result = train(TrainConfig(arch="lenet", data="mnist-small", epochs=15))
    result.run_dir, result.card, result.history, result.test.accuracy

`train` reads top to bottom: the options are checked (zoo/train/checks.py), `_set_up` builds everything
once (data, card, model with its pretrained weights and freezing, optimizer, the training state or a
checkpoint's), the loop runs the epochs (`_train_epoch`, `_validate`, a line of log, `_save_epoch`), and
`_finish` evaluates the test split.

One epoch: a shuffled order (seeded by seed + epoch); for each batch: uint8 images -> device -> [0, 1]
-> augmentation -> mean/std -> forward -> cross-entropy (+ 0.3 x each GoogLeNet auxiliary loss)
-> backward, and an optimizer step every --accumulate batches with the learning rate of the schedule.
Then validation, one line of log, and the run directory (zoo/train/runfiles.py), every file atomically.
Everything random in an epoch is seeded from (seed, epoch, rank) and the checkpoint holds the model,
optimizer, AMP scaler and schedule state after each epoch, so `--resume` reaches the same weights as a
run that was never interrupted. Under torchrun the model is wrapped in DistributedDataParallel
(zoo/train/distributed.py) and only rank 0 writes; across nodes every rank must see the run directory,
and a group torchrun starts again after a failure resumes the killed group's run (zoo/train/elastic.py).
Rank 0 holds the run directory's lock (zoo/runlock.py) from set-up to the end, so no other run writes
there meanwhile.
"""

from __future__ import annotations

import math
import pathlib
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from typing import Callable

import torch

from .. import rundir
from ..card import ModelCard
from ..data import augment as augmentation
from ..data.datasets import ImageSet, Source, open_source, standardize, to_unit
from ..models import create, get_spec
from ..text import plural
from . import checks, distributed, elastic, precision, runfiles, transfer
from .board import Board
from .config import DEFAULT_GAMMA, TrainConfig, TrainError
from .evaluate import Evaluation, evaluate


@dataclass
class Result:
    run_dir: pathlib.Path | None  # None on ranks other than 0
    card: ModelCard
    history: list[dict]
    model: torch.nn.Module  # the deployable model (no auxiliary heads), with the last epoch's weights
    test: Evaluation | None = None


def build_model(arch: str, card: ModelCard, cfg: TrainConfig) -> torch.nn.Module:
    """The network to train, from the card (pretrained weights and freezing are applied by `_set_up`)."""
    return create(
        arch, num_classes=card.num_classes, in_channels=card.in_channels, **get_spec(arch).training_kwargs
    )  # auxiliary heads on, where the model has them


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
        lr = cfg.lr * gamma**epoch
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
    """The model later stages load: without its training-only auxiliary heads (GoogLeNet's)."""
    if not get_spec(card.architecture).aux_modules(model):
        return model
    plain = create(card.architecture, num_classes=card.num_classes, in_channels=card.in_channels)
    plain.load_state_dict(model.state_dict(), strict=False)  # drops the auxiliary heads' tensors
    return plain.to(next(model.parameters()).device)


@dataclass
class _Run:
    """What the epoch loop works on, each built once by `_set_up`."""

    cfg: TrainConfig
    dist: distributed.Dist
    device: torch.device
    log: Callable[[str], None]
    card: ModelCard  # its provenance is rewritten after each epoch, and at the end
    augment: torch.nn.Module | None  # the kornia pipeline of --augment
    model: torch.nn.Module
    net: torch.nn.Module  # what the training steps call: the model, or DDP around it
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    precision: precision.Precision
    memory_format: torch.memory_format  # of the model and its training inputs
    criterion: torch.nn.Module
    sets: dict[str, ImageSet]
    files: runfiles.RunFiles  # the run directory (written by rank 0)
    state: dict  # epoch, history, best, plateau: what the checkpoint holds besides the tensors
    steps: int  # batches per epoch
    board: Board | None = None  # TensorBoard event files (rank 0, where tensorboard is installed)

    @property
    def val_set(self) -> ImageSet | None:
        return self.sets.get("val")


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> Result:
    augment_spec = checks.check_options(cfg)
    device = checks.pick_device(cfg.device)
    precision.check(cfg.amp, device)
    dist = distributed.setup(device.type)
    run, held = None, ExitStack()  # held: the run directory's lock, released at the end whatever happens
    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", dist.local_rank)
    try:
        cfg, checkpoint = elastic.continued(cfg, dist, log)  # a group torchrun started again: the killed one's run
        run = _set_up(cfg, augment_spec, checkpoint, device, dist, log, held)
        for epoch in range(run.state["epoch"], cfg.epochs):
            if run.state.get("stopped"):
                break
            started = time.perf_counter()
            row = _train_epoch(run, epoch, started)
            best = _validate(run, epoch, row)
            row["seconds"] = round(time.perf_counter() - started, 3)
            run.state["history"].append(row)
            run.state["epoch"] = epoch + 1
            if dist.main:
                _log_epoch(run, row, best)
                if run.board:
                    run.board.epoch((epoch + 1) * run.steps, row)
                _save_epoch(run, best or run.val_set is None)
        result = _finish(run)
        distributed.barrier(dist)  # the ranks leave together
        return result
    finally:
        if run is not None and run.board:
            run.board.close()
        held.close()
        distributed.teardown(dist)


def _set_up(
    cfg: TrainConfig,
    augment_spec: dict[str, float],
    checkpoint: dict | None,
    device: torch.device,
    dist: distributed.Dist,
    log: Callable[[str], None],
    held: ExitStack,
) -> _Run:
    """Data, card, model (pretrained weights, freezing), optimizer and training state, each built once;
    all but the data is checked before the run directory is made and locked (zoo.runlock: the lock goes
    into `held`, whose release removes a directory it made that is still empty). A checkpoint's state
    replaces the fresh one."""
    source = open_source(
        cfg.data,
        val_split=cfg.val_split,
        val_dir=cfg.val_dir,
        test_dir=cfg.test_dir,
        test_split=cfg.test_split,
        seed=cfg.seed,
    )
    card = _card(cfg, source)
    model, weights, frozen = _model(cfg, card, checkpoint is not None, log if dist.main else None)
    augment = augmentation.build(augment_spec, card.input_size)
    run_dir, lock = checks.output_dir(cfg, card.architecture, dist)
    if lock is not None:
        held.enter_context(lock)
    elastic.check_shared(run_dir, dist, held)  # under torchrun: every node sees the run directory
    sets = _load(source, card, cfg, dist, log)
    checks.check_target(cfg, sets)

    memory_format = precision.memory_format(card.architecture)
    model.to(device, memory_format=memory_format)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    prec = _precision(cfg, checkpoint, card, model, criterion, device, dist)
    optimizer = build_optimizer(cfg, param_groups(model, cfg))
    scaler = torch.amp.GradScaler(device.type, enabled=prec.scaled)
    state = _fresh_state(weights, frozen, prec)
    if checkpoint:
        state = runfiles.restore(checkpoint, model, optimizer, scaler, run_dir)
        checks.check_resumable(cfg, state, run_dir)
    files = runfiles.RunFiles(run_dir, cfg, card, source.describe(), augmentation.describe(augment_spec), memory_format)
    run = _Run(
        cfg=cfg,
        dist=dist,
        device=device,
        log=log,
        card=card,
        augment=augment,
        model=model,
        net=distributed.wrap(model, dist, device),
        optimizer=optimizer,
        scaler=scaler,
        precision=prec,
        memory_format=memory_format,
        criterion=criterion,
        sets=sets,
        files=files,
        state=state,
        steps=sets["train"].num_batches(cfg.batch_size, world=dist.world, drop_last=True),
    )
    if dist.main:
        if cfg.tensorboard:
            run.board = _open_board(run)
        _announce(run)
    return run


def _card(cfg: TrainConfig, source: Source) -> ModelCard:
    """The run's model card: the architecture's defaults, the data's classes and channels, the options,
    and the mean/std that pretrained weights expect."""
    spec = get_spec(cfg.arch)
    card = ModelCard.for_model(
        spec.name,
        in_channels=cfg.in_channels or source.channels or spec.input_size[0],
        input_size=[cfg.input_size] * 2 if cfg.input_size else None,
        class_names=source.class_names,
        resize_mode=cfg.resize_mode,
    )
    norm = transfer.normalization(spec.name, cfg.pretrained)
    if norm:
        card.mean, card.std = norm
    return card


def _model(
    cfg: TrainConfig, card: ModelCard, resumed: bool, log: Callable[[str], None] | None
) -> tuple[torch.nn.Module, str, dict]:
    """The network the card describes, initialised from --seed, its input checked, with --pretrained and
    --freeze applied: (model, where its weights came from, what is frozen)."""
    torch.manual_seed(cfg.seed)
    model = build_model(card.architecture, card, cfg)
    checks.check_input(model, card)
    weights, frozen = _transfer(model, card.architecture, cfg, resumed, log)
    return model, weights, frozen


def _transfer(
    model: torch.nn.Module, arch: str, cfg: TrainConfig, resumed: bool, log: Callable[[str], None] | None
) -> tuple[str, dict]:
    """--pretrained and --freeze applied to `model`: (where its weights came from, what is frozen).
    A resumed run's weights come from its checkpoint. `log` is None on ranks other than 0."""
    weights = "trained from scratch"
    if cfg.pretrained and not resumed:
        weights = transfer.load_pretrained(
            model,
            arch,
            cfg.pretrained,
            partial=cfg.pretrained_partial,
            log=(lambda s: log(f"pretrained: {s}")) if log else (lambda s: None),
        )
    frozen = transfer.freeze(model, arch, cfg.freeze)
    if log and cfg.freeze != "none":
        log(
            f"frozen: {', '.join(frozen['frozen_stages']) or 'nothing'} ({frozen['frozen_params']:,} parameters); "
            f"training {', '.join(frozen['trainable_stages'])} ({frozen['trainable_params']:,})"
        )
    return weights, frozen


def _load(
    source: Source, card: ModelCard, cfg: TrainConfig, dist: distributed.Dist, log: Callable[[str], None]
) -> dict[str, ImageSet]:
    """The splits as ImageSets at the card's input shape; a warning for the files that are not images."""
    sets, skipped = source.load(card, workers=cfg.workers, progress=dist.main)
    if skipped and dist.main:
        log(f"warning: skipped {plural(len(skipped), 'file')} that are not readable images (first: {skipped[0]})")
    return sets


def _precision(
    cfg: TrainConfig,
    checkpoint: dict | None,
    card: ModelCard,
    model: torch.nn.Module,
    criterion: torch.nn.Module,
    device: torch.device,
    dist: distributed.Dist,
) -> precision.Precision:
    """What the run computes in: a resumed run's as it started, else --amp's choice (rank 0's, so that
    every process computes the same way), probed on a random batch of the run's shape."""
    if checkpoint:
        return _recorded_precision(checkpoint)
    example = lambda: _example(cfg, card, device, precision.memory_format(card.architecture))  # noqa: E731
    return distributed.broadcast_object(precision.choose(cfg.amp, device, model, example, criterion), dist)


def _fresh_state(weights: str, frozen: dict, prec: precision.Precision) -> dict:
    """The training state before the first epoch: what the checkpoint holds besides the tensors."""
    return {
        "epoch": 0,
        "best_acc": -1.0,
        "best_epoch": 0,
        "history": [],
        "plateau": {"scale": 1.0, "best": math.inf, "bad": 0},
        "weights": weights,
        "frozen": frozen,
        "precision": prec.dtype,
        "stopped": None,  # why the run stopped before --epochs (--target-accuracy)
    }


def _example(
    cfg: TrainConfig, card: ModelCard, device: torch.device, memory_format: torch.memory_format
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random training batch of the run's shape, for the --amp auto probe (the global RNG untouched)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(cfg.batch_size, *card.input_shape, generator=g).to(device, memory_format=memory_format)
    return x, torch.randint(0, card.num_classes, (cfg.batch_size,), generator=g).to(device)


def _recorded_precision(checkpoint: dict) -> precision.Precision:
    """The precision a resumed run computed in (runs of earlier versions recorded only --amp, a flag)."""
    dtype = checkpoint["state"].get("precision")
    if dtype is None:
        dtype = "float16" if precision.mode(checkpoint["config"].get("amp", False)) == "on" else "float32"
    return precision.Precision(dtype, f"{dtype} (as the run started)")


def _open_board(run: _Run) -> Board | None:
    """TensorBoard's writer (None without tensorboard): a resumed run writes again from the batch after its
    checkpoint's epoch (whose scalars are at its end); a new run's graph is written now, before the first
    epoch's clock starts."""
    epoch = run.state["epoch"]
    board = Board.open(run.files.path, first_step=epoch and epoch * run.steps + 1)
    if board and not run.state["history"]:
        blank = torch.zeros(1, *run.card.input_shape, device=run.device).contiguous(memory_format=run.memory_format)
        board.graph(deployable(run.model, run.card), blank, run.log)
    return board


def _announce(run: _Run) -> None:
    """The run's first line of log (and, for a run resumed after its last epoch, what is left to do)."""
    cfg, card, dist = run.cfg, run.card, run.dist
    sizes = " / ".join(f"{len(s):,} {name}" for name, s in run.sets.items())
    threads = torch.get_num_threads()
    run.log(
        f"training {card.architecture} on {cfg.data} ({sizes}; {card.num_classes} classes, "
        f"{'x'.join(map(str, card.input_shape))}) on {run.device}"
        f"{distributed.describe(dist, cfg.batch_size, cfg.accumulate)}, "
        f"{threads} thread{'s' * (threads != 1)}, {run.precision.note}"
        f"{', channels_last' if run.memory_format == torch.channels_last else ''} -> {run.files.path}"
    )
    if cfg.recipe:
        run.log(f"recipe: {cfg.recipe} (benchmarks/train.md; options given on the command line win)")
    if run.state["epoch"] == cfg.epochs or run.state.get("stopped"):  # resumed after its last epoch
        run.log(f"{run.state['epoch']} epoch(s) were done; finishing the run (test evaluation, final card)")
        run.files.write_history(run.state["history"])


def _train_epoch(run: _Run, epoch: int, started: float) -> dict:
    """One pass over this process's share of the training split; the epoch's history row, its
    validation columns empty."""
    cfg, dist, device = run.cfg, run.dist, run.device
    torch.manual_seed((cfg.seed * 100_003 + epoch) * 1_009 + dist.rank)  # augmentation, dropout
    run.net.train()
    loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
    bar = _progress(run.steps, f"epoch {epoch + 1}/{cfg.epochs}", dist.main)
    batches = run.sets["train"].batches(
        cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch, rank=dist.rank, world=dist.world, drop_last=True
    )
    for i, (x, y) in enumerate(batches):
        lr = lr_at(cfg, epoch, i, run.steps, run.state["plateau"]["scale"])
        for group in run.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss, logits = _step(run, x, y, step_now=(i + 1) % cfg.accumulate == 0 or i + 1 == run.steps)
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if run.board and (i + 1) % cfg.log_every == 0:
            run.board.step(
                epoch * run.steps + i + 1,
                loss=loss.item(),
                lr=lr,
                images_per_s=seen * dist.world / (time.perf_counter() - started),
            )
        if bar is not None:
            bar.update()
            if i % 20 == 0:
                bar.set_postfix(
                    loss=f"{loss_sum.item() / seen:.4f}",
                    img_s=f"{seen * dist.world / (time.perf_counter() - started):.0f}",
                )
    if bar is not None:
        bar.close()
    sums = torch.stack([loss_sum.float(), correct.float(), torch.tensor(float(seen), device=device)])
    if dist.world > 1:
        torch.distributed.all_reduce(sums)
    train_seconds = time.perf_counter() - started
    return {
        "epoch": epoch + 1,
        "train_loss": float(sums[0] / sums[2]),
        "train_acc": float(sums[1] / sums[2]),
        "val_loss": None,
        "val_acc": None,
        "lr": lr,
        "train_seconds": round(train_seconds, 3),
        "images_per_s": round(float(sums[2]) / train_seconds, 1),
    }


def _step(run: _Run, x: torch.Tensor, y: torch.Tensor, step_now: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch on the device: uint8 images -> [0, 1] -> augmentation -> mean/std -> forward -> loss ->
    backward, and an optimizer step where `step_now` (every --accumulate batches); (loss, logits)."""
    cfg, device, autocast = run.cfg, run.device, run.precision.autocast
    x = to_unit(x)
    if run.augment is not None:
        x = run.augment(x)
    if run.board and not run.board.shown:  # a resumed run's board has shown them
        _show_inputs(run, x)
    x = standardize(x, run.card).contiguous(memory_format=run.memory_format)
    with nullcontext() if step_now or run.dist.world == 1 else run.net.no_sync():
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            out = run.net(x)
            logits, aux = (out[0], out[1:]) if isinstance(out, tuple) else (out, ())
            loss = run.criterion(logits, y) + sum(cfg.aux_weight * run.criterion(a, y) for a in aux)
        run.scaler.scale(loss / cfg.accumulate).backward()
    if step_now:
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
    return loss, logits


def _show_inputs(run: _Run, x: torch.Tensor) -> None:
    """TensorBoard, once, at the first batch of a run: the augmented inputs."""
    run.board.shown = True
    run.board.inputs(x)


def _validate(run: _Run, epoch: int, row: dict) -> bool:
    """Validation where it is due (filling the row), the plateau schedule, --target-accuracy and model
    selection: whether this epoch's weights are the best so far."""
    cfg, state = run.cfg, run.state
    if run.val_set is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
        ev = evaluate(
            run.model,
            run.card,
            run.val_set,
            device=run.device,
            rank=run.dist.rank,
            world=run.dist.world,
            label_smoothing=cfg.label_smoothing,
        )
        row.update(val_loss=ev.loss, val_acc=ev.accuracy)
        if cfg.target_accuracy is not None and ev.accuracy >= cfg.target_accuracy:
            state["stopped"] = (
                f"validation accuracy {100 * ev.accuracy:.2f}% reached --target-accuracy "
                f"{100 * cfg.target_accuracy:g}% at epoch {epoch + 1} of {cfg.epochs}"
            )
        p = state["plateau"]
        if ev.loss < p["best"] * (1 - 1e-4):
            p["best"], p["bad"] = ev.loss, 0
        else:
            p["bad"] += 1
            if cfg.schedule == "plateau" and p["bad"] > cfg.patience:
                p["scale"], p["bad"] = p["scale"] * _gamma(cfg), 0
    best = row["val_acc"] is not None and row["val_acc"] > state["best_acc"]
    if best or run.val_set is None:
        state["best_acc"], state["best_epoch"] = row["val_acc"] or -1.0, epoch + 1
    return best


def _log_epoch(run: _Run, row: dict, best: bool) -> None:
    epochs = run.cfg.epochs
    val = (
        f"val loss {row['val_loss']:.4f}  val acc {100 * row['val_acc']:.2f}%"
        if row["val_acc"] is not None
        else "(no validation)"
    )
    run.log(
        f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}  train loss {row['train_loss']:.4f}  "
        f"{val}  lr {row['lr']:.3g}  {row['seconds']:.1f}s{'  *' if best else ''}"
    )


def _finish(run: _Run) -> Result:
    """The test split, with the best weights, and the final card (rank 0); the run's result."""
    result = Result(
        run.files.path if run.dist.main else None, run.card, run.state["history"], deployable(run.model, run.card)
    )
    if not run.dist.main:
        return result
    if run.state.get("stopped"):
        run.log(f"stopped: {run.state['stopped']}")
    run.files.draw_last_curves(run.state["history"])
    if "test" in run.sets:
        card = run.card
        best_model = deployable(build_model(card.architecture, card, run.cfg), card).to(run.device)
        try:
            rundir.load_weights(best_model, run.files.path / rundir.WEIGHTS, device=str(run.device))
        except rundir.RunError as e:
            raise TrainError(str(e)) from None
        result.test = evaluate(best_model, card, run.sets["test"], device=run.device)
        run.log(
            f"test accuracy {100 * result.test.accuracy:.2f}% ({result.test.n:,} images, "
            f"weights of epoch {run.state['best_epoch']})"
        )
    run.files.write_card(run.state, result.test, finished=True)
    run.log(f"wrote {run.files.path}")
    return result


def _save_epoch(run: _Run, best: bool) -> None:
    """The run directory after an epoch (zoo/train/runfiles.py), `best` where its weights are the best."""
    run.files.save_epoch(deployable(run.model, run.card), run.model, run.optimizer, run.scaler, run.state, best)


def _progress(steps: int, desc: str, main: bool):
    if not main:
        return None
    from tqdm import tqdm

    return tqdm(total=steps, desc=desc, unit="batch", leave=False, dynamic_ncols=True, disable=None)

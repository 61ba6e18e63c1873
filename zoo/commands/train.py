import pathlib

import click

from zoo import rundir
from zoo import threads as threads_
from zoo.card import RESIZE_MODES
from zoo.commands import options as shared
from zoo.data.augment import OPTIONS as AUGMENTATIONS
from zoo.errors import UserError
from zoo.train.config import AMP_MODES, OPTIMIZERS, SCHEDULES, TrainConfig

D = TrainConfig()  # the defaults live in one place
option = shared.with_defaults(D)


def _amount(value):
    """--val-split / --test-split: a fraction below 1 or a number of images."""
    if value is None:
        return None
    try:
        v = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a fraction nor a number of images") from None
    if v < 0:
        raise click.BadParameter("must not be negative")
    return v


def _fraction(value):
    """--target-accuracy: a fraction in (0, 1], or a percentage above 1."""
    if value is None:
        return None
    try:
        v = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number") from None
    v = v / 100 if v > 1 else v
    if not 0 < v <= 1:
        raise click.BadParameter("must be a fraction in (0, 1] or a percentage up to 100")
    return v


@click.command()
@click.argument("arch", required=False)
@option(
    "--data",
    help="mnist-small (embedded), mnist ($ZOO_DATA/mnist, downloaded if missing), a directory of "
    "MNIST IDX files, or an image folder (one subfolder per class).",
)
@click.option(
    "--val-split",
    default=str(D.val_split),
    show_default=True,
    help="Validation taken from train: a fraction, or a number of images (0: none).",
)
@click.option("--val", "val_dir", type=click.Path(), help="A validation image folder (instead of --val-split).")
@click.option("--test", "test_dir", type=click.Path(), help="A test image folder (never used for training).")
@click.option(
    "--test-split",
    help="Hold out a test split from train: a fraction or a number of images "
    "(the last ones of MNIST IDX files, a stratified random pick of a folder).",
)
@click.option("--input-size", type=click.IntRange(1), help="Input height and width (default: the model's).")
@click.option(
    "--in-channels", type=int, help="1 (grayscale) or 3 (RGB); default: 1 for MNIST, the model's for image folders."
)
@option(
    "--resize-mode",
    type=click.Choice(RESIZE_MODES),
    help="How images are brought to the input size (DIGITS' modes).",
)
@option(
    "--augment",
    help=f"Augmentations on the training device, any of {', '.join(AUGMENTATIONS)}, each with an optional "
    "magnitude, e.g. rotate=15,shift=0.1,hflip ('none' for none). See `zoo augment-preview`.",
)
@click.option(
    "--pretrained",
    help="Start from these weights: a run directory or .safetensors made by zoo, a "
    "torchvision-format .pth checkpoint, or 'imagenet' (torchvision's published "
    "weights, downloaded once to ~/.cache/zoo/weights, SHA-256 checked). The head is "
    "replaced for the data's classes; 3-channel filters are folded for grayscale.",
)
@click.option(
    "--pretrained-partial",
    is_flag=True,
    help="Load the keys that fit and skip the rest (default: keys that do not match are an error).",
)
@option(
    "--freeze",
    help="none (full fine-tuning), backbone (train the new head only: feature extraction), or N "
    "(only the last N stages train, the head included). Frozen batch norm keeps its statistics.",
)
@option(
    "--backbone-lr-mult",
    type=click.FloatRange(0),
    help="Learning rate of everything but the head, as a multiple of --lr (discriminative rates).",
)
@option("--epochs", type=int)
@option(
    "--batch-size",
    type=int,
    help="Images per batch (per process under torchrun).",
)
@option("--lr", type=float, help="Base learning rate.")
@option("--optimizer", type=click.Choice(OPTIMIZERS))
@option("--momentum", type=float, help="sgd and rmsprop.")
@option("--weight-decay", type=float)
@option(
    "--schedule",
    type=click.Choice(SCHEDULES),
    help="step: lr*gamma**(epoch//step-size); exp: lr*gamma**epoch; cosine: down to --min-lr; "
    "plateau: lr*gamma after --patience epochs without a better val loss.",
)
@option("--step-size", type=click.IntRange(1), help="Epochs between decays (step).")
@click.option("--gamma", type=float, help="Decay factor: default 0.1 for step and plateau, 0.6 for exp.")
@option("--patience", type=click.IntRange(0), help="plateau.")
@option("--min-lr", type=float, help="cosine's final rate.")
@option(
    "--warmup",
    type=click.FloatRange(0),
    help="Epochs of linear learning-rate warmup.",
)
@option("--label-smoothing", type=float)
@option(
    "--accumulate",
    type=int,
    help="Batch accumulation: gradients of N batches per optimizer step.",
)
@option("--seed", type=int)
@shared.device(D.device)
@option(
    "--amp",
    type=click.Choice(AMP_MODES),
    is_flag=False,
    flag_value="on",
    help="Mixed precision: bfloat16 autocast on a CPU with native BF16 (AVX512-BF16 or AMX), float16 on "
    "CUDA. auto: on where native and measured faster in a short probe (the first line says which); "
    "--amp alone means on, refused where not native; bfloat16: bfloat16 autocast anywhere, emulated "
    "(slower) where not native, to check accuracy.",
)
@shared.loader_workers(D.workers)
@threads_.option()
@click.option("--output", type=click.Path(), help="Run directory (default runs/ARCH-YYYYmmdd-HHMMSS).")
@option(
    "--snapshot-every",
    type=click.IntRange(0),
    help="Also keep the weights of every N-th epoch (epoch-NNN.safetensors); 0: never.",
)
@option("--val-every", type=int, help="Validate every N epochs.")
@click.option(
    "--target-accuracy",
    callback=lambda ctx, param, value: _fraction(value),
    help="Stop after the epoch whose validation accuracy reaches this (0.99 or 99 for 99%%); the run "
    "then finishes as usual (test evaluation, final card).",
)
@option(
    "--tensorboard/--no-tensorboard",
    help="TensorBoard event files in the run directory (where the tensorboard extra is installed): "
    "`tensorboard --logdir runs`.",
)
@option(
    "--log-every",
    type=click.IntRange(1),
    help="Batches between TensorBoard's step scalars (loss, lr, images/s); epochs always.",
)
@click.option(
    "--resume",
    type=click.Path(),
    help="Continue the run in this directory (its options are kept; "
    "--epochs, --device, --workers and --threads may change).",
)
@click.pass_context
def train(ctx, arch, resume, threads, **options):
    """Train ARCH (e.g. lenet, resnet18) on --data and write a run directory.

    \b
    zoo train lenet                                  # MNIST-small, about half a minute on 2 CPU cores
    zoo train resnet18 --data photos/ --input-size 64 --val-split 0.2 --augment hflip,crop=4
    zoo train lenet --resume runs/lenet5-20261121-101500 --epochs 30
    zoo train resnet18 --data photos/ --pretrained imagenet --freeze backbone
    torchrun --nproc-per-node 2 -m zoo train lenet   # DistributedDataParallel (gloo on CPU)
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 --max-restarts 3 \\
        -m zoo train resnet18 --data /shared/photos --output /shared/runs/r18   # on each node; README
    """
    if threads is None and resume:  # the run's own count: other counts sum floats in another order
        threads = threads_.recorded(resume)
        if threads is None and not (pathlib.Path(resume) / rundir.CARD).exists():  # killed before its first card
            click.echo(
                f"warning: {resume} records no thread count (it has no {rundir.CARD} yet): resuming with this "
                "machine's default, which may sum floats in another order than the run did; pass --threads N "
                "with the count it started with",
                err=True,
            )
    threads_.configure(threads)  # before torch loads OpenMP; the set-up line says how many

    from zoo.data.datasets import DataError
    from zoo.models import UnknownModelError, resolve
    from zoo.train.distributed import exit_worker
    from zoo.train.trainer import TrainError
    from zoo.train.trainer import train as run_training
    from zoo.train.transfer import PretrainedError

    try:
        if resume:
            given = [k for k in options if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE]
            cfg = TrainConfig.resumed(resume, **{k: options[k] for k in given})  # only RESUME_OPTIONS
            if arch and resolve(arch) != resolve(cfg.arch):
                raise TrainError(f"{resume} trains {cfg.arch}, not {arch}")
        else:
            if not arch:
                raise UserError("which model? e.g. `zoo train lenet` (`zoo models` lists them)", exit_code=2)
            options["val_split"] = _amount(options["val_split"]) or 0.0
            options["test_split"] = _amount(options["test_split"])
            given = [k for k in options if ctx.get_parameter_source(k) != click.core.ParameterSource.DEFAULT]
            cfg = TrainConfig(arch=resolve(arch), **options).with_recipe(given)  # the options given win
        run_training(cfg, log=click.echo)
        exit_worker()  # a torchrun worker ends here, at once (zoo.train.distributed.exit_worker says why)
    except UnknownModelError as e:
        raise UserError(str(e), exit_code=2) from None
    except (TrainError, DataError, PretrainedError) as e:
        raise UserError(str(e)) from None

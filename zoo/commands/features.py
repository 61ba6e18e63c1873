import click

from zoo import atomic, devices, rundir
from zoo import threads as threads_
from zoo.commands import options
from zoo.data import SPLITS
from zoo.errors import UserError


@click.command(epilog=f"{rundir.MODEL_HELP} {rundir.WEIGHTS_HELP}")
@click.argument("model")
@click.argument("data")
@click.option(
    "--output",
    "-o",
    type=click.Path(),
    default="features.npz",
    show_default=True,
    help="The .npz file to write (features [N, D] float32, labels [N], paths [N], class_names).",
)
@click.option(
    "--split",
    type=click.Choice(["all", *SPLITS]),
    default="all",
    show_default=True,
    help="Which of the data's splits (MNIST has train and test; an image folder is all train).",
)
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True)
@options.device()
@options.loader_workers(2)
@threads_.option()
def features(model, data, output, split, batch_size, device, workers, threads):
    """The penultimate-layer embedding of every image of DATA under MODEL (feature extraction).

    DATA is an image folder (one subfolder per
    class), mnist-small, mnist or an IDX directory; its own classes label the images, so a network can
    embed classes it was never trained on. Each embedding is what the model's head layer receives
    (LeNet: the 84-d F6 output, AlexNet/VGG: the 4096-d fc7 output, GoogLeNet/ResNet: the globally pooled
    features), through the same preprocessing as training and `zoo classify`.

    \b
    zoo features runs/resnet18-20261121-120000 photos/ --output photos.npz
    python -c "import numpy as np; f = np.load('photos.npz'); print(f['features'].shape, f['paths'][:3])"
    """
    threads_.configure(threads)  # before torch loads OpenMP
    from zoo.data.datasets import DataError
    from zoo.text import plural
    from zoo.train.features import features_of, save_features

    try:
        result = features_of(
            rundir.resolve_model(model, weights=True),
            data,
            split,
            batch_size=batch_size,
            device=devices.resolve(device),
            workers=workers,
        )
    except (rundir.RunError, DataError, devices.DeviceError) as e:
        raise UserError(str(e)) from None
    if result.skipped:
        what = "is not a readable image" if len(result.skipped) == 1 else "are not readable images"
        path, why = result.skipped[0]
        click.echo(
            f"warning: skipped {plural(len(result.skipped), 'file')} that {what} (first: {path}: {why})", err=True
        )
    try:
        save_features(output, result)
    except atomic.OutputError as e:
        raise UserError(str(e)) from None
    n, d = result.features.shape
    click.echo(
        f"wrote {output}: {plural(n, 'image')} x {plural(d, 'feature')} ({result.architecture}, input of "
        f"{result.layer}), "
        f"{plural(len(result.class_names), 'class', 'classes')}"
    )

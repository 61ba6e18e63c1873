import pathlib

import click

from zoo import atomic, rundir
from zoo import threads as threads_
from zoo.answer import DEFAULT_TOP_K
from zoo.errors import UserError


@click.command(epilog=f"{rundir.MODEL_HELP} {rundir.WEIGHTS_HELP} {rundir.NAMES_HELP}")
@click.argument("model")
@click.argument("image", type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option(
    "--layers",
    help="Comma-separated layers to show, by module name (conv1,layer1,features.0) "
    "or paper name (C1,conv1_1); default: every conv/pool/linear block.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    help="Folder for index.html, stats.json and the PNG figures (default: viz/<model name>/).",
)
@click.option(
    "--top",
    type=click.IntRange(1),
    default=DEFAULT_TOP_K,
    show_default=True,
    help="How many of the most probable classes to show.",
)
@threads_.option()
def visualize(model, image, layers, output, top, threads):
    """Write one self-contained HTML page that shows what MODEL does with IMAGE.

    A registered model name (random weights) shows an architecture. The page shows the image as the model sees it,
    the top predictions, each layer's activations, statistics, histograms and filters, and a run's
    training curves and confusion matrix; every figure is also written as a PNG beside it.
    """
    import time

    threads_.configure(threads)  # before torch loads OpenMP
    from zoo.data.preprocess import ImageError
    from zoo.models import UnknownModelError
    from zoo.viz.layers import UnknownLayerError
    from zoo.viz.report import build, open_model, write

    start = time.perf_counter()
    if not image.is_file():
        raise UserError(f"{image}: no such image file")
    try:
        net, card, run_dir, source = open_model(model)
    except rundir.RunError as e:
        raise UserError(str(e), exit_code=2) from None
    except UnknownModelError as e:
        raise UserError(f"{e}; MODEL may also be a run directory", exit_code=2) from None
    names = [n.strip() for n in layers.split(",") if n.strip()] if layers else None
    try:
        report = build(net, card, image, layer_names=names, run_dir=run_dir, source=source, top=top)
    except UnknownLayerError as e:
        raise UserError(str(e), exit_code=2) from None
    except ImageError as e:
        raise UserError(str(e)) from None
    output = output or pathlib.Path("viz") / (run_dir.name if run_dir else card.architecture)
    try:
        page = write(report, output)
    except atomic.OutputError as e:
        raise UserError(str(e)) from None
    for i, p in enumerate(report.predictions, 1):
        click.echo(f"{i}. {p['label']:<24} {p['probability']:7.2%}")
    click.echo(
        f"{len(report.layers)} layers, {len(report.figures())} figures -> {page} "
        f"({page.stat().st_size / 2**20:.1f} MiB, {time.perf_counter() - start:.1f} s)"
    )

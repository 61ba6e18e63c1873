import json

import click

from zoo import devices, rundir
from zoo import threads as threads_
from zoo.commands import options
from zoo.data import SPLITS
from zoo.errors import UserError

MAX_PRINTED_CLASSES = 20  # a larger confusion matrix goes to the picture and the JSON only


@click.command(epilog=f"{rundir.MODEL_HELP} {rundir.WEIGHTS_HELP}")
@click.argument("model", required=False)
@click.option(
    "--data",
    help="mnist-small, mnist, an IDX directory (the t10k files alone are a test split) or "
    "an image folder (default: the data the model was trained on, split as in training).",
)
@click.option(
    "--split",
    type=click.Choice(["auto", *SPLITS]),
    default="auto",
    show_default=True,
    help="auto: the run's held-out split (test, else validation) of the data it trained on; of "
    "other data, its test split if it has one, else all of it.",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option(
    "--confusion",
    "confusion_png",
    type=click.Path(),
    help="Where to draw the confusion matrix (default: confusion.png beside the model).",
)
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True)
@options.device()
@options.loader_workers(2)
@threads_.option()
def evaluate(model, data, split, fmt, confusion_png, batch_size, device, workers, threads):
    """Accuracy, top-5, per-class accuracy, confusion matrix and loss of MODEL on held-out data.

    Without --data, the run's own test split, else its validation split; a number on images the model was
    trained on is marked "not held out" (a warning, and "held_out": false in JSON).

    \b
    zoo evaluate runs/lenet5-20261121-101500 --data mnist-small
    zoo evaluate runs/resnet18-20261121-120000 --data photos/test --format json
    """
    threads_.configure(threads)  # before torch loads OpenMP
    from zoo.data.datasets import DataError
    from zoo.train.evaluate import evaluate_run

    try:
        run = evaluate_run(
            model, data, split=split, device=device, batch_size=batch_size, workers=workers, confusion_png=confusion_png
        )
    except (rundir.RunError, DataError, devices.DeviceError) as e:
        raise UserError(str(e)) from None
    _warn(run.path, split, run.scored)
    if fmt == "json":
        click.echo(json.dumps({"model": str(run.path), **run.scored.to_dict()}, indent=2))
        return
    _print_table(run.path, run.card, run.scored)
    click.echo(f"\nwrote {run.confusion_png}")


def _warn(path, split, scored):
    """Warnings on stderr: a number on images the model trained on, files that are not images."""
    from zoo.text import plural

    if scored.held_out is False:
        why = "it held nothing out" if split == "auto" else "--split train"
        click.echo(
            f"warning: not held out: {path} was trained on these images ({scored.data}, {scored.split} split; {why})",
            err=True,
        )
    if scored.skipped:
        click.echo(
            f"warning: skipped {plural(len(scored.skipped), 'file')} that are not readable images "
            f"(first: {scored.skipped[0]})",
            err=True,
        )


def _print_table(path, card, scored):
    """The table: accuracy, top-5, loss, per-class accuracy, and the confusion matrix of few classes."""
    result = scored.result
    held = {True: " (held out)", False: " (NOT held out: trained on)", None: ""}[scored.held_out]
    click.echo(f"{path} ({card.architecture}) on {scored.data}, {scored.split} split{held}: {result.n:,} images")
    click.echo(f"accuracy  {100 * result.accuracy:.2f}%")
    if result.top5 is not None:
        click.echo(f"top-5     {100 * result.top5:.2f}%")
    click.echo(f"loss      {result.loss:.4f}\n")
    width = max(5, *(len(n) for n in card.class_names))
    click.echo(f"{'class':<{width}}  accuracy       n")
    for name, row in result.per_class.items():
        acc = "-" if row["accuracy"] is None else f"{100 * row['accuracy']:.2f}%"
        click.echo(f"{name:<{width}}  {acc:>8}  {row['n']:>6,}")
    if len(card.class_names) <= MAX_PRINTED_CLASSES:
        cell = max(4, len(str(max(max(r) for r in result.confusion))) + 1, *(len(n) + 1 for n in card.class_names))
        click.echo("\nconfusion matrix (rows: true class, columns: predicted)")
        click.echo(" " * width + "".join(f"{n:>{cell}}" for n in card.class_names))
        for name, row in zip(card.class_names, result.confusion):
            click.echo(f"{name:<{width}}" + "".join(f"{v:>{cell}}" for v in row))

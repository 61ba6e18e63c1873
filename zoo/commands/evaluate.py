import json

import click

MAX_PRINTED_CLASSES = 20  # a larger confusion matrix goes to the picture and the JSON only


@click.command()
@click.argument("model", required=False)
@click.option("--data", help="mnist-small, mnist, an IDX directory or an image folder "
                             "(default: the data the model was trained on).")
@click.option("--split", type=click.Choice(["auto", "train", "test"]), default="auto", show_default=True,
              help="auto: the data's test split if it has one, else all of it (an image folder).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--confusion", "confusion_png", type=click.Path(),
              help="Where to draw the confusion matrix (default: confusion.png beside the model).")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True,
              help="DataLoader processes decoding image folders.")
def evaluate(model, data, split, fmt, confusion_png, batch_size, device, workers):
    """Accuracy, top-5, per-class accuracy, confusion matrix and loss of MODEL on --data.

    MODEL is a run directory or its model.safetensors (default: the newest run under runs/).

    \b
    zoo evaluate runs/lenet5-20261121-101500 --data mnist-small
    zoo evaluate runs/resnet18-20261121-120000 --data photos/test --format json
    """
    import pathlib

    import torch

    from zoo import rundir
    from zoo.cli import UserError
    from zoo.data.datasets import DataError
    from zoo.train.evaluate import evaluate_data
    from zoo.train.plots import plot_confusion

    try:
        path = pathlib.Path(model) if model else rundir.newest_run()
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device here; use --device cpu")
        net, card = rundir.load_model(path, device=device)
        data = data or card.provenance.get("data", {}).get("source")
        if not data:
            raise UserError(f"{path}: its card does not say what data it was trained on; pass --data")
        result, used, skipped = evaluate_data(net, card, data, split=split, device=device,
                                              batch_size=batch_size, workers=workers)
    except (rundir.RunError, DataError) as e:
        raise UserError(str(e)) from None
    if skipped:
        click.echo(f"warning: skipped {len(skipped)} file(s) that are not readable images "
                   f"(first: {skipped[0]})", err=True)
    png = pathlib.Path(confusion_png) if confusion_png else (path if path.is_dir() else path.parent) / "confusion.png"
    plot_confusion(result.confusion, card.class_names, png,
                   title=f"{card.architecture} on {data} ({used}): {100 * result.accuracy:.2f}%")
    if fmt == "json":
        click.echo(json.dumps({"model": str(path), "data": data, "split": used, **result.to_dict()}, indent=2))
        return
    click.echo(f"{path} ({card.architecture}) on {data}, {used} split: {result.n:,} images")
    click.echo(f"accuracy  {100 * result.accuracy:.2f}%")
    if result.top5 is not None:
        click.echo(f"top-5     {100 * result.top5:.2f}%")
    click.echo(f"loss      {result.loss:.4f}\n")
    width = max(5, *(len(n) for n in card.class_names))
    click.echo(f"{'class':<{width}}  accuracy       n")
    for name, row in result.per_class.items():
        acc = "-" if row["accuracy"] is None else f"{100 * row['accuracy']:.2f}%"
        click.echo(f"{name:<{width}}  {acc:>8}  {row['n']:>6,}")
    k = len(card.class_names)
    if k <= MAX_PRINTED_CLASSES:
        cell = max(4, len(str(max(max(r) for r in result.confusion))) + 1, *(len(n) + 1 for n in card.class_names))
        click.echo("\nconfusion matrix (rows: true class, columns: predicted)")
        click.echo(" " * width + "".join(f"{n:>{cell}}" for n in card.class_names))
        for name, row in zip(card.class_names, result.confusion):
            click.echo(f"{name:<{width}}" + "".join(f"{v:>{cell}}" for v in row))
    click.echo(f"\nwrote {png}")

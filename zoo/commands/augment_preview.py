import click

from zoo.errors import UserError


@click.command("augment-preview")
@click.argument("run_or_data")
@click.option("--output", type=click.Path(), default="grid.png", show_default=True, help="The picture to write.")
@click.option(
    "--augment",
    help="Augmentations to show, e.g. rotate=15,shift=0.1,invert (default for a run: the ones it was trained with).",
)
@click.option(
    "--model",
    "arch",
    help="For data: the model whose input size and colour mode to use "
    "(default lenet for MNIST, resnet18 for image folders).",
)
@click.option("--input-size", type=click.IntRange(1), help="For data: input height and width.")
@click.option("--samples", type=click.IntRange(1, 50), default=6, show_default=True, help="Rows: images.")
@click.option(
    "--per-sample",
    type=click.IntRange(1, 30),
    default=7,
    show_default=True,
    help="Augmented versions per image (after the original).",
)
@click.option("--seed", type=int, default=0, show_default=True)
def augment_preview(run_or_data, output, augment, arch, input_size, samples, per_sample, seed):
    """A grid of randomly augmented training images of a run (its --augment) or of data.

    \b
    zoo augment-preview mnist-small --augment rotate=15,shift=0.1,invert --output grid.png
    zoo augment-preview runs/lenet5-20261121-101500 --output grid.png
    """
    import pathlib

    import numpy as np
    import torch

    from zoo import atomic, rundir
    from zoo.card import CardError, ModelCard
    from zoo.data import augment as augmentation
    from zoo.data.datasets import DataError, open_source, to_unit
    from zoo.models import UnknownModelError
    from zoo.viz import figures

    path = pathlib.Path(run_or_data)
    try:
        if (path / rundir.CARD).is_file():
            card = ModelCard.load(path / rundir.CARD)
            data = card.provenance.get("data", {}).get("source")
            augment = augment or card.provenance.get("augment")
            if not data:
                raise UserError(f"{path}: its card does not say what data it was trained on")
            source = open_source(data, class_names=card.class_names)
        else:
            source = open_source(run_or_data)
            arch = arch or ("lenet" if source.channels == 1 else "resnet18")
            card = ModelCard.for_model(
                arch, class_names=source.class_names, input_size=[input_size] * 2 if input_size else None
            )
        spec = augmentation.parse(augment)
        if not spec:
            raise UserError("nothing to preview: pass --augment, e.g. --augment rotate=15,shift=0.1")
        train = source.splits["train"]
        pick = np.sort(np.random.default_rng(seed).choice(len(train), min(samples, len(train)), replace=False))
        source.splits = {"train": train.subset(pick)}
        images = source.load(card, workers=0, progress=False)[0]["train"]
    except (DataError, augmentation.AugmentError, UnknownModelError, CardError) as e:
        raise UserError(str(e)) from None
    module = augmentation.build(spec, card.input_size)
    torch.manual_seed(seed)
    x = to_unit(images.images)
    versions = [x] + [module(x) for _ in range(per_sample)]
    rows = []
    for i in range(len(x)):
        row = [v[i].clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy() for v in versions]
        rows.append(row)
    titles = [f"class {card.class_names[int(y)]}" for y in images.labels]
    grid = figures.image_grid(
        rows, titles, title=f"{run_or_data}: {augmentation.describe(spec)} (first column: original)"
    )
    try:
        atomic.write_bytes(output, grid)
    except atomic.OutputError as e:
        raise UserError(str(e)) from None
    click.echo(f"wrote {output}: {len(rows)} images x {per_sample} augmentations ({augmentation.describe(spec)})")

import click

from zoo import threads as threads_


@click.command()
@click.argument("model")
@click.argument("data")
@click.option("--output", "-o", type=click.Path(), default="features.npz", show_default=True,
              help="The .npz file to write (features [N, D] float32, labels [N], paths [N], class_names).")
@click.option("--split", type=click.Choice(["all", "train", "test"]), default="all", show_default=True,
              help="Which of the data's splits (MNIST has train and test; an image folder is all train).")
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True,
              help="DataLoader processes decoding image folders.")
@threads_.option()
def features(model, data, output, split, batch_size, device, workers, threads):
    """The penultimate-layer embedding of every image of DATA under MODEL (feature extraction).

    MODEL is a run directory or its model.safetensors. DATA is an image folder (one subfolder per
    class), mnist-small, mnist or an IDX directory; its own classes label the images, so a network can
    embed classes it was never trained on. Each embedding is what the model's head layer receives
    (LeNet: the 84-d F6 output, AlexNet/VGG: the 4096-d fc7 output, GoogLeNet/ResNet: the globally pooled
    features), through the same preprocessing as training and `zoo classify`.

    \b
    zoo features runs/resnet18-20261121-120000 photos/ --output photos.npz
    python -c "import numpy as np; f = np.load('photos.npz'); print(f['features'].shape, f['paths'][:3])"
    """
    threads_.configure(threads)  # before torch loads OpenMP
    import torch

    from zoo import rundir
    from zoo.cli import UserError
    from zoo.data.datasets import DataError, open_source
    from zoo.text import plural

    try:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device here; use --device cpu")
        net, card = rundir.load_model(model, device=device)
        source = open_source(data)
        names = list(source.splits) if split == "all" else [split]
        if split not in ("all", *source.splits):
            raise DataError(f"{data} has no {split} split (it has {', '.join(source.splits)})")
        source.splits = {s: source.splits[s] for s in names}
        sets, skipped = source.load(card, workers=workers)
    except (rundir.RunError, DataError) as e:
        raise UserError(str(e)) from None

    result = extract(net, card, sets, source, skipped, batch_size=batch_size, device=device)
    if skipped:
        what = "is not a readable image" if len(skipped) == 1 else "are not readable images"
        click.echo(f"warning: skipped {plural(len(skipped), 'file')} that {what} (first: {skipped[0]})", err=True)
    save_features(output, result)
    n, d = result["features"].shape
    click.echo(f"wrote {output}: {plural(n, 'image')} x {plural(d, 'feature')} ({card.architecture}, input of "
               f"{result['layer']}), {plural(len(result['class_names']), 'class', 'classes')}")


def extract(net, card, sets, source, skipped, *, batch_size: int = 128, device: str = "cpu") -> dict:
    """Run every split of `sets` through `net`, capturing the input of the card's head layer.

    Returns {"features", "labels", "paths", "class_names", "layer"}; undecodable files are left out.
    """
    import numpy as np
    import torch
    from tqdm import tqdm

    from zoo.data.datasets import standardize, to_unit
    from zoo.models import get_spec

    layer = get_spec(card.architecture).head
    captured = []
    hook = net.get_submodule(layer).register_forward_hook(
        lambda module, inputs, output: captured.append(inputs[0].detach().flatten(1).float().cpu()))
    labels, paths = [], []
    try:
        with torch.no_grad():
            for name, images in sets.items():
                raw = source.splits[name]
                bar = tqdm(images.batches(batch_size), total=images.num_batches(batch_size),
                           desc=f"features ({name})", unit="batch", leave=False,
                           disable=None)  # None: shown only on a terminal, like training's
                for x, y in bar:
                    net(standardize(to_unit(x.to(device)), card))
                    labels.append(y.cpu())
                if raw.files is None:
                    paths += [f"mnist:{name}:{i}" for i in range(len(raw))]
                else:
                    failed = _failed_files(raw.files, skipped + images.failed)
                    paths += [f for f in raw.files if f not in failed]
    finally:
        hook.remove()
    feats = torch.cat(captured).numpy() if captured else np.zeros((0, 0), np.float32)
    return {"features": feats.astype(np.float32), "labels": torch.cat(labels).numpy().astype(np.int64),
            "paths": np.asarray(paths, dtype=str), "class_names": np.asarray(source.class_names, dtype=str),
            "layer": layer}


def _failed_files(files: list[str], messages: list[str]) -> set[str]:
    """The files named by "path: why" messages (a path may itself hold ': ')."""
    known, failed = set(files), set()
    for m in messages:
        cut = m.find(": ")
        while cut != -1:
            if m[:cut] in known:
                failed.add(m[:cut])
                break
            cut = m.find(": ", cut + 1)
    return failed


def save_features(path, result: dict) -> None:
    import numpy as np

    from zoo import atomic

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, **{k: result[k] for k in ("features", "labels", "paths", "class_names")})

    atomic.write_with(path, write)

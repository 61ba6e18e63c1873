import pathlib

import click

from zoo.errors import UserError


@click.command()
@click.argument("image", type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    help="Folder for kernels.png and one PNG per kernel (default: viz/kernels-<image name>/).",
)
@click.option(
    "--max-size",
    type=click.IntRange(8),
    default=512,
    show_default=True,
    help="Scale the image down first so its longer side is at most this many pixels.",
)
def kernels(image, output, max_size):
    """Apply the lecture's 3x3 image kernels (identity, sharpen, blur, Sobel, outline, emboss) to IMAGE.

    The image is turned to grayscale and each kernel applied with torch.nn.functional.conv2d (zero
    padding of 1, results clipped to 0..255); each kernel's matrix is printed, and the results are
    written side by side to OUTPUT/kernels.png.
    """
    from zoo import atomic
    from zoo.data.preprocess import ImageError
    from zoo.viz import figures
    from zoo.viz.kernels import KERNELS, apply_all, format_kernel, load_gray

    if not image.is_file():
        raise UserError(f"{image}: no such image file")
    try:
        gray = load_gray(image, max_size)
    except ImageError as e:
        raise UserError(str(e)) from None
    try:
        output = atomic.directory(output or pathlib.Path("viz") / f"kernels-{image.stem}")
    except atomic.OutputError as e:
        raise UserError(str(e)) from None
    results = apply_all(gray)
    for name, out in results.items():
        click.echo(f"{name}\n{_indent(format_kernel(KERNELS[name]))}\n")
        atomic.write_bytes(output / f"{name.replace(' ', '-')}.png", figures.png_bytes((out + 0.5).astype("uint8")))
    atomic.write_bytes(output / "kernels.png", figures.kernels_figure(gray, results, KERNELS, format_kernel))
    h, w = gray.shape
    click.echo(f"{image.name} as {w}x{h} grayscale -> {output / 'kernels.png'} (and one PNG per kernel in {output}/)")


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())

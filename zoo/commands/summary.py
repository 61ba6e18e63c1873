import json

import click

from zoo.errors import UserError


@click.command()
@click.argument("name")
@click.option("--input-size", type=click.IntRange(1), help="Input height and width (default: the model's).")
@click.option("--num-classes", type=click.IntRange(1), help="Number of output classes (default: the model's).")
@click.option("--in-channels", type=click.IntRange(1), help="Input channels (default: the model's).")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format."
)
def summary(name, input_size, num_classes, in_channels, fmt):
    """Per-layer table of model NAME: output shapes, parameters, MACs, activation memory."""
    from zoo.models import UnknownModelError, resolve
    from zoo.models.summary import InputTooSmallError, format_table, summarize

    try:
        resolve(name)
    except UnknownModelError as e:
        raise UserError(str(e), exit_code=2) from None
    try:
        s = summarize(name, input_size, num_classes, in_channels)
    except InputTooSmallError as e:
        raise UserError(str(e), exit_code=2) from None
    if fmt == "json":
        d = s.to_dict()
        d["layers"] = [{k: r[k] for k in ("name", "type", "output_shape", "params", "macs")} for r in d["layers"]]
        click.echo(json.dumps(d, indent=2))
    else:
        click.echo(format_table(s))

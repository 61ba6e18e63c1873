import json

import click


@click.command()
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format."
)
def models(fmt):
    """List every model in the zoo with its parameters and MACs at its default input size."""
    from zoo.models import get_spec, list_models
    from zoo.models.summary import human, summarize

    rows = []
    for name in list_models():
        spec = get_spec(name)
        s = summarize(name)
        rows.append(
            {
                "name": name,
                "family": spec.family,
                "params": s.params,
                "macs": s.macs,
                "input_size": list(spec.input_size),
                "num_classes": spec.num_classes,
                "aliases": list(spec.aliases),
                "year": spec.year,
                "paper": spec.paper,
            }
        )
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    head = ("name", "family", "params", "MACs", "input", "year")
    body = [
        (
            r["name"] + (f" ({', '.join(r['aliases'])})" if r["aliases"] else ""),
            r["family"],
            f"{r['params']:,}",
            human(r["macs"]),
            "x".join(map(str, r["input_size"])),
            str(r["year"]),
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    for i, row in enumerate([head, *body]):
        click.echo(
            "  ".join(c.rjust(w) if j in (2, 3) else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths))).rstrip()
        )
        if i == 0:
            click.echo("  ".join("-" * w for w in widths))

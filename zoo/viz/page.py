"""The `zoo visualize` page: one HTML file, no scripts, every image embedded as a base64 PNG data URL,
so it opens from disk in any browser (or mail attachment) with nothing beside it."""

from __future__ import annotations

import base64
from html import escape

from .views import Fig, LayerView, Report

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px} header p{margin:2px 0;color:#c9d1e0}
main{max-width:1240px;margin:0 auto;padding:12px 20px 40px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:14px 18px;margin:14px 0}
h2{font-size:17px;margin:0 0 10px} h3{font-size:16px;margin:0}
.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
figure{margin:0;display:table} figcaption{display:table-caption;caption-side:bottom;font-size:12px;color:#5b6475;margin-top:4px}
img{max-width:100%;height:auto;display:block} img.px{image-rendering:pixelated}
table{border-collapse:collapse;font-size:12.5px} td,th{padding:3px 8px;border-bottom:1px solid #e3e6eb;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#5b6475;font-size:12.5px} .tag{display:inline-block;background:#e8eefb;color:#234;border-radius:4px;padding:1px 6px;margin-right:6px;font-size:12px}
.warn{background:#fff4d6;border-left:4px solid #e0a800;padding:8px 12px;margin:10px 0;border-radius:4px}
a{color:#2457c5;text-decoration:none}
"""  # noqa: E501 (the stylesheet the page embeds, byte for byte)


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(fig: Fig, pixelated: bool = False) -> str:
    """<figure> for a Figure(file, data, caption)."""
    cls = ' class="px"' if pixelated else ""
    return (
        f'<figure><img{cls} src="{data_url(fig.data)}" alt="{escape(fig.caption)}">'
        f'<figcaption>{escape(fig.caption)} <a href="{escape(fig.file)}">{escape(fig.file)}</a>'
        f"</figcaption></figure>"
    )


def _num(v: float) -> str:
    return f"{v:.4g}"


def _shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _layer_table(layers: list[LayerView]) -> str:
    head = (
        "<tr><th>layer</th><th>module</th><th>type</th><th>output shape</th><th class=n>params</th>"
        "<th class=n>mean</th><th class=n>std</th><th class=n>min</th><th class=n>max</th></tr>"
    )
    rows = []
    for i, L in enumerate(layers):
        a = L.activation
        rows.append(
            f'<tr><td><a href="#layer-{i}">{escape(L.label)}</a></td><td><code>{escape(L.name)}'
            f"</code></td><td>{escape(L.type)}</td><td>{_shape(L.shape)}</td>"
            f"<td class=n>{L.params:,}</td>"
            + "".join(f"<td class=n>{_num(a[k])}</td>" for k in ("mean", "std", "min", "max"))
            + "</tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _layer_section(i: int, L: LayerView) -> str:
    w = L.weights
    wline = (
        f"<p class=meta>weights: {w['numel']:,} values, mean {_num(w['mean'])}, std {_num(w['std'])}, "
        f"min {_num(w['min'])}, max {_num(w['max'])}</p>"
        if w
        else ""
    )
    a = L.activation
    note = f" — {escape(L.note)}" if L.note else ""
    figs = "".join(img(f, pixelated=f.pixelated) for f in L.figures)
    return (
        f'<section id="layer-{i}"><h3>{escape(L.label)} <span class=meta><code>{escape(L.name)}</code>'
        f"{note}</span></h3>"
        f"<p class=meta><span class=tag>{escape(L.type)}</span>output {_shape(L.shape)} · "
        f"{L.params:,} parameters · activations: mean {_num(a['mean'])}, std {_num(a['std'])}, "
        f"min {_num(a['min'])}, max {_num(a['max'])}</p>{wline}<div class=row>{figs}</div></section>"
    )


def render(r: Report) -> str:
    """The page for a report `r` (zoo/viz/views.py)."""
    preds = "".join(
        f"<tr><td class=n>{i + 1}</td><td>{escape(p['label'])}</td><td class=n>{p['probability']:.2%}</td></tr>"
        for i, p in enumerate(r.predictions)
    )
    warn = f"<div class=warn>{escape(r.warning)}</div>" if r.warning else ""
    facts = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in r.facts)
    training = ""
    if r.training_figures or r.last_epoch:
        last = ""
        if r.last_epoch:
            last = (
                "<p class=meta>last epoch: "
                + ", ".join(
                    f"{escape(k)} {_num(v) if isinstance(v, float) else escape(str(v))}"
                    for k, v in r.last_epoch.items()
                )
                + "</p>"
            )
        training = (
            f"<section><h2>Training</h2>{last}<div class=row>"
            + "".join(img(f) for f in r.training_figures)
            + "</div></section>"
        )
    layers = "".join(_layer_section(i, L) for i, L in enumerate(r.layers))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{escape(r.title)} — zoo visualize</title><style>{CSS}</style></head>
<body><header><h1>{escape(r.title)}</h1><p>{escape(r.subtitle)}</p></header><main>
{warn}
<section><h2>The input and the prediction</h2><div class=row>
{img(r.input_figure, pixelated=True)}
<div>{img(r.predictions_figure)}
<table><tr><th class=n>#</th><th>class</th><th class=n>probability</th></tr>{preds}</table></div>
<div><table>{facts}</table></div>
</div></section>
{training}
<section><h2>Layers</h2><p class=meta>Each layer's output for this image: activation maps (first
{r.max_channels} channels, each map scaled to its own range, dark = low), the statistics and histograms
of its activations and weights, and for convolutions the learned filters.</p>{_layer_table(r.layers)}</section>
{layers}
<p class=meta>Written by <code>zoo visualize</code> (cnnzoo {escape(r.version)}). Every figure is also a PNG
file beside this page.</p>
</main></body></html>
"""

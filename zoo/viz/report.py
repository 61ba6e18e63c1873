"""One `zoo visualize` run: a model and an image in, `DIR/index.html` and one PNG per figure out.

    model, card, run_dir, source = open_model("runs/lenet5-...")   # or a registered name
    report = build(model, card, "digit.png", run_dir=run_dir, source=source)
    write(report, "viz/lenet5")

`build` computes (torch) what the page shows, as the plain data of views.py; page.py renders it.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import re
from typing import TYPE_CHECKING

import numpy as np
import torch

from zoo import answer

from .. import atomic
from ..rundir import CONFUSION, CURVES, HISTORY_CSV, HISTORY_JSON
from . import activations, figures, page
from . import layers as L
from .views import MAX_CHANNELS, Fig, LayerView, Report

if TYPE_CHECKING:
    from ..card import ModelCard
    from ..data.preprocess import ImageSource


def open_model(arg: str) -> tuple[torch.nn.Module, ModelCard, pathlib.Path | None, str]:
    """(model, card, run_dir or None, source) for a run directory, a weights file, or a registered name.

    A registered name gives that architecture with random weights (seed 0) and its default card.
    """
    from ..card import ModelCard
    from ..models import create
    from ..rundir import load_model, resolve_model

    path = resolve_model(arg, weights=True, names=True)  # UnknownModelError (with suggestions): no name
    if isinstance(path, pathlib.Path):
        model, card = load_model(path)
        run_dir = path if path.is_dir() else path.parent
        return model, card, run_dir, f"trained weights from {path}"
    name = path
    torch.manual_seed(0)
    return create(name).eval(), ModelCard.for_model(name), None, "random weights (seed 0), not trained"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _stats_without_hist(s: dict | None) -> dict | None:
    return None if s is None else {k: v for k, v in s.items() if k not in ("counts", "edges")}


def _filters(conv: torch.nn.Conv2d, first_rgb: bool) -> tuple[bytes, str]:
    w = conv.weight.detach().float()
    n = w.shape[0]
    shown = f"first {min(n, MAX_CHANNELS)} of {n}" if n > MAX_CHANNELS else f"all {n}"
    w = w[:MAX_CHANNELS]
    k = "x".join(map(str, conv.kernel_size))
    if first_rgb:
        return (figures.rgb_filter_grid(w.numpy()), f"{k} filters ({shown}) in colour, each stretched to its own range")
    if max(conv.kernel_size) == 1:
        m = w[:, :MAX_CHANNELS, 0, 0].numpy()
        return (
            figures.matrix_image(m),
            f"1x1 filters as a matrix: {m.shape[0]} outputs (rows) x "
            f"{m.shape[1]} of {conv.in_channels} inputs (columns); red positive, blue negative",
        )
    if w.shape[1] == 1:
        return figures.map_grid(
            w[:, 0].numpy(), "RdBu_r", symmetric=True
        ), f"{k} filters ({shown}); red positive, blue negative"
    strongest = w.pow(2).sum((2, 3)).argmax(1)
    tiles = w[torch.arange(w.shape[0]), strongest]
    return (
        figures.map_grid(tiles.numpy(), "RdBu_r", symmetric=True),
        f"{k} filters ({shown}), each shown at its strongest of {conv.in_channels} input channels; "
        f"red positive, blue negative",
    )


def _layer_view(model, layer: L.Layer, act: torch.Tensor, index: int, first_conv, class_names: list[str]) -> LayerView:
    prefix = f"{index:02d}-{_slug(layer.label)}"
    a = act[0]
    if a.ndim == 3 and a.shape[1] * a.shape[2] == 1:  # after global pooling: a vector in disguise
        a = a.reshape(-1)
    view = LayerView(
        layer.label,
        layer.name,
        layer.note,
        L.type_name(model, layer),
        list(a.shape),
        L.param_count(model, layer),
        activations.stats(a),
        None,
    )
    crisp = True  # pixel grids: the browser must not blur them when it scales
    groups = L.channel_groups(model, layer) if a.ndim == 3 else None
    if groups and a.shape[0] > MAX_CHANNELS:  # an inception module: the first maps of every branch
        per = MAX_CHANNELS // len(groups)
        starts = np.cumsum([0] + [w for _, w in groups[:-1]])
        idx = [int(s) + i for s, (_, w) in zip(starts, groups) for i in range(min(per, w))]
        data = figures.map_grid(a[idx].numpy())
        caption = (
            f"{layer.label}: activation maps, the first {per} channels of each branch "
            f"({', '.join(f'{n}: {w}' for n, w in groups)} channels; {a.shape[1]}x{a.shape[2]})"
        )
    elif a.ndim == 3:
        c = a.shape[0]
        data = figures.map_grid(a[:MAX_CHANNELS].numpy())
        caption = f"{layer.label}: activation maps, {min(c, MAX_CHANNELS)} of {c} channels ({a.shape[1]}x{a.shape[2]})"
    elif a.numel() <= 32:  # a classifier's scores, or a small layer: one bar per unit
        names = class_names if a.numel() == len(class_names) else None
        data, crisp = figures.unit_bars(a.numpy(), names), False
        caption = f"{layer.label}: the {a.numel()} outputs" + (", one per class" if names else "")
    else:
        data = figures.vector_image(a.numpy())
        caption = f"{layer.label}: the {a.numel()} outputs, one cell each"
    view.figures.append(Fig(f"{prefix}-activations.png", data, caption, pixelated=crisp))

    conv = L.filter_module(model, layer)
    if conv is not None:
        data, caption = _filters(conv, first_rgb=conv is first_conv and conv.in_channels == 3)
        view.figures.append(Fig(f"{prefix}-filters.png", data, f"{layer.label}: {caption}", pixelated=True))
    # a log count axis for large outputs: after a ReLU, zeros outnumber every other value
    panels = [{"title": "activations", "log": a.numel() > 1000, **view.activation}]
    weights = L.weight_tensors(model, layer)
    if weights:
        view.weights = activations.stats(activations.flat(weights))
        panels.append({"title": "weights", "color": "#c0504d", **view.weights})
    view.figures.append(
        Fig(
            f"{prefix}-histograms.png",
            figures.histograms(panels),
            f"{layer.label}: histogram of " + " and ".join(p["title"] for p in panels),
        )
    )
    view.activation = _stats_without_hist(view.activation)
    view.weights = _stats_without_hist(view.weights)
    return view


def read_history(run_dir: pathlib.Path) -> list[dict]:
    """Per-epoch rows from history.json (a list of rows, {"epochs": rows} or columns) or history.csv."""
    path = run_dir / HISTORY_JSON
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = data.get("epochs", data.get("history", data))
        if isinstance(data, dict):  # columns: {"epoch": [...], "train_loss": [...]}
            cols = {k: v for k, v in data.items() if isinstance(v, list)}
            n = min((len(v) for v in cols.values()), default=0)
            data = [{k: v[i] for k, v in cols.items()} for i in range(n)]
        return [r for r in data if isinstance(r, dict)]
    path = run_dir / HISTORY_CSV
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as f:
            return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return []


def _number(v: str):
    try:
        return int(v)
    except (TypeError, ValueError):
        try:
            return float(v)
        except (TypeError, ValueError):
            return v


def _training(run_dir: pathlib.Path | None) -> tuple[list[Fig], dict]:
    """The run's training curves (curves.png, or drawn from its history) and the confusion matrix
    `zoo evaluate` drew (confusion.png), with the last epoch's numbers."""
    if run_dir is None:
        return [], {}
    figs = []
    history = read_history(run_dir)
    if (run_dir / CURVES).is_file():
        figs.append(Fig(CURVES, (run_dir / CURVES).read_bytes(), "training curves (from the run)"))
    else:
        data = figures.curves(history)
        if data:
            figs.append(Fig(CURVES, data, "training curves (from history)"))
    if (run_dir / CONFUSION).is_file():
        figs.append(
            Fig(
                CONFUSION,
                (run_dir / CONFUSION).read_bytes(),
                "confusion matrix (from `zoo evaluate`; rows: true class, columns: predicted)",
            )
        )
    last = {
        k: v
        for k, v in (history[-1] if history else {}).items()
        if isinstance(v, (int, float, str)) and not isinstance(v, bool)
    }
    return figs, last


def _facts(model, card, spec, source: str) -> list[tuple[str, object]]:
    facts = [
        ("architecture", f"{spec.name} ({spec.family})"),
        ("paper", f"{spec.paper}, {spec.year}"),
        ("weights", source),
        ("parameters", f"{sum(p.numel() for p in model.parameters()):,}"),
        ("input", "x".join(map(str, card.input_shape)) + f", resize {card.resize_mode}"),
        ("classes", card.num_classes),
    ]
    for k, v in card.provenance.items():
        if isinstance(v, (str, int, float)) and not isinstance(v, bool):
            facts.append((k, v))
        elif isinstance(v, dict):
            facts += [(f"{k}.{kk}", vv) for kk, vv in v.items() if isinstance(vv, (str, int, float))]
    return facts


def build(
    model: torch.nn.Module,
    card: ModelCard,
    image: ImageSource,
    *,
    layer_names: list[str] | None = None,
    run_dir: str | os.PathLike | None = None,
    source: str = "",
    top: int = answer.DEFAULT_TOP_K,
) -> Report:
    """Everything the page shows, computed: one forward pass with hooks, then the figures."""
    from .. import __version__
    from ..data.preprocess import preprocess
    from ..models import get_spec

    spec = get_spec(card.architecture)
    chosen = L.select_layers(model, spec, layer_names) if layer_names else spec.layers(model)
    x = torch.from_numpy(preprocess(image, card))[None]
    model.eval()
    out, acts = activations.capture(model, x, [layer.output for layer in chosen])
    predictions = answer.top_k(out[0].float().numpy()[None], card.class_names, top)[0]

    first_conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    views = [
        _layer_view(model, layer, acts[layer.output], i, first_conv, card.class_names)
        for i, layer in enumerate(chosen)
        if layer.output in acts
    ]
    training_figs, last_epoch = _training(pathlib.Path(run_dir) if run_dir else None)
    name = getattr(image, "name", None) or pathlib.Path(str(image)).name
    h, w = card.input_size
    return Report(
        title=pathlib.Path(run_dir).name if run_dir else spec.name,
        subtitle=f"{spec.name} · {spec.paper} ({spec.year}) · image {name}",
        warning=""
        if run_dir
        else f"{spec.name} with random weights (seed 0): the layers show what an "
        "untrained network does; pass a run directory to see a trained one.",
        facts=_facts(model, card, spec, source),
        input_figure=Fig(
            "input.png",
            figures.input_image(x[0].numpy(), card),
            f"{name} as the model sees it: {card.in_channels}x{h}x{w} after preprocessing "
            f"({card.resize_mode}), de-normalized",
        ),
        predictions=predictions,
        predictions_figure=Fig(
            "predictions.png",
            figures.prediction_bars([p["label"] for p in predictions], [p["probability"] for p in predictions]),
            f"top-{len(predictions)} prediction",
        ),
        training_figures=training_figs,
        last_epoch=last_epoch,
        layers=views,
        version=__version__,
    )


def write(report: Report, output: str | os.PathLike) -> pathlib.Path:
    """Write every figure as a PNG, stats.json and index.html into folder `output` (a link to a folder
    followed; zoo.atomic.OutputError where a file is there); return the page's path."""
    output = atomic.directory(output)
    for fig in report.figures():
        atomic.write_bytes(output / fig.file, fig.data)
    atomic.write_text(output / "stats.json", json.dumps(report.to_dict(), indent=1) + "\n")
    atomic.write_text(output / "index.html", page.render(report))
    return output / "index.html"

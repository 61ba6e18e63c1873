"""Every PNG figure the project draws, as bytes.

The project's one plotting module: the visualize page, `zoo kernels`, and the run's pictures
(`zoo train`'s curves.png, `zoo evaluate`'s confusion.png, `zoo augment-preview`'s grid), which the
callers write with `zoo.atomic.write_bytes`.

Grids of activation maps and filters are drawn straight into pixels (NumPy + a matplotlib colormap +
Pillow): dozens of them per page, each in milliseconds. Plots with axes (histograms, training curves,
confusion matrix, top-5 bars, the kernels figure, the augmentation grid) are matplotlib `Figure`s
rendered by Agg (never pyplot: no global state, safe in threads). Every function returns PNG bytes.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..card import ModelCard

if TYPE_CHECKING:
    from matplotlib.figure import Figure

GRID_COLUMNS = 8
GAP = 2  # pixels between tiles
BACKGROUND = 255
MIN_TILE = 48  # small maps (5x5 filters, 7x7 activations) are enlarged to at least this many pixels
MAX_TILE = 80  # large maps (224x224 activations) are averaged down to at most this many pixels
DPI = 90


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 HxW or HxWx3 array -> PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def figure_png(fig: Figure, dpi: int = DPI, tight: bool = True) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, **(dict(bbox_inches="tight", pad_inches=0.08) if tight else {}))
    return buf.getvalue()


def _figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


def _colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def _fit(tile: np.ndarray, min_tile: int = MIN_TILE) -> np.ndarray:
    """Enlarge a small tile by an integer factor (nearest), or average a large one down (box filter)."""
    from PIL import Image

    h, w = tile.shape[:2]
    if max(h, w) < min_tile:
        f = math.ceil(min_tile / max(h, w))
        return np.repeat(np.repeat(tile, f, axis=0), f, axis=1)
    if max(h, w) > MAX_TILE:
        s = MAX_TILE / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        if tile.ndim == 2:
            return np.asarray(Image.fromarray(tile.astype(np.float32), "F").resize(size, Image.BOX))
        return np.stack([_fit(tile[..., c]) for c in range(tile.shape[2])], axis=-1)
    return tile


def mosaic(tiles: list[np.ndarray], columns: int = GRID_COLUMNS, background: int = BACKGROUND) -> np.ndarray:
    """Lay equal-sized uint8 tiles (HxW or HxWx3) out in rows of `columns`, GAP pixels apart."""
    n = len(tiles)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    h, w = tiles[0].shape[:2]
    shape = (rows * (h + GAP) - GAP, cols * (w + GAP) - GAP, *tiles[0].shape[2:])
    out = np.full(shape, background, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + GAP) : r * (h + GAP) + h, c * (w + GAP) : c * (w + GAP) + w] = t
    return out


def _scale(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((a - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(a)


def map_grid(maps: np.ndarray, cmap: str = "viridis", symmetric: bool = False) -> bytes:
    """[N, H, W] maps -> one PNG of colour tiles, each map scaled to its own range.

    `symmetric`: scale each map to [-max|v|, +max|v|] (for filters: 0 is the colormap's middle).
    A constant map (a dead ReLU channel) is drawn at the colormap's low end (its middle if symmetric).
    """
    colour = _colormap(cmap)
    min_tile = 2 * MIN_TILE if len(maps) <= 16 else MIN_TILE  # a few maps: show them larger
    tiles = []
    for m in np.asarray(maps, np.float32):
        m = _fit(m, min_tile)
        if symmetric:
            a = float(np.abs(m).max())
            u = _scale(m, -a, a) if a > 0 else np.full_like(m, 0.5)
        else:
            u = _scale(m, float(m.min()), float(m.max()))
        tiles.append((colour(u)[..., :3] * 255).astype(np.uint8))
    # grey gaps between diverging tiles, whose middle (zero) is white
    return png_bytes(mosaic(tiles, background=150 if symmetric else BACKGROUND))


def rgb_filter_grid(weights: np.ndarray) -> bytes:
    """[N, 3, k, k] first-layer filters -> RGB tiles, each filter stretched to its own min..max."""
    tiles = []
    for f in np.asarray(weights, np.float32):
        f = f.transpose(1, 2, 0)
        u = _scale(f, float(f.min()), float(f.max()))
        tiles.append(_fit((u * 255).astype(np.uint8)))
    return png_bytes(mosaic(tiles))


def vector_image(v: np.ndarray, cmap: str = "viridis", max_side: int = 64) -> bytes:
    """A 1-D activation (a linear layer's output) as a near-square heat map, one cell per unit."""
    v = np.asarray(v, np.float32).ravel()
    cols = min(max_side, math.ceil(math.sqrt(v.size)))
    rows = math.ceil(v.size / cols)
    grid = np.full(rows * cols, np.nan, np.float32)
    grid[: v.size] = v
    grid = grid.reshape(rows, cols)
    u = _scale(grid, float(np.nanmin(grid)), float(np.nanmax(grid)))
    rgb = (_colormap(cmap)(np.nan_to_num(u))[..., :3] * 255).astype(np.uint8)
    rgb[np.isnan(grid)] = BACKGROUND
    f = math.ceil(160 / max(rows, cols))  # cells of at least 2-3 pixels, the image at least 160 wide
    return png_bytes(np.repeat(np.repeat(rgb, f, axis=0), f, axis=1))


def unit_bars(values: np.ndarray, names: list[str] | None = None) -> bytes:
    """A short 1-D activation (a classifier's scores) as one bar per unit, named if names are given."""
    v = np.asarray(values, np.float32).ravel()
    fig = _figure(max(2.6, 0.28 * v.size + 0.8), 2.1)
    ax = fig.subplots()
    ax.bar(np.arange(v.size), v, color=np.where(v >= 0, "#3b75af", "#c0504d"))
    ax.axhline(0, color="black", lw=0.6)
    labels = [_short(n, 10) for n in names] if names else [str(i) for i in range(v.size)]
    ax.set_xticks(np.arange(v.size), labels, fontsize=7, rotation=90 if names and max(map(len, labels)) > 3 else 0)
    ax.tick_params(axis="y", labelsize=7)
    return figure_png(fig)


def matrix_image(m: np.ndarray, cmap: str = "RdBu_r") -> bytes:
    """A 2-D weight matrix (e.g. a 1x1 convolution, out x in) as a diverging heat map, 0 in the middle."""
    m = np.asarray(m, np.float32)
    a = float(np.abs(m).max())
    u = _scale(m, -a, a) if a > 0 else np.full_like(m, 0.5)
    rgb = (_colormap(cmap)(u)[..., :3] * 255).astype(np.uint8)
    f = max(1, math.ceil(192 / max(m.shape)))
    return png_bytes(np.repeat(np.repeat(rgb, f, axis=0), f, axis=1))


def input_image(x: np.ndarray, card: ModelCard, min_side: int = 224) -> bytes:
    """The model's input [C, H, W] turned back into pixels (x * std + mean, the card's normalization
    undone), enlarged if small."""
    from ..data.preprocess import normalization

    mean, std = normalization(card).arrays()
    x = np.asarray(x, np.float32) * std + mean
    img = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)
    img = img[..., 0] if img.shape[2] == 1 else img
    f = max(1, min_side // max(img.shape[:2]))
    return png_bytes(np.repeat(np.repeat(img, f, axis=0), f, axis=1))


def histograms(panels: list[dict]) -> bytes:
    """Side-by-side histograms; each panel: title, counts, edges, mean, std, min, max (printed), and
    optionally log (a log count axis: ReLU outputs pile up at zero) and color."""
    # A fixed layout: constrained layout and tight bounding boxes would triple the time of the dozens
    # of these a page holds.
    fig = _figure(3.3 * len(panels), 2.1, layout=None)
    fig.subplots_adjust(left=0.17 / len(panels), right=0.98, bottom=0.14, top=0.88, wspace=0.32)
    for ax, p in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        counts, edges = np.asarray(p["counts"]), np.asarray(p["edges"])
        log = p.get("log", False)
        ax.stairs(
            np.maximum(counts, 0.8) if log else counts,
            edges,
            fill=True,
            color=p.get("color", "#3b75af"),
            baseline=0.8 if log else 0,
        )
        if log:
            ax.set_yscale("log")
        ax.set_title(p["title"], fontsize=9)
        ax.set_ylabel("count (log scale)" if log else "count", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.text(
            0.98,
            0.95,
            f"mean {p['mean']:.3g}\nstd {p['std']:.3g}\nmin {p['min']:.3g}\nmax {p['max']:.3g}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=7,
            family="monospace",
            bbox=dict(fc="white", ec="none", alpha=0.8),
        )
    return figure_png(fig, tight=False)


def prediction_bars(names: list[str], probs: list[float]) -> bytes:
    """Horizontal bars of the top-k class probabilities, best on top."""
    fig = _figure(3.4, 0.32 * len(names) + 0.6)
    ax = fig.subplots()
    y = np.arange(len(names))[::-1]
    ax.barh(y, probs, color="#3b75af")
    ax.set_yticks(y, [_short(n) for n in names], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    for yi, p in zip(y, probs):
        ax.text(min(p + 0.02, 0.8), yi, f"{p:.1%}", va="center", fontsize=8)
    return figure_png(fig)


def _short(name: str, n: int = 28) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def curves(rows: list[dict], title: str = "") -> bytes | None:
    """Training curves from history rows (dicts with an epoch and numbers, None where a number is
    missing): losses, accuracies and learning rate against epoch; None when there is nothing to draw."""
    if not rows:
        return None
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
    keys = list(dict.fromkeys(k for r in rows for k, v in r.items() if k != "epoch" and _number(v)))
    groups = [
        ("loss", [k for k in keys if "loss" in k]),
        ("accuracy", [k for k in keys if "acc" in k or "top" in k]),
        ("learning rate (end of epoch)", [k for k in keys if k in ("lr", "learning_rate")]),
    ]
    groups = [(t, ks) for t, ks in groups if ks]
    if not groups:
        return None
    from matplotlib.ticker import MaxNLocator

    # A fixed layout: the trainer redraws this after every epoch, and tight layouts are slower.
    fig = _figure(3.6 * len(groups) + 0.6, 3.0 if title else 2.7, layout=None)
    fig.subplots_adjust(left=0.2 / len(groups), right=0.985, bottom=0.17, top=0.8 if title else 0.88, wspace=0.28)
    for ax, (name, ks) in zip(fig.subplots(1, len(groups), squeeze=False)[0], groups):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for k in ks:
            ax.plot(epochs, [r[k] if _number(r.get(k)) else np.nan for r in rows], marker="o", ms=3, label=k)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return figure_png(fig, dpi=100, tight=False)


def confusion(matrix: np.ndarray | list[list[int]], names: list[str], title: str = "") -> bytes:
    """Confusion matrix (rows: true class, columns: predicted), coloured by the fraction of each true
    class, with the counts where there is room."""
    m = np.asarray(matrix)
    k = len(names)
    side = min(3 + 0.4 * k, 16)
    fig = _figure(side, side * 0.85)
    ax = fig.subplots()
    rows = m.sum(1, keepdims=True)
    im = ax.imshow(m / np.maximum(rows, 1), cmap="Blues", vmin=0, vmax=1)
    ticks = list(range(k)) if k <= 30 else []
    ax.set_xticks(ticks, [_short(names[i], 12) for i in ticks], rotation=90 if k > 10 else 0, fontsize=7)
    ax.set_yticks(ticks, [_short(names[i], 12) for i in ticks], fontsize=7)
    if k <= 30:
        for i, j in zip(*np.nonzero(m)):
            ax.text(
                j,
                i,
                f"{m[i, j]:g}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if m[i, j] > 0.5 * max(rows[i, 0], 1) else "black",
            )
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    ax.set_title(title or "confusion matrix", fontsize=9)
    ax.tick_params(labelsize=7)
    bar = fig.colorbar(im, ax=ax, fraction=0.046)
    bar.set_label("fraction of the true class", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    return figure_png(fig, dpi=100)


def image_grid(rows: list[list[np.ndarray]], titles: list[str], title: str = "") -> bytes:
    """Rows of HxW or HxWx3 float images in [0, 1] (`zoo augment-preview`); the first of each row is
    titled with titles[i]."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig = _figure(1.3 * n_cols, 1.4 * n_rows + (0.3 if title else 0))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(row):
                ax.imshow(row[j], cmap="gray" if row[j].ndim == 2 else None, vmin=0, vmax=1)
        axes[i][0].set_title(titles[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return figure_png(fig, dpi=100, tight=False)


def kernels_figure(
    gray: np.ndarray,
    results: dict[str, np.ndarray],
    kernels: dict[str, list[list[float]]],
    text: Callable[[list[list[float]]], str],
) -> bytes:
    """The image and each kernel's result side by side, each with its 3x3 matrix under it."""
    panels = [("original (grayscale)", gray, None), *((n, results[n], kernels[n]) for n in results)]
    cols = 5
    rows = math.ceil(len(panels) / cols)
    h, w = gray.shape
    tile = 2.6
    fig = _figure(cols * tile, rows * (tile * h / w + 0.8))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, img, k) in zip(axes, panels):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        if k is not None:
            ax.set_xlabel(text(k), family="monospace", fontsize=8)
    for ax in axes[len(panels) :]:
        ax.axis("off")
    return figure_png(fig, dpi=100)

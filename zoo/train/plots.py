"""The run's pictures, drawn with matplotlib (Agg, no display) and written atomically.

    curves.png     loss (train, val), validation accuracy and learning rate against epoch
    confusion.png  the confusion matrix of an evaluation
    grid.png       augmented samples (`zoo augment-preview`)
"""

from __future__ import annotations

import os

from .. import atomic


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    atomic.write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    _pyplot().close(fig)


def plot_curves(history: list[dict], path: str | os.PathLike, title: str = "") -> None:
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(13, 3.6))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    val = [(r["epoch"], r["val_loss"], r["val_acc"]) for r in history if r.get("val_loss") is not None]
    if val:
        ax_loss.plot([v[0] for v in val], [v[1] for v in val], "o-", label="val")
        ax_acc.plot([v[0] for v in val], [100 * v[2] for v in val], "o-", color="C2")
    ax_loss.set(xlabel="epoch", title="loss")
    ax_loss.legend()
    ax_acc.set(xlabel="epoch", ylabel="%", title="validation accuracy")
    ax_lr.plot(epochs, [r["lr"] for r in history], "o-", color="C3")
    ax_lr.set(xlabel="epoch", title="learning rate (end of epoch)")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_acc, ax_lr):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.05, right=0.985, bottom=0.14, top=0.82, wspace=0.25)  # tight_layout: slower
    _save(fig, path)


def plot_confusion(confusion: list[list[int]], class_names: list[str], path: str | os.PathLike,
                   title: str = "") -> None:
    import numpy as np

    plt = _pyplot()
    m = np.asarray(confusion)
    k = len(class_names)
    size = min(4 + 0.45 * k, 20)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    rows = m.sum(1, keepdims=True)
    im = ax.imshow(m / np.maximum(rows, 1), cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        ticks = range(k)
        ax.set_xticks(ticks, class_names, rotation=90 if k > 10 else 0)
        ax.set_yticks(ticks, class_names)
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if m[i, j] > 0.5 * max(rows[i, 0], 1) else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    _save(fig, path)


def plot_grid(rows: list[list], titles: list[str], path: str | os.PathLike, title: str = "") -> None:
    """rows: lists of HxW or HxWx3 arrays in [0, 1]; the first of each row is titled with titles[i]."""
    plt = _pyplot()
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.3 * n_cols, 1.4 * n_rows), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(row):
                img = row[j]
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        axes[i][0].set_title(titles[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)

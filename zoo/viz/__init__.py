"""Pictures of what a network does: `zoo visualize` (one self-contained HTML page per model and image)
and `zoo kernels` (the classic 3x3 image kernels, applied with the convolution the models use).

    layers.py       the layers asked for (the spec names them as the papers do: C1, conv1_1, inception (3a))
    activations.py  forward hooks that capture each layer's output, and statistics of tensors
    figures.py      every PNG the project draws (the page's, and `zoo train`'s curves, `zoo evaluate`'s
                    confusion matrix): tile grids (PIL), histograms, curves, bars (matplotlib, Agg)
    views.py        what the page shows, as plain data (no torch): Report, LayerView, Fig; stats.json
    page.py         the HTML page of a Report, every image embedded as base64 PNG
    report.py       the whole `zoo visualize` run: model + image -> a Report -> DIR/index.html, DIR/*.png
    kernels.py      the lecture's image kernels and `zoo kernels`

matplotlib is used through `matplotlib.figure.Figure` only (never pyplot), so nothing here changes
global state or needs a display.
"""

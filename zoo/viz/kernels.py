"""The classic 3x3 image kernels of the lecture (as Victor Powell's "Image Kernels" page gives them),
applied with the very operation the networks use: `torch.nn.functional.conv2d`.

conv2d computes a cross-correlation: each output pixel is the sum of the 3x3 block of pixels under the
kernel, each multiplied by the kernel entry at the same place (no flipping), exactly as the page walks
through it. Results outside 0..255 are clipped for display, as the page does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

# name -> 3x3 kernel, in the order the figure shows them
KERNELS: dict[str, list[list[float]]] = {
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "blur": [[0.0625, 0.125, 0.0625], [0.125, 0.25, 0.125], [0.0625, 0.125, 0.0625]],
    "bottom sobel": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "top sobel": [[1, 2, 1], [0, 0, 0], [-1, -2, -1]],
    "left sobel": [[1, 0, -1], [2, 0, -2], [1, 0, -1]],
    "right sobel": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "outline": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],
    "emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
}


def convolve(image: ArrayLike, kernels: ArrayLike, padding: int = 0) -> np.ndarray:
    """Apply each of `kernels` (one KxK matrix, or a list of them) to a 2-D image with F.conv2d.

    Returns float32 [H', W'] for one kernel, [N, H', W'] for a list; stride 1, zero `padding`.
    """
    import torch
    import torch.nn.functional as F

    k = torch.as_tensor(np.asarray(kernels, dtype=np.float32))
    single = k.ndim == 2
    weight = k.reshape(-1, 1, *k.shape[-2:])
    x = torch.as_tensor(np.asarray(image, dtype=np.float32))[None, None]
    with torch.no_grad():
        out = F.conv2d(x, weight, padding=padding)[0].numpy()
    return out[0] if single else out


def format_kernel(kernel: Sequence[Sequence[float]]) -> str:
    """The 3x3 matrix as aligned text rows (".0625" style for fractions, as the lecture prints them)."""
    cells = [[_fmt(v) for v in row] for row in kernel]
    width = max(len(c) for row in cells for c in row)
    return "\n".join(" ".join(c.rjust(width) for c in row) for row in cells)


def _fmt(v: float) -> str:
    if float(v).is_integer():
        return str(int(v))
    return f"{v:g}".replace("0.", ".", 1) if abs(v) < 1 else f"{v:g}"


def load_gray(path: str | os.PathLike, max_size: int | None = 512) -> np.ndarray:
    """An image file as float32 grayscale 0..255, scaled down so its longer side is at most `max_size`."""
    from PIL import Image

    from zoo.data.preprocess import open_image, to_mode

    img = to_mode(open_image(path), "L")
    if max_size and max(img.size) > max_size:
        scale = max_size / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BOX)
    return np.asarray(img, dtype=np.float32)


def apply_all(gray: np.ndarray) -> dict[str, np.ndarray]:
    """Every kernel applied to `gray` (same size: zero padding of 1), clipped to 0..255 for display."""
    out = convolve(gray, list(KERNELS.values()), padding=1)
    return {name: np.clip(o, 0, 255) for name, o in zip(KERNELS, out)}

"""Small generated photos for the tests that must run without ../shared: camera-sized RGB JPEGs with
smooth content (so JPEG's draft decoding and the resize modes meet what a photo gives them) and a palette
image behind a .jpg name, the odd one a real photo folder holds."""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image


def photo(size: tuple[int, int], seed: int) -> Image.Image:
    """An RGB "photo" of `size` (width, height): colour gradients, a few discs and mild sensor noise."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin((xx + yy) / (7 + seed))], -1) * 200
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.3) * min(w, h)
        rgb[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    rgb += rng.normal(0, 4, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def write_photos(folder: pathlib.Path) -> list[pathlib.Path]:
    """Two JPEG photos (landscape 500x375 and portrait 333x500, as a camera folder holds) and a palette
    image saved as GIF under a .jpg name; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, size in enumerate(((500, 375), (333, 500))):
        paths.append(folder / f"photo{i}.jpg")
        photo(size, i).save(paths[-1], "JPEG", quality=90)
    paths.append(folder / "palette.jpg")
    photo((240, 180), 2).quantize(64).save(paths[-1], "GIF")
    assert Image.open(paths[-1]).mode == "P"
    return paths

"""Augmentation on batched tensors, on the training device, with kornia.

`--augment rotate=15,shift=0.1,hflip` turns into one kornia pipeline over float images in [0, 1]
(before the mean/std standardization): random crop, one random affine transform (rotation, shift,
shear and zoom together, so each image is resampled once), flips, then inversion. A name without a
value takes the default magnitude below. Randomness comes from torch's global generator, which the
trainer seeds from (seed, epoch), so an epoch's augmentations are the same after a resume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch.nn as nn

# name -> (default magnitude, what the magnitude means)
OPTIONS = {
    "invert": (0.5, "probability of inverting an image (the DIGITS lab's MNIST invert)"),
    "rotate": (15.0, "largest rotation, degrees either way"),
    "shift": (0.1, "largest width/height shift, a fraction of the size"),
    "shear": (10.0, "largest shear, degrees either way"),
    "zoom": (0.1, "largest zoom in or out, a fraction"),
    "hflip": (0.5, "probability of a horizontal flip"),
    "vflip": (0.5, "probability of a vertical flip"),
    "crop": (4.0, "pad by N pixels, then crop the input size back at a random place"),
}
PROBABILITIES = ("invert", "hflip", "vflip")


class AugmentError(ValueError):
    """A malformed --augment string; the message lists the known names."""


def parse(text: str | None) -> dict[str, float]:
    """ "rotate=15,hflip" -> {"rotate": 15.0, "hflip": 0.5}; empty or "none" -> {}."""
    spec: dict[str, float] = {}
    for item in (text or "").replace(" ", "").split(","):
        if not item or item == "none":
            continue
        name, _, value = item.partition("=")
        if name not in OPTIONS:
            raise AugmentError(
                f"unknown augmentation {name!r}; use any of {', '.join(OPTIONS)} "
                "(e.g. --augment rotate=15,shift=0.1,hflip)"
            )
        try:
            magnitude = float(value) if value else OPTIONS[name][0]
        except ValueError:
            raise AugmentError(f"--augment {item}: {value!r} is not a number") from None
        if magnitude < 0 or (name in PROBABILITIES and magnitude > 1) or (name == "zoom" and magnitude >= 1):
            raise AugmentError(f"--augment {item}: out of range ({OPTIONS[name][1]})")
        spec[name] = magnitude
    return spec


def describe(spec: dict[str, float]) -> str:
    """The canonical string of a parsed spec (what the model card records)."""
    return ",".join(f"{k}={v:g}" for k, v in spec.items()) or "none"


def build(spec: dict[str, float], input_size: tuple[int, int] | list[int]) -> nn.Sequential | None:
    """A kornia module mapping float [B, C, H, W] in [0, 1] to augmented images; None when spec is empty."""
    if not spec:
        return None
    import kornia.augmentation as K
    import torch.nn as nn

    steps = []
    if spec.get("crop"):
        steps.append(K.RandomCrop(tuple(input_size), padding=int(spec["crop"]), p=1.0))
    if any(spec.get(k) for k in ("rotate", "shift", "shear", "zoom")):
        r, t, s, z = (spec.get(k, 0.0) for k in ("rotate", "shift", "shear", "zoom"))
        steps.append(
            K.RandomAffine(
                degrees=r,
                translate=(t, t) if t else None,
                scale=(1 - z, 1 + z) if z else None,
                shear=(-s, s, -s, s) if s else None,
                p=1.0,
            )
        )
    if spec.get("hflip"):
        steps.append(K.RandomHorizontalFlip(p=spec["hflip"]))
    if spec.get("vflip"):
        steps.append(K.RandomVerticalFlip(p=spec["vflip"]))
    if spec.get("invert"):
        steps.append(K.RandomInvert(p=spec["invert"]))
    return nn.Sequential(*steps) if steps else None

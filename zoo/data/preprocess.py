"""The one preprocessing: an image (file, bytes or PIL image) -> the model's float32 CHW input.

Training-time evaluation, `zoo classify` and the server all call `preprocess`, with what the model card
says (channels, size, mean/std, resize mode), so the three can never disagree. NumPy and Pillow only:
the ONNX Runtime and server paths use it without importing torch.

Resize modes are DIGITS' four:
- squash: stretch to the target size, ignoring the aspect ratio;
- crop: scale so the image covers the target, then cut the centre;
- fill: scale so the image fits inside the target, then fill the margins with noise;
- half-crop: scale halfway between the two, then crop the long side and fill the short one.
The fill noise is drawn from a fixed seed, so the same image always gives the same input.

An image is turned upright by its EXIF orientation tag (phone photos store the sensor's pixels and a
tag saying how to turn them) as it decodes, before anything else looks at it.

Normalization has two implementations and one owner of its arithmetic: `normalize` here (NumPy, for
the torch-free paths) and `zoo.data.datasets.to_unit` + `standardize` (torch, batched on the training
device) both take their constants from `UNIT` and `normalization(card)` and apply them in the same
float32 order, so they give the same bits (tests/test_one_preprocessing.py holds them to it).
"""

from __future__ import annotations

import functools
import io
import mmap
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO, Union

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from ..card import ModelCard

ImageSource = Union[str, os.PathLike, bytes, BinaryIO, Image.Image]

TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
# The one list of image kinds: folders (training data, `zoo classify`) take files with these extensions
# (a GIF: its first frame); a file named on its own is read whatever its extension.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff", ".gif")
DEFAULT_MAX_PIXELS = 64_000_000  # larger images are refused as decompression bombs
# A progressive JPEG's decoding work is its scans times its blocks: each scan is one more pass over the
# whole image, and a scan can take a few bytes (a 326 KB file of 806 scans cost 19 s to decode). Real ones
# carry about 10 (libjpeg's script: 10 for colour, 6 for grey; mozjpeg's searched scripts stay near it);
# libjpeg-turbo's own fuzzers allow 500 on images of at most 1 megapixel. 64 scans of a 64-megapixel
# image is about 2.5 s of decoding here (AMD EPYC; 0.6 ns per pixel and scan).
MAX_JPEG_SCANS = 64


class ImageError(ValueError):
    """The input is not a readable image, or is too large; the message says which."""


def open_image(
    source: ImageSource,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft: tuple[str, tuple[int, int]] | None = None,
    load: bool = True,
) -> Image.Image:
    """Decode `source` fully, refusing non-images, truncated files and decompression bombs.

    `draft=(mode, (w, h))` lets the JPEG decoder scale down by 1/2, 1/4 or 1/8 while decoding, to no
    less than (w, h): a 12-megapixel photo for a 224x224 model decodes eight times faster.
    `load=False` reads only the header (format, size; the pixel limit is checked): the image decodes
    when it is passed back here, or to `prepare` / `preprocess`, with the same checks. The server uses
    it to decode small images on the spot and large ones on a thread.
    A decoded image comes back upright: its EXIF orientation applied (`draft` sizes are upright too).
    """
    # what the messages call it: a path as a string, a file object by its name
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "image")
    if isinstance(source, Image.Image):
        img = source
    else:
        if isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise ImageError("empty image data")
            source = io.BytesIO(source)
        try:
            with warnings.catch_warnings():  # our own limit below says it, in one line, not Pillow's stack
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(source)
            w, h = img.size
            if max_pixels and w * h > max_pixels:
                raise ImageError(f"{name}: image of {w}x{h} pixels is over the limit of {max_pixels:,} pixels")
            if img.format == "JPEG" and img.info.get("progressive") and jpeg_scans(img.fp) > MAX_JPEG_SCANS:
                raise ImageError(
                    f"{name}: progressive JPEG of more "
                    f"than {MAX_JPEG_SCANS} scans (real ones have about 10; each scan is one more pass "
                    f"over the {w}x{h} image)"
                )
        except ImageError:
            raise
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not a readable image (no known image format)") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise ImageError(f"{name}: not a readable image ({e})") from None
    if not load:
        return img
    try:
        if isinstance(img, ImageFile.ImageFile) and img.tile:  # opened, not decoded yet
            if draft and img.format == "JPEG":
                mode, (w, h) = draft
                img.draft(mode, (h, w) if _orientation(img) in TRANSPOSING_ORIENTATIONS else (w, h))
            img.load()  # decode now, so truncated files fail here and not later
        return _upright(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"{name}: not a readable image ({e})") from None


_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn and TEM: markers without a length
# In entropy-coded data FF 00 is a data byte and RSTn a restart; fill bytes (FF FF ...) may precede a
# marker: the match is its last FF and the marker. (Written without `\xff+`: 20x faster on a 12 MB file.)
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def jpeg_scans(stream: BinaryIO, limit: int = MAX_JPEG_SCANS) -> int:
    """The number of scans (SOS segments) in the JPEG in `stream`, counted to `limit` + 1 at most.

    Walks the marker segments by their lengths, so an SOS marker's bytes inside another segment (an
    EXIF thumbnail, a comment) are not counted, and each scan's entropy-coded data to the next marker.
    The file is mapped, not read, where it has one; `stream` is left where it was. A truncated or
    malformed stream ends the count there (the decoder then says what is wrong)."""
    where = stream.tell()
    try:
        fileno = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fileno = None
    try:
        if fileno is not None:
            try:
                with mmap.mmap(fileno, 0, access=mmap.ACCESS_READ) as data:
                    return _count_scans(data, limit)
            except (OSError, ValueError):  # not a mappable file: read it
                pass
        stream.seek(0)
        return _count_scans(stream.read(), limit)
    finally:
        stream.seek(where)


def _count_scans(data: bytes | mmap.mmap, limit: int) -> int:
    scans, pos, end = 0, 2, len(data)  # after SOI
    while scans <= limit and pos + 4 <= end and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
        elif marker == 0xD9:  # EOI
            break
        elif marker in _STANDALONE:
            pos += 2
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
            if marker == 0xDA:
                scans += 1
                found = _NEXT_MARKER.search(data, pos)
                if found is None:
                    break
                pos = found.start()
    return scans


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1: upright). A malformed EXIF block counts as none, as browsers do."""
    try:
        return int(img.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # Pillow's EXIF parser raises struct.error, TypeError, ... on broken blocks
        return 1


def _upright(img: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation tag says (1, or no tag: unchanged)."""
    if _orientation(img) in (2, 3, 4, 5, 6, 7, 8):
        img = ImageOps.exif_transpose(img)
    return img


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Convert to "L" or "RGB"; palette and alpha images are composited on black first."""
    if img.mode == mode:
        return img
    if img.mode in ("P", "PA") or "A" in img.getbands():
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    elif img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / float grayscale
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo or 1.0) * 255.0
        img = Image.fromarray(arr.astype(np.uint8), "L")
    return img.convert(mode)


# Decoding an image and converting it to the card's mode, as `to_mode` does, holds at its peak about this
# many bytes a pixel (Pillow keeps 1-byte modes in one byte, 16-bit ones in two, all others in four), and:
STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
WIDE_CONVERSION_BYTES = 18  # 16-bit / float: float64 arrays (two at once), the uint8 array, the L image
ALPHA_CONVERSION_BYTES = 12  # palette / alpha: an RGBA copy, the black background, the composite


def decode_bytes(img: Image.Image, mode: str) -> int:
    """About the most memory (bytes) decoding `img` (opened, header read) and converting it to `mode` ("L"
    or "RGB") holds at once: what Pillow stores of the decoded image, the conversions `to_mode` makes,
    and the converted copy (measured: an 8000x8000 16-bit PNG peaks at 18 bytes a pixel, 1.2 GB).
    A JPEG decoded with `draft` takes less; this counts it at full size."""
    stored = STORED_BYTES.get(img.mode, 4)
    if img.mode == mode:
        extra = 0
    elif img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        extra = WIDE_CONVERSION_BYTES
    elif img.mode in ("P", "PA") or "A" in img.getbands():
        extra = ALPHA_CONVERSION_BYTES
    else:
        extra = 0
    extra += 0 if img.mode == mode else STORED_BYTES.get(mode, 4)
    return img.width * img.height * (stored + extra)


def _noise(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)


def _fit(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop dimensions that are too long, noise-fill dimensions that are too short."""
    h, w = arr.shape[:2]
    top, left = max(0, (h - height) // 2), max(0, (w - width) // 2)
    arr = arr[top : top + height, left : left + width]
    h, w = arr.shape[:2]
    if (h, w) == (height, width):
        return arr
    out = _noise((height, width, *arr.shape[2:]))
    top, left = (height - h) // 2, (width - w) // 2
    out[top : top + h, left : left + w] = arr
    return out


def resize(img: Image.Image, size: tuple[int, int] | list[int], mode: str = "squash") -> Image.Image:
    """Resize to (H, W) by one of DIGITS' modes: squash, crop, fill, half-crop."""
    height, width = int(size[0]), int(size[1])
    w, h = img.size
    if (w, h) == (width, height):
        return img
    if mode == "squash":
        return img.resize((width, height), Image.BILINEAR)
    rw, rh = width / w, height / h
    scale = {"crop": max(rw, rh), "fill": min(rw, rh), "half-crop": (rw + rh) / 2}.get(mode)
    if scale is None:
        raise ValueError(f"unknown resize mode {mode!r}; use squash, crop, fill or half-crop")
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    arr = np.asarray(img.resize(new, Image.BILINEAR))
    return Image.fromarray(_fit(arr, height, width), img.mode)


UNIT = np.float32(1 / 255)  # uint8 pixel -> [0, 1], the first step of every normalization


@dataclass(frozen=True)
class Normalization:
    """A model input from uint8 pixels x, per channel c, in float32 and in this order:
    (x * UNIT - mean[c]) / std[c]. Hashable, so the torch side can keep its device copies by it."""

    mean: tuple[float, ...]  # float32 values, one per input channel
    std: tuple[float, ...]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """mean and std as read-only float32 [C, 1, 1], to broadcast over a CHW image or an NCHW batch."""
        return _arrays(self)


@functools.lru_cache(maxsize=64)
def _arrays(n: Normalization) -> tuple[np.ndarray, np.ndarray]:
    out = tuple(np.asarray(values, np.float32).reshape(-1, 1, 1) for values in (n.mean, n.std))
    for a in out:
        a.setflags(write=False)  # shared by every call: made once per card (the server's hot path)
    return out


def normalization(card: ModelCard) -> Normalization:
    """The card's per-channel constants, rounded to float32 once: the one source of both `normalize`
    and torch's `standardize`."""
    return _normalization(tuple(card.mean), tuple(card.std))


@functools.lru_cache(maxsize=64)
def _normalization(mean: tuple[float, ...], std: tuple[float, ...]) -> Normalization:
    return Normalization(tuple(np.asarray(mean, np.float32).tolist()), tuple(np.asarray(std, np.float32).tolist()))


def normalize(arr: np.ndarray, card: ModelCard) -> np.ndarray:
    """uint8 HxW or HxWxC -> float32 CxHxW, normalized as `normalization(card)` says.

    Channels first while still uint8, then the arithmetic in place on one contiguous array: the same
    float32 operations in the same order as training's to_unit + standardize (the same bits), without
    the temporaries (three times faster on a 224x224 photo)."""
    mean, std = normalization(card).arrays()
    x = arr[:, :, None] if arr.ndim == 2 else arr
    out = np.ascontiguousarray(x.transpose(2, 0, 1)).astype(np.float32)
    out *= UNIT
    out -= mean
    out /= std
    return out


def prepare(source: ImageSource, card: ModelCard, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode, convert and resize as the card says: uint8 HxW (grayscale) or HxWx3 (RGB), not normalized.

    The first half of `preprocess`; training keeps images in this compact form (and normalizes them in
    batches on its device, with the same arithmetic as `normalize`).
    """
    h, w = card.input_size
    img = open_image(source, max_pixels=max_pixels, draft=(card.color_mode, (w, h)))
    return np.asarray(resize(to_mode(img, card.color_mode), (h, w), card.resize_mode))


def preprocess(source: ImageSource, card: ModelCard, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The model's input for one image: float32 array of shape card.input_shape ([C, H, W])."""
    return normalize(prepare(source, card, max_pixels=max_pixels), card)


def preprocess_batch(sources: Iterable[ImageSource], card: ModelCard, **kw: int | None) -> np.ndarray:
    """Stack `preprocess` over several images: float32 [N, C, H, W]."""
    return np.stack([preprocess(s, card, **kw) for s in sources])

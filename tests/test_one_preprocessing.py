"""One preprocessing: every path that turns an image into a model input gives the same tensor.

WAYS maps a name to `fn(image_path, card) -> float32 [C, H, W]`, each going through that path's own
real code (classify: its worker processes). Training-time evaluation and the server add their entry
here; the test holds every way to the reference, `zoo.data.preprocess.preprocess`, bit for bit.

The rule for normalization: two implementations, one owner of the arithmetic. `preprocess.normalize`
(NumPy: torch is never imported on the ONNX Runtime path) and `datasets.to_unit` + `standardize` (torch:
training normalizes its batches on the GPU) both take their constants from `preprocess.UNIT` and
`preprocess.normalization(card)` and apply them as (x * UNIT - mean) / std in float32, in that order.
Neither keeps constants of its own; a change to the arithmetic is made in `preprocess` and must keep
the bits, which the tests here check.
"""

import numpy as np
import pytest
from photos import write_photos
from PIL import Image

from infer.decoding import decoded_batches
from zoo.card import ModelCard
from zoo.data.preprocess import preprocess


def via_classify(path, card):
    ((_, (x, ok, errors)),) = list(decoded_batches([path], card, batch_size=1, workers=1))
    assert ok == [0] and not errors, errors
    return x[0]


def via_training_evaluation(path, card):
    """What training-time evaluation feeds the model: the dataset's file decoding (uint8, kept compact),
    then to_unit + standardize in batches on the training device."""
    from zoo.data.datasets import _Files, standardize, to_unit

    x, _, error = _Files([str(path)], np.zeros(1, np.int64), card)[0]
    assert error is None, error
    return standardize(to_unit(x[None]), card)[0].numpy()


def via_server(path, card):
    """The server's decoding of a request body: small images on the event loop, large ones on its pool."""
    import asyncio
    import concurrent.futures

    from serve.service import decode

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return asyncio.run(decode(path.read_bytes(), card, 64_000_000, pool))


WAYS = {"classify": via_classify, "training_evaluation": via_training_evaluation, "server": via_server}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Generated photos (two camera-sized JPEGs, a palette image behind a .jpg name: tests/photos.py), a
    grayscale PNG and an RGBA PNG of odd sizes."""
    d = tmp_path_factory.mktemp("images")
    *photos, palette = write_photos(d / "photos")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (31, 45), dtype=np.uint8), "L").save(d / "gray.png")
    Image.fromarray(rng.integers(0, 256, (50, 20, 4), dtype=np.uint8), "RGBA").save(d / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), "L").save(d / "digit.png")
    turned = []
    for orientation in (3, 6, 8):  # a phone photo: the sensor's pixels, and a tag saying how to turn them
        turned.append(d / f"photo-exif{orientation}.jpg")
        with_orientation(Image.open(photos[0]), orientation).save(turned[-1], exif=exif(orientation), quality=90)
    return [*photos, palette, d / "gray.png", d / "rgba.png", d / "digit.png", *turned]


# What a camera stores for an upright scene and each orientation tag: the pixels turned by the inverse
# of what the tag says to do (3: rotate 180, 6: rotate 90 clockwise, 8: rotate 90 counter-clockwise).
STORED = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def with_orientation(upright: Image.Image, orientation: int) -> Image.Image:
    return upright.transpose(STORED[orientation])


def exif(orientation: int) -> Image.Exif:
    tags = Image.Exif()
    tags[0x0112] = orientation
    return tags


CARDS = [
    ModelCard("resnet18", 2, 3, [64, 80], ["ants", "bees"], [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], mode)
    for mode in ("squash", "crop", "fill", "half-crop")
]
CARDS.append(ModelCard("lenet5", 10, 1, [28, 28], [str(i) for i in range(10)], [0.1307], [0.3081]))


@pytest.mark.parametrize("way", sorted(WAYS))
@pytest.mark.parametrize("card", CARDS, ids=lambda c: f"{c.in_channels}ch-{c.resize_mode}")
def test_every_way_gives_the_reference_tensor(way, card, images):
    for path in images:
        reference = preprocess(path, card)
        got = WAYS[way](path, card)
        assert got.dtype == np.float32 and got.shape == tuple(card.input_shape)
        assert np.array_equal(got, reference), f"{way} differs from preprocess on {path.name}"


@pytest.mark.parametrize("card", CARDS[::4], ids=lambda c: f"{c.in_channels}ch")
def test_numpy_and_torch_normalization_take_one_owners_constants(card):
    import torch

    from zoo.data.datasets import standardize, to_unit
    from zoo.data.preprocess import UNIT, normalization, normalize

    x = np.random.default_rng(1).integers(0, 256, (4, *card.input_size, card.in_channels), dtype=np.uint8)
    mean, std = normalization(card).arrays()
    owner = (x.transpose(0, 3, 1, 2).astype(np.float32) * UNIT - mean) / std
    assert owner.dtype == np.float32
    assert np.array_equal(np.stack([normalize(im, card) for im in x]), owner)
    assert np.array_equal(standardize(to_unit(torch.from_numpy(x).permute(0, 3, 1, 2)), card).numpy(), owner)


def test_an_image_opened_header_only_is_checked_when_it_decodes(images):
    from zoo.data.preprocess import ImageError, open_image

    data = images[0].read_bytes()  # a JPEG photo
    lazy = open_image(data[: len(data) // 2], load=False)  # the header is whole: opening works
    with pytest.raises(ImageError, match="not a readable image"):
        preprocess(lazy, CARDS[0])  # the decode finds the truncation, and says so as an ImageError
    with pytest.raises(ImageError, match="over the limit"):
        open_image(data, max_pixels=100, load=False)  # the pixel limit is checked on the header
    assert np.array_equal(preprocess(open_image(data, load=False), CARDS[0]), preprocess(data, CARDS[0]))


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_the_exif_orientation_is_applied_on_every_way(orientation, tmp_path):
    """A phone photo of a 7 stored sideways with its EXIF tag is the same input as the upright 7."""
    from zoo.data.mnist import load_small

    images, labels = load_small()["train"]
    seven = Image.fromarray(images[int(np.argmax(labels == 7))])
    seven.save(tmp_path / "upright.png")
    with_orientation(seven, orientation).save(tmp_path / "turned.png", exif=exif(orientation))
    card = CARDS[-1]  # LeNet's
    upright = preprocess(tmp_path / "upright.png", card)
    assert not np.array_equal(np.asarray(with_orientation(seven, orientation)), np.asarray(seven))
    for way in sorted(WAYS):
        assert np.array_equal(WAYS[way](tmp_path / "turned.png", card), upright), way

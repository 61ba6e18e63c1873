import io

import numpy as np
import pytest
from PIL import Image

from zoo.card import ModelCard
from zoo.data.preprocess import ImageError, open_image, preprocess, resize


def test_card_roundtrip(tmp_path):
    card = ModelCard.for_model("lenet", class_names=list("abc"), data="x")
    assert card.num_classes == 3 and card.in_channels == 1 and card.input_size == [28, 28]
    assert card.mean == [0.1307] and card.color_mode == "L"
    card.save(tmp_path / "card.json")
    assert ModelCard.load(tmp_path / "card.json") == card
    rgb = ModelCard.for_model("resnet18", in_channels=1)
    assert len(rgb.mean) == 1 and rgb.num_classes == 1000


def test_card_rejects_inconsistent():
    with pytest.raises(ValueError):
        ModelCard("lenet5", 2, 1, [28, 28], ["a"], [0.1], [0.3])


@pytest.mark.parametrize("mode", ["squash", "crop", "fill", "half-crop"])
def test_resize_modes_give_target_size(mode):
    img = Image.fromarray(np.arange(60 * 100, dtype=np.uint32).reshape(60, 100).astype(np.uint8))
    out = resize(img, (32, 48), mode)
    assert out.size == (48, 32)
    assert np.array_equal(np.asarray(out), np.asarray(resize(img, (32, 48), mode)))  # deterministic


def test_crop_keeps_centre_and_fill_keeps_all():
    arr = np.zeros((50, 100), np.uint8)
    arr[:, 25:75] = 255  # white centre square
    img = Image.fromarray(arr)
    assert np.asarray(resize(img, (50, 50), "crop")).min() == 255
    filled = np.asarray(resize(img, (100, 100), "fill"))
    assert (filled[25:75, 25:75] == np.asarray(img.resize((100, 50)))[:, 25:75]).all()


def test_preprocess_normalizes_from_card():
    card = ModelCard.for_model("lenet")
    img = Image.new("L", (28, 28), 255)
    x = preprocess(img, card)
    assert x.shape == (1, 28, 28) and x.dtype == np.float32
    # float32 (1 - mean) / std: the constants and 2 operations rounded, <= 4 u ~ 2.4e-7 (measured 6e-8) of
    # the float64 value; 1e-6 is above it, and (0.5, 0.5) for the card's mean and std is 65% off
    assert np.allclose(x, (1 - 0.1307) / 0.3081, rtol=1e-6, atol=0)
    rgb = ModelCard.for_model("resnet18")
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (255, 0, 0)).save(buf, "JPEG")
    y = preprocess(buf.getvalue(), rgb)
    assert y.shape == (3, 224, 224)
    assert y[0].mean() > 2 and y[1].mean() < 0


def test_bad_images_raise_image_error(tmp_path):
    with pytest.raises(ImageError):
        open_image(b"")
    with pytest.raises(ImageError):
        open_image(b"not an image at all")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, "JPEG")
    with pytest.raises(ImageError):
        open_image(buf.getvalue()[:200])
    with pytest.raises(ImageError, match="over the limit"):
        open_image(buf.getvalue(), max_pixels=100)


def test_palette_photo_from_shared_set(shared):
    card = ModelCard.for_model("resnet18")
    photos = sorted((shared / "datasets" / "hymenoptera" / "train").glob("*/*"))
    palette = [p for p in photos if Image.open(p).mode == "P"]
    assert palette, "the set holds one palette image"
    assert preprocess(palette[0], card).shape == (3, 224, 224)


def test_atomic_writes_get_a_normal_file_mode(tmp_path):
    import os

    from zoo import atomic

    atomic.write_text(tmp_path / "a.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temp file left behind


def test_image_error_does_not_leak_object_reprs():
    with pytest.raises(ImageError) as e:
        open_image(io.BytesIO(b"plain text, not an image"))
    assert "object at 0x" not in str(e.value) and "not a readable image" in str(e.value)


def test_a_card_with_huge_labels_is_refused_in_one_line(tmp_path):
    """Every answer carries the labels: a card whose labels hold 10 MB would make every /predict answer
    10 MB. A label is at most MAX_LABEL characters; there are exactly num_classes of them."""
    from zoo.card import MAX_LABEL, CardError

    card = ModelCard.for_model("lenet")
    card.class_names = ["x" * 10_000_000] + card.class_names[1:]
    (tmp_path / "card.json").write_text(card.to_json())  # as a hostile file holds it
    with pytest.raises(CardError, match=f"class name 0 is 10,000,000 characters long; at most {MAX_LABEL}"):
        ModelCard.load(tmp_path / "card.json")
    assert ModelCard.for_model("lenet", class_names=["y" * MAX_LABEL] * 10).num_classes == 10


def test_an_image_past_pillows_own_bomb_size_is_refused_without_a_warning(tmp_path):
    """Pillow warns (DecompressionBombWarning, a stack in the server's log) at 89.5 MP, under its own
    error at twice that; our limit (DEFAULT_MAX_PIXELS) refuses such an image first, in one line, and
    Pillow's warning is not printed."""
    import warnings

    from PIL import Image

    from zoo.data.preprocess import ImageError, open_image

    big = tmp_path / "big.png"
    Image.new("1", (9500, 9500)).save(big)  # 90.25 MP of one bit: a 12 KB file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError, match="9500x9500 pixels is over the limit"):
            open_image(big)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]

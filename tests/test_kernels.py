import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from zoo.cli import main
from zoo.viz.kernels import KERNELS, apply_all, convolve, format_kernel

# A 4x6 grayscale patch on which the 3x3 "bottom Sobel" gives the lecture's worked example,
# 19 17 26 26 / 24 56 48 57, without padding. (The lecture's own patch is not reproduced here: this one
# was constructed to give the same numbers.)
PATCH = [
    [110, 114, 121, 127, 131, 136],
    [113, 117, 120, 128, 134, 137],
    [117, 119, 123, 135, 139, 138],
    [97, 127, 140, 134, 150, 156],
]


def test_bottom_sobel_worked_example():
    assert KERNELS["bottom sobel"] == [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]
    out = convolve(PATCH, KERNELS["bottom sobel"])
    assert out.shape == (2, 4)
    # the first number by hand: bottom row minus top row, weighted 1 2 1:
    # (117 + 2 * 119 + 123) - (110 + 2 * 114 + 121) = 478 - 459 = 19
    np.testing.assert_array_equal(out, [[19, 17, 26, 26], [24, 56, 48, 57]])
    # the code's first number is that sum: its window is the patch's top-left 3x3 (no padding)
    window = np.asarray(PATCH, np.float32)[:3, :3]
    assert convolve(window, KERNELS["bottom sobel"]).item() == out[0, 0] == 19


def test_kernels_behave_as_their_names_say():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (12, 15)).astype(np.float32)
    out = convolve(img, list(KERNELS.values()))  # all nine in one conv2d, no padding
    by = dict(zip(KERNELS, out))
    np.testing.assert_array_equal(by["identity"], img[1:-1, 1:-1])
    np.testing.assert_array_equal(by["top sobel"], -by["bottom sobel"])
    np.testing.assert_array_equal(by["left sobel"], -by["right sobel"])
    flat = np.full((5, 5), 80, np.float32)  # a flat image: blur and sharpen keep it, edges vanish
    for name, expect in [
        ("blur", 80),
        ("sharpen", 80),
        ("identity", 80),
        ("outline", 0),
        ("bottom sobel", 0),
        ("left sobel", 0),
        ("emboss", 80),
    ]:
        # integer pixels times integer or 1/16-multiple weights: every float32 product and sum is exact
        np.testing.assert_array_equal(convolve(flat, KERNELS[name]), expect, err_msg=name)
    ramp = np.tile(np.arange(6, dtype=np.float32)[:, None] * 10, (1, 5))  # brighter downwards
    assert (convolve(ramp, KERNELS["bottom sobel"]) == 80).all()  # 4 * (2 rows * 10)
    same = apply_all(img)  # zero padding of 1 keeps the size, clipped to 0..255
    assert all(v.shape == img.shape and v.min() >= 0 and v.max() <= 255 for v in same.values())


def test_format_kernel():
    assert format_kernel(KERNELS["bottom sobel"]).splitlines() == ["-1 -2 -1", " 0  0  0", " 1  2  1"]
    assert format_kernel(KERNELS["blur"]).splitlines()[0].split() == [".0625", ".125", ".0625"]


def test_kernels_command(tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (90, 140, 3), dtype=np.uint8), "RGB").save(src)
    out = tmp_path / "k"
    r = CliRunner().invoke(main, ["kernels", str(src), "--output", str(out), "--max-size", "70"])
    assert r.exit_code == 0, r.output
    for name in KERNELS:  # each matrix printed under its name
        assert f"{name}\n" in r.output
    assert "  -1 -2 -1\n   0  0  0\n   1  2  1" in r.output
    assert Image.open(out / "kernels.png").size[0] > 600
    sobel = np.asarray(Image.open(out / "bottom-sobel.png"))
    assert sobel.shape == (45, 70)  # scaled down to 70 on the long side, same size after padding
    gray = np.asarray(Image.open(out / "identity.png"), np.float32)
    expect = np.clip(convolve(gray, KERNELS["bottom sobel"], padding=1), 0, 255)
    # the written result is the convolution of the image (exact, as above), rounded to uint8: within 1
    assert np.abs(sobel - expect).max() <= 1


@pytest.mark.parametrize("content", [b"", b"not an image at all"])
def test_kernels_bad_image_is_one_line(tmp_path, content):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    r = CliRunner().invoke(main, ["kernels", str(bad), "--output", str(tmp_path / "o")])
    assert r.exit_code != 0 and r.output.strip().count("\n") == 0 and "not a readable image" in r.output
    r = CliRunner().invoke(main, ["kernels", str(tmp_path / "missing.png")])
    assert r.exit_code != 0 and "no such image file" in r.output

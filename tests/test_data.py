"""Datasets: IDX files, the MNIST download (against a local HTTP server), MNIST-small, image folders."""

import functools
import gzip
import hashlib
import http.server
import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.card import ModelCard
from zoo.data import mnist
from zoo.data.datasets import DataError, open_source, standardize, to_unit
from zoo.data.preprocess import preprocess


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_mnist(directory, n=40, prefix="train", gz=True, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    for kind, arr, rank in (("images", images, 3), ("labels", labels, 1)):
        data = idx_bytes(arr)
        name = f"{prefix}-{kind}-idx{rank}-ubyte"
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (directory / name).write_bytes(data)
    return images, labels


def test_read_idx_raw_and_gz(tmp_path):
    images, labels = write_mnist(tmp_path / "gz", gz=True)
    write_mnist(tmp_path / "raw", gz=False)
    for d in ("gz", "raw"):
        splits = mnist.load_dir(tmp_path / d)
        assert set(splits) == {"train"}
        assert np.array_equal(splits["train"][0], images) and np.array_equal(splits["train"][1], labels)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train-images-idx3-ubyte").write_bytes(b"not an idx file at all")
    (tmp_path / "bad" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(mnist.MnistError, match="not an IDX file"):
        mnist.load_dir(tmp_path / "bad")


def test_real_mnist_idx(shared):
    splits = mnist.load_dir(shared / "datasets" / "mnist")
    x, y = splits["train"]
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8 and set(np.unique(y)) == set(range(10))
    # float64 mean of integers (~1e-16) vs the published 0.1307, 4 decimals of 0.13066: 1e-4 still catches a
    # part of the set (the first 50,000 digits: 0.13096)
    assert abs(x.mean() / 255 - 0.1307) < 1e-4


@pytest.fixture
def http_dir(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/www; yields (directory, base URL)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_from_mirror_with_checksums(http_dir, tmp_path):
    www, url = http_dir
    images, labels = write_mnist(www / "mnist")
    files = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (www / "mnist").iterdir()}
    dest = tmp_path / "cache" / "mnist"
    # the first mirror does not have the files (404): the second one is used
    mnist.ensure_downloaded(dest, mirrors=[f"{url}/missing/", f"{url}/mnist/"], files=files)
    assert sorted(p.name for p in dest.iterdir()) == sorted(files)
    assert np.array_equal(mnist.load_dir(dest)["train"][0], images)
    # files already present are not fetched again (no mirror needed)
    mnist.ensure_downloaded(dest, mirrors=[], files=files)


def test_download_checksum_mismatch_leaves_nothing(http_dir, tmp_path):
    www, url = http_dir
    write_mnist(www)
    files = {"train-images-idx3-ubyte.gz": "0" * 32}
    dest = tmp_path / "cache"
    with pytest.raises(mnist.MnistError, match="checksum mismatch") as e:
        mnist.ensure_downloaded(dest, mirrors=[url], files=files)
    assert str(dest) in str(e.value) and "\n" not in str(e.value)
    assert not dest.exists() or not any(dest.iterdir())  # no partial or temporary file left


def test_data_mnist_offline_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA", str(tmp_path))
    monkeypatch.setenv("ZOO_MNIST_MIRRORS", "http://127.0.0.1:9/")  # the discard port: refused
    with pytest.raises(DataError) as e:
        open_source("mnist")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "mnist") in msg and "train-images-idx3-ubyte.gz" in msg


def test_data_mnist_reads_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA", str(tmp_path))
    write_mnist(tmp_path / "mnist", n=30, prefix="train")
    write_mnist(tmp_path / "mnist", n=20, prefix="t10k", seed=1)
    monkeypatch.setenv("ZOO_MNIST_MIRRORS", "http://127.0.0.1:9/")  # files present: no download
    src = open_source("mnist", val_split=0.2)
    assert src.describe()["train"] == 24 and len(src.splits["test"]) == 20


def test_mnist_small_is_stratified_and_small():
    assert mnist.SMALL_FILE.stat().st_size <= 2_000_000
    splits = mnist.load_small()
    (xt, yt), (xs, ys) = splits["train"], splits["test"]
    assert xt.shape == (10000, 28, 28) and xs.shape == (2000, 28, 28)
    assert np.bincount(yt).tolist() == [1000] * 10 and np.bincount(ys).tolist() == [200] * 10
    # no test digit is also a training digit
    train_rows = {r.tobytes() for r in xt}
    assert sum(r.tobytes() in train_rows for r in xs) <= 5  # MNIST has a few exact duplicates


def test_val_split_comes_out_of_train_only():
    src = open_source("mnist-small", val_split=0.1, seed=3)
    assert src.describe()["train"] == 9000 and len(src.splits["val"]) == 1000
    assert np.bincount(src.splits["val"].labels).tolist() == [100] * 10
    assert len(src.splits["test"]) == 2000
    again = open_source("mnist-small", val_split=0.1, seed=3)
    assert np.array_equal(src.splits["val"].images, again.splits["val"].images)


def test_digit_png_through_preprocess_equals_training_input():
    """The one preprocessing: a digit saved as PNG and `preprocess`ed is the tensor training feeds."""
    card = ModelCard.for_model("lenet")
    sets, _ = open_source("mnist-small").load(card)
    x, _ = next(sets["test"].batches(8))
    batch = standardize(to_unit(x), card)
    for i in range(len(x)):
        buf = io.BytesIO()
        Image.fromarray(x[i, 0].numpy()).save(buf, "PNG")
        # the same uint8 pixels through the same elementwise float32 steps (no sums): exact
        assert torch.equal(torch.from_numpy(preprocess(buf.getvalue(), card)), batch[i])
    # at another input size and in RGB, the digits go through the same `prepare` as image files
    card32 = ModelCard.for_model("resnet18", num_classes=10, input_size=[32, 32])
    sets, _ = open_source("mnist-small").load(card32)
    x, _ = next(sets["test"].batches(2))
    assert x.shape == (2, 3, 32, 32)
    img = Image.fromarray(open_source("mnist-small").splits["test"].images[0])
    assert torch.equal(torch.from_numpy(preprocess(img, card32)), standardize(to_unit(x), card32)[0])


def make_folder(root, classes=("cat", "dog"), n=6, size=(20, 16), mode="RGB"):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            arr[..., c % 3] = 255  # each class has a colour
            Image.fromarray(arr).convert(mode).save(root / name / f"{i}.png")
    return root


def test_image_folder_skips_undecodable_and_splits(tmp_path):
    root = make_folder(tmp_path / "data")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "dog" / "notes.txt").write_text("not an image: left out, and counted")
    src = open_source(str(root), val_split=0.25, seed=0)
    assert src.class_names == ["cat", "dog"] and src.channels is None
    assert len(src.splits["train"]) + len(src.splits["val"]) == 13
    card = ModelCard.for_model("lenet", class_names=src.class_names, input_size=[12, 12])
    sets, skipped = src.load(card)
    assert len(skipped) == 2 and "notes.txt: not an image kind" in skipped[0] and "broken.png" in skipped[1]
    assert sets["train"].images.shape[1:] == (1, 12, 12)
    assert len(sets["train"]) + len(sets["val"]) == 12
    # a folder too big for memory is decoded batch by batch, to the same tensors
    streamed, _ = src.load(card, cache_limit=0)
    assert streamed["train"].images is None
    got = torch.cat([x for x, _ in streamed["train"].batches(4)])
    assert torch.equal(got, sets["train"].images) and len(streamed["train"].failed) in (0, 1)


def test_image_folder_val_and_test_dirs(tmp_path):
    make_folder(tmp_path / "train")
    make_folder(tmp_path / "val", n=2)
    make_folder(tmp_path / "test", classes=("dog",), n=3)
    src = open_source(str(tmp_path / "train"), val_dir=str(tmp_path / "val"), test_dir=str(tmp_path / "test"))
    assert {k: len(v) for k, v in src.splits.items()} == {"train": 12, "val": 4, "test": 3}
    assert set(src.splits["test"].labels) == {1}  # "dog" keeps its training label
    make_folder(tmp_path / "odd", classes=("cat", "bird"), n=1)
    with pytest.raises(DataError, match="bird"):
        open_source(str(tmp_path / "train"), val_dir=str(tmp_path / "odd"))


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda r: r.mkdir(), "empty folder"),
        (lambda r: make_folder(r, classes=("only",)), "only one class"),
        (
            lambda r: (make_folder(r), (r / "gifs").mkdir(), (r / "gifs" / "a.svg").write_bytes(b"<svg/>")),
            r"gifs: only \.svg files",
        ),
        (lambda r: (r.mkdir(), Image.new("L", (4, 4)).save(r / "loose.png")), "no class subfolders"),
    ],
)
def test_bad_folders_one_line(tmp_path, setup, match):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DataError, match=match) as e:
        open_source(str(root))
    assert "\n" not in str(e.value)


def test_unknown_data_and_bad_splits(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        open_source(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="--val-split"):
        open_source("mnist-small", val_split=10000)
    with pytest.raises(DataError, match="own test split"):
        open_source("mnist-small", test_split=0.1)


def test_test_split_holds_out_last_mnist_images(tmp_path):
    images, _ = write_mnist(tmp_path, n=50)
    src = open_source(str(tmp_path), test_split=10, val_split=0.2)
    assert np.array_equal(src.splits["test"].images, images[-10:])
    assert len(src.splits["train"]) == 32 and len(src.splits["val"]) == 8

"""`zoo evaluate` scores held-out images: the run's test split, else its validation split, and says so
when a number is not held out; a folder of only the official MNIST test files is a test split."""

import gzip
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from zoo import rundir
from zoo.card import ModelCard
from zoo.cli import main
from zoo.data import mnist


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def photos(shared, tmp_path_factory):
    """Real ants and bees photos: train 5 + 5, val 3 + 3 (from the shared hymenoptera set)."""
    root = tmp_path_factory.mktemp("hymenoptera")
    for split, n in (("train", 5), ("val", 3)):
        for cls in ("ants", "bees"):
            (root / split / cls).mkdir(parents=True)
            for f in sorted((shared / "datasets" / "hymenoptera" / split / cls).iterdir())[:n]:
                shutil.copy(f, root / split / cls / f.name)
    return root


def train(photos, out, *options):
    r = cli(
        "train",
        "lenet",
        "--data",
        photos / "train",
        "--epochs",
        1,
        "--batch-size",
        4,
        "--augment",
        "none",
        "--workers",
        0,
        "--threads",
        1,
        "--output",
        out,
        *options,
    )
    assert r.exit_code == 0, r.output
    return ModelCard.load(out / rundir.CARD)


def evaluate(run, *options):
    r = cli("evaluate", run, "--format", "json", "--workers", 0, "--threads", 1, *options)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout), r.stderr


def test_a_run_with_a_validation_folder_is_scored_on_it(photos, tmp_path):
    card = train(photos, tmp_path / "run", "--val", photos / "val")
    got, warning = evaluate(tmp_path / "run")
    assert (got["split"], got["held_out"], got["n"], got["data"]) == ("val", True, 6, str(photos / "val"))
    # k / 6 both times (exact in float64) from two forward passes (training's and evaluate's), which agree
    # unless an image's top two logits lie within rounding (~1e-6) of each other; a wrong split is 1/6 off
    assert got["accuracy"] == pytest.approx(card.provenance["metrics"]["last_val_acc"])
    assert "not held out" not in warning
    got, warning = evaluate(tmp_path / "run", "--split", "train")  # asked for: said plainly
    assert (got["split"], got["held_out"], got["n"]) == ("train", False, 10)
    assert warning.count("\n") == 1 and "not held out" in warning and str(tmp_path / "run") in warning


def test_a_validation_split_is_made_again_as_training_made_it(photos, tmp_path):
    card = train(photos, tmp_path / "run", "--val-split", 4)
    got, _ = evaluate(tmp_path / "run")
    assert (got["split"], got["held_out"], got["n"]) == ("val", True, 4)
    assert got["accuracy"] == pytest.approx(card.provenance["metrics"]["last_val_acc"])  # k / 4: as above
    assert got["loss"] < 100 and sum(map(sum, got["confusion"])) == 4


def test_a_run_that_held_nothing_out_is_marked_not_held_out(photos, tmp_path):
    train(photos, tmp_path / "run", "--val-split", 0)
    got, warning = evaluate(tmp_path / "run")
    assert (got["split"], got["held_out"], got["n"]) == ("train", False, 10)
    assert "not held out" in warning and "held nothing out" in warning
    r = cli("evaluate", tmp_path / "run", "--workers", 0)
    assert "NOT held out" in r.stdout.splitlines()[0]


def write_t10k(directory, images, labels):
    directory.mkdir(parents=True)
    for kind, arr in (("images-idx3", images), ("labels-idx1", labels.astype(np.uint8))):
        header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(n.to_bytes(4, "big") for n in arr.shape)
        (directory / f"t10k-{kind}-ubyte.gz").write_bytes(gzip.compress(header + arr.tobytes()))


def test_a_folder_of_only_the_official_mnist_test_files_is_a_test_split(shared, make_run, tmp_path):
    root = shared / "datasets" / "mnist"
    images = mnist.read_idx(root / "train-images-idx3-ubyte.gz")[:100]
    labels = mnist.read_idx(root / "train-labels-idx1-ubyte.gz")[:100]
    write_t10k(tmp_path / "mnist-test", images, labels)
    run = make_run("lenet", class_names=mnist.CLASS_NAMES)
    got, _ = evaluate(run, "--data", tmp_path / "mnist-test")
    assert (got["split"], got["n"]) == ("test", 100)
    assert [row["n"] for row in got["per_class"].values()] == np.bincount(labels, minlength=10).tolist()
    # training on it says what is missing, in one line
    r = cli("train", "lenet", "--data", tmp_path / "mnist-test", "--epochs", 1, "--output", tmp_path / "r")
    assert r.exit_code == 1 and "train-images-idx3-ubyte" in r.output and r.output.count("\n") == 1
    assert not (tmp_path / "r").exists()

"""The held-out split policy and the calibration pick (zoo.data.heldout, zoo.data.calibration), and the
typed reader of a run's training record (zoo.data.provenance): one policy for `zoo evaluate` and for
int8's verification, on the embedded MNIST-small and small generated folders."""

import gzip

import numpy as np
import pytest
from PIL import Image

from export.quantize import QuantizeError, calibration_images, held_out_images
from zoo.card import ModelCard
from zoo.data import mnist
from zoo.data.calibration import calibration_images as pick_calibration
from zoo.data.datasets import DataError, stratified
from zoo.data.heldout import held_out, run_source
from zoo.data.provenance import TrainingData, same_data


def trained_on(data: str, class_names=None, **splits) -> ModelCard:
    """A card with the record `zoo train` writes of its data (provenance["training"])."""
    card = ModelCard.for_model("lenet", class_names=class_names or mnist.CLASS_NAMES)
    record = {"data": data, "val_split": 0.0, "val_dir": None, "test_dir": None, "test_split": None, "seed": 0}
    card.provenance.update(training={**record, "epochs": 3, **splits}, seed=0, data={"source": data})
    return card


def folder(root, classes=("cat", "dog"), n=4):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (40 * i, 255 * (c == 0), 255 * (c == 1))).save(root / name / f"{i}.png")
    return root


def idx_dir(directory, n=40):
    """MNIST IDX training files only (no test split of their own): digits i % 10."""
    directory.mkdir(parents=True)
    for kind, arr in (("images-idx3", np.zeros((n, 28, 28), np.uint8)), ("labels-idx1", np.arange(n) % 10)):
        header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
        (directory / f"train-{kind}-ubyte.gz").write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))
    return directory


def test_training_record_is_read_into_a_type(tmp_path):
    assert TrainingData.of(ModelCard.for_model("lenet")) is None  # not made by `zoo train`
    card = trained_on("mnist-small", val_split=0.1, test_dir=str(tmp_path / "t"), seed=7)
    run = TrainingData.of(card)
    assert run == TrainingData("mnist-small", val_split=0.1, test_dir=str(tmp_path / "t"), seed=7)
    assert (run.folder("test"), run.folder("val"), run.folder("train")) == (str(tmp_path / "t"), None, None)
    (tmp_path / "t").mkdir()
    assert run.held_out_name(str(tmp_path / "." / "t")) == "test" and run.held_out_name("mnist-small") is None
    assert same_data(str(tmp_path / "t"), str(tmp_path / "t" / ".")) and not same_data(None, None)


def test_own_data_is_split_again_and_its_held_out_split_taken(tmp_path):
    images = held_out(trained_on("mnist-small"))  # MNIST-small has a test split of its own
    assert (images.data, images.split, images.held_out, len(images)) == ("mnist-small", "test", True, 2000)
    card = trained_on(str(idx_dir(tmp_path / "idx")), val_split=8)
    images = held_out(card)
    assert (images.split, images.held_out, len(images)) == ("val", True, 8)
    assert np.array_equal(images.raw.labels, run_source(card).splits["val"].labels)
    nothing = trained_on(str(tmp_path / "idx"))  # held nothing out: its training images, said so
    images = held_out(nothing)
    assert (images.split, images.held_out, len(images)) == ("train", False, 40)
    with pytest.raises(QuantizeError, match="neither a test nor a validation split"):
        held_out_images(nothing)  # int8 is never verified on the images it trained on


def test_a_validation_folder_is_named_and_other_data_is_not_held_out_unless_the_card_says(tmp_path):
    train, val, other = folder(tmp_path / "train"), folder(tmp_path / "val", n=2), folder(tmp_path / "other", n=3)
    card = trained_on(str(train), class_names=["cat", "dog"], val_dir=str(val))
    for images in (held_out(card), held_out_images(card)):  # evaluate and int8 take the same images
        assert (images.data, images.split, images.held_out, len(images)) == (str(val), "val", True, 4)
    image_set, skipped = held_out(card).load(card)
    assert image_set.images.shape == (4, 1, 28, 28) and skipped == []
    named = held_out(card, str(val))  # other data, but the run's own validation folder
    assert (named.data, named.split, named.held_out) == (str(val), "train", True)
    unknown = held_out(card, str(other))
    assert (unknown.split, unknown.held_out, len(unknown)) == ("train", None, 6)
    assert held_out_images(card, str(other)).split == "all"  # int8 says: all of it
    with pytest.raises(DataError, match="has no test split"):
        held_out(card, split="test")
    with pytest.raises(QuantizeError, match=f"^--verify-data {tmp_path / 'nope'}: --data .*no such directory"):
        held_out_images(card, str(tmp_path / "nope"))


def test_calibration_is_a_seeded_stratified_pick_of_training_images(tmp_path):
    card = trained_on("mnist-small", seed=3)
    images = pick_calibration(card, None, 30)
    assert (images.data, images.split, images.seed, len(images)) == ("mnist-small", "train", 3, 30)
    assert np.bincount(images.raw.labels).tolist() == [3] * 10  # each class in proportion
    again = pick_calibration(card, "mnist-small", 30)  # the run's own data, named: the same pick
    assert np.array_equal(again.raw.images, images.raw.images)
    train = run_source(card).splits["train"]
    assert np.array_equal(images.raw.labels, train.labels[stratified(train.labels, 30, 3)[1]])


def test_calibration_data_of_every_kind_and_its_refusals_in_one_line(tmp_path):
    val = folder(tmp_path / "val")
    card = trained_on("mnist-small", val_dir=str(val))
    with pytest.raises(DataError, match="held-out validation data"):
        pick_calibration(card, str(val), 10)
    classes = pick_calibration(card, str(folder(tmp_path / "classes")), 100)
    assert (classes.split, len(classes)) == ("all", 8)
    loose = tmp_path / "loose"
    loose.mkdir()
    for name in ("b.png", "a.jpg", ".hidden.png", "notes.txt"):
        (loose / name).write_bytes(b"")
    plain = pick_calibration(card, str(loose), 100)
    assert (plain.split, [p.rsplit("/", 1)[1] for p in plain.raw.files]) == ("all", ["a.jpg", "b.png"])
    assert pick_calibration(card, str(idx_dir(tmp_path / "idx")), 100).split == "train"  # an IDX directory
    (tmp_path / "empty").mkdir()
    for calibration, words in ((tmp_path / "empty", "no images in it"), (tmp_path / "nope", "no such directory")):
        with pytest.raises(DataError, match=words) as e:
            pick_calibration(card, str(calibration), 10)
        assert "\n" not in str(e.value) and str(e.value).startswith(f"--calibration {calibration}: ")
    with pytest.raises(DataError, match="--calibration-images 0: must be at least 1"):
        pick_calibration(card, None, 0)
    with pytest.raises(QuantizeError, match="names no training data to calibrate on"):
        calibration_images(ModelCard.for_model("lenet"))

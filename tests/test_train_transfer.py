"""`zoo train --pretrained/--freeze`: torchvision checkpoints and our own runs as starting points."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file
from test_transfer import checkpoint_like, reference  # noqa: F401  (fixture)

from zoo.cli import main


@pytest.fixture
def two_class_folder(tmp_path):
    rng = np.random.default_rng(0)
    for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(8):
            arr = np.clip(np.array(colour) + rng.normal(0, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / "data" / name / f"{i}.png")
    return tmp_path / "data"


def train(*args):
    r = CliRunner().invoke(main, ["train", *args], catch_exceptions=False)
    return r


def test_torchvision_checkpoint_frozen_backbone_trains_only_the_new_head(reference, two_class_folder, tmp_path):  # noqa: F811  (the fixture imported above)
    ckpt = checkpoint_like(reference["resnet18"]["state_dict_shapes"])
    torch.save(ckpt, tmp_path / "resnet18-tv.pth")
    out = tmp_path / "run"
    r = train(
        "resnet18",
        "--data",
        str(two_class_folder),
        "--input-size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--val-split",
        "4",
        "--augment",
        "none",
        "--workers",
        "0",
        "--pretrained",
        str(tmp_path / "resnet18-tv.pth"),
        "--freeze",
        "backbone",
        "--output",
        str(out),
    )
    assert r.exit_code == 0, r.output
    assert "new head fc: 1000 -> 2 classes" in r.output and "frozen: stem, layer1" in r.output
    weights = load_file(str(out / "model.safetensors"))
    assert weights["fc.weight"].shape == (2, 512)
    for k, v in ckpt.items():  # every backbone tensor, batch-norm statistics included, is unchanged
        if not k.startswith("fc."):
            assert torch.equal(weights[k], v), k
    card = json.loads((out / "card.json").read_text())
    assert card["provenance"]["weights"]["file"].endswith("resnet18-tv.pth")
    assert len(card["provenance"]["weights"]["sha256"]) == 64
    assert card["provenance"]["frozen"]["trainable_stages"] == ["head"]


@pytest.mark.slow  # two trainings, 5 s; the fold itself is held by test_transfer's fast test
def test_fine_tune_from_our_own_run_with_grayscale_fold(two_class_folder, tmp_path):
    first = tmp_path / "first"
    assert (
        train(
            "resnet18",
            "--data",
            str(two_class_folder),
            "--input-size",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--val-split",
            "4",
            "--augment",
            "none",
            "--workers",
            "0",
            "--output",
            str(first),
        ).exit_code
        == 0
    )
    second = tmp_path / "second"
    r = train(
        "resnet18",
        "--data",
        str(two_class_folder),
        "--input-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--val-split",
        "4",
        "--augment",
        "none",
        "--workers",
        "0",
        "--in-channels",
        "1",
        "--pretrained",
        str(first),
        "--freeze",
        "2",
        "--backbone-lr-mult",
        "0.1",
        "--output",
        str(second),
    )
    assert r.exit_code == 0, r.output
    assert "conv1.weight: adapted the pretrained 3-channel filters to 1 input channel" in r.output
    a, b = load_file(str(first / "model.safetensors")), load_file(str(second / "model.safetensors"))
    assert torch.equal(b["conv1.weight"], a["conv1.weight"].sum(1, keepdim=True))  # frozen stem
    assert torch.equal(b["layer3.0.conv1.weight"], a["layer3.0.conv1.weight"])  # frozen
    assert not torch.equal(b["layer4.0.conv1.weight"], a["layer4.0.conv1.weight"])  # trained


def test_mismatched_checkpoint_is_one_line_and_writes_nothing(reference, two_class_folder, tmp_path):  # noqa: F811  (the fixture imported above)
    torch.save(checkpoint_like(reference["resnet18"]["state_dict_shapes"]), tmp_path / "r18.pth")
    out = tmp_path / "run"
    r = CliRunner().invoke(
        main,
        [
            "train",
            "resnet34",
            "--data",
            str(two_class_folder),
            "--input-size",
            "32",
            "--epochs",
            "1",
            "--pretrained",
            str(tmp_path / "r18.pth"),
            "--output",
            str(out),
        ],
    )
    assert r.exit_code == 1 and r.output.strip().count("\n") == 0
    assert "missing" in r.output and "--pretrained-partial" in r.output
    assert not out.exists()

"""`zoo features`: the head layer's input for every image of a folder, with its label and path."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from zoo.cli import main


@pytest.fixture
def folder(tmp_path):
    """Two classes of small RGB images (3 and 2), one undecodable file and one non-image file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for cls, n in (("cat", 3), ("dog", 2)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), np.uint8)).save(root / cls / f"{i}.png")
    (root / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_features_equal_a_manual_hook_on_the_same_batch(make_run, folder, tmp_path):
    from zoo import rundir
    from zoo.data.datasets import open_source, standardize, to_unit

    run = make_run("resnet18", class_names=[str(i) for i in range(4)], input_size=[32, 32])
    out = tmp_path / "f.npz"
    result = CliRunner().invoke(
        main, ["features", str(run), str(folder), "--output", str(out), "--batch-size", "2", "--workers", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "skipped 2 files" in result.stderr  # broken.jpg and notes.txt
    f = np.load(out, allow_pickle=False)
    assert f["features"].shape == (5, 512) and f["features"].dtype == np.float32
    assert f["labels"].tolist() == [0, 0, 0, 1, 1]
    assert list(f["class_names"]) == ["cat", "dog"]
    assert [p.split("/")[-2:] for p in f["paths"]] == [
        ["cat", "0.png"],
        ["cat", "1.png"],
        ["cat", "2.png"],
        ["dog", "0.png"],
        ["dog", "1.png"],
    ]

    net, card = rundir.load_model(run)
    sets, _ = open_source(str(folder)).load(card, progress=False)
    seen = []
    net.fc.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    with torch.no_grad():
        net(standardize(to_unit(sets["train"].images), card))
    # batches of 2 vs one of 5: ResNet-18's 17 convs sum up to K = 4608 terms in another order, ~sqrt(K) u
    # ~ 4e-6 of the activations' scale per layer, ~2e-5 over the 17: 1e-4 of max |feature| is above it
    # (measured 5e-7, 1 and 2 threads); another image's features are 0.2 off, unstandardized input 0.73
    ref = seen[0].numpy()
    assert np.abs(f["features"] - ref).max() <= 1e-4 * np.abs(ref).max()


def test_mnist_paths_are_synthetic_ids_and_lenet_gives_f6(make_run, tmp_path):
    out = tmp_path / "m.npz"
    result = CliRunner().invoke(
        main, ["features", str(make_run("lenet")), "mnist-small", "--split", "test", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    f = np.load(out, allow_pickle=False)
    n = len(f["labels"])
    assert f["features"].shape == (n, 84) and n > 0
    assert f["paths"][0] == "mnist:test:0" and f["paths"][-1] == f"mnist:test:{n - 1}"
    assert (f["features"] >= 0).all()  # after F6's ReLU


def test_errors_are_one_line(make_run, tmp_path):
    run = make_run("lenet")
    for args in ([str(tmp_path / "nope"), "mnist-small"], [str(run), str(tmp_path / "nothing")]):
        result = CliRunner().invoke(main, ["features", *args, "--output", str(tmp_path / "x.npz")])
        assert result.exit_code == 1
        assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "x.npz").exists()

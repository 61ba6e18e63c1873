import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from browser import headless_chrome, render_check
from click.testing import CliRunner
from photos import write_photos
from PIL import Image
from tolerances import LOGITS_REL, probability_atol

from zoo.card import ModelCard
from zoo.cli import main
from zoo.data.preprocess import preprocess
from zoo.models import create, get_spec, list_models
from zoo.rundir import CARD, CONFUSION, WEIGHTS, load_model, save_weights
from zoo.viz import figures
from zoo.viz.activations import capture

LENET_LABELS = ["C1", "S2", "C3", "S4", "C5", "F6", "output"]
LENET_SHAPES = [[6, 28, 28], [6, 14, 14], [16, 10, 10], [16, 5, 5], [120], [84], [10]]


def visualize(*args):
    return CliRunner().invoke(main, ["visualize", *map(str, args)])


def make_run(root, arch, **card_kw):
    """A run directory as `zoo train` leaves it: weights and card (random weights, seed 0)."""
    torch.manual_seed(0)
    card = ModelCard.for_model(arch, data="test fixture", **card_kw)
    model = create(arch, num_classes=card.num_classes, in_channels=card.in_channels)
    run = root / f"{arch}-test"
    save_weights(run / WEIGHTS, model)
    card.save(run / CARD)
    return run


@pytest.fixture(scope="module")
def digit(tmp_path_factory):
    """The first 5 of MNIST-small's training digits (in the package), as a PNG file."""
    from zoo.data.mnist import load_small

    images, labels = load_small()["train"]
    pixels = images[int(np.argmax(labels == 5))]
    path = tmp_path_factory.mktemp("digit") / "digit-5.png"
    Image.fromarray(pixels, "L").save(path)
    return path


@pytest.fixture(scope="module")
def lenet_page(tmp_path_factory, digit):
    """`zoo visualize` on a LeNet run directory that has a history and the confusion matrix `zoo evaluate`
    draws."""
    root = tmp_path_factory.mktemp("runs")
    run = make_run(root, "lenet5")
    history = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "val_loss": 1.1 / e,
            "val_accuracy": 0.8 + e / 100,
            "lr": 0.01,
            "seconds": 3.0,
        }
        for e in range(1, 4)
    ]
    (run / "history.json").write_text(json.dumps(history))
    confusion = (np.eye(10, dtype=int) * 90 + 1).tolist()
    (run / CONFUSION).write_bytes(figures.confusion(confusion, [str(d) for d in range(10)]))
    out = root / "page"
    r = visualize(run, digit, "--output", out)
    assert r.exit_code == 0, r.output
    return run, out, r.output


def test_lenet_page_layers_named_as_the_paper(lenet_page):
    run, out, output = lenet_page
    stats = json.loads((out / "stats.json").read_text())
    assert [layer["label"] for layer in stats["layers"]] == LENET_LABELS
    assert [layer["output_shape"] for layer in stats["layers"]] == LENET_SHAPES
    assert [layer["name"] for layer in stats["layers"]] == [
        "features.0",
        "features.2",
        "features.3",
        "features.5",
        "classifier.1",
        "classifier.3",
        "classifier.5",
    ]
    assert [layer["params"] for layer in stats["layers"]] == [156, 0, 2416, 0, 48120, 10164, 850]
    c1 = stats["layers"][0]
    assert c1["type"] == "Conv2d + ReLU" and c1["weights"]["numel"] == 150
    assert any(f.endswith("-filters.png") for f in c1["figures"])
    assert not any(f.endswith("-filters.png") for f in stats["layers"][1]["figures"])  # S2: a pool
    assert f"-> {out / 'index.html'}" in output


def test_lenet_numbers_match_an_independent_forward(lenet_page, digit):
    run, out, _ = lenet_page
    stats = json.loads((out / "stats.json").read_text())
    model, card = load_model(run)
    x = torch.from_numpy(preprocess(digit, card))[None]
    conv = model.features[0]
    with torch.no_grad():  # C1 by hand, on the paper's 32x32 input
        c1 = F.relu(F.conv2d(F.pad(x, (2, 2, 2, 2)), conv.weight, conv.bias))
    got = stats["layers"][0]["activation"]
    # C1 in the model (padding=2) vs by hand (padded input): each value K = 25 terms + bias (~5 u), the mean
    # of 4704 non-negative values ~sqrt(4704) u ~ 4e-6 more, 1e-4 for the cancellation in the conv sums.
    # Measured 0 (same kernel here); a dropped bias moves the mean 14%, no padding 17%. min: ReLU's exact 0
    assert got["mean"] == pytest.approx(float(c1.mean()), rel=1e-4)
    assert got["max"] == pytest.approx(float(c1.max()), rel=1e-5) and got["min"] == 0.0
    assert got["numel"] == 6 * 28 * 28
    w = stats["layers"][0]["weights"]
    # the same 150 float32 weights through torch's std both times (measured 0); in another order the sum of
    # squares is within 150 u ~ 9e-6, its root half that; the population std instead of the sample's: 3e-3
    assert w["std"] == pytest.approx(float(conv.weight.detach().std()), rel=1e-5)
    with torch.no_grad():
        logits = model(x)
    probs = torch.softmax(logits[0], 0)
    top = probs.topk(5)
    assert [p["label"] for p in stats["predictions"]] == [card.class_names[i] for i in top.indices]
    assert [p["index"] for p in stats["predictions"]] == top.indices.tolist()
    # float32 softmax vs the answer's float64 one (~1e-8) rounded to 6 decimals, from logits within
    # LOGITS_REL: probability_atol (4e-6 here; measured 4.2e-7; a swapped class moves them ~6e-4)
    atol = probability_atol(logits.numpy())
    assert [p["probability"] for p in stats["predictions"]] == pytest.approx(top.values.tolist(), abs=atol)
    # a mean of 10 logits that nearly cancel (0.013 of max |logit| 0.15): relative to it, not to the mean
    scale = float(logits.abs().max())
    assert stats["layers"][-1]["activation"]["mean"] == pytest.approx(float(logits.mean()), abs=LOGITS_REL * scale)


def test_page_is_self_contained_and_every_figure_is_a_png(lenet_page):
    _, out, _ = lenet_page
    html = (out / "index.html").read_text()
    assert "<script" not in html
    srcs = re.findall(r'<img[^>]* src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    files = re.findall(r'<a href="([^"#]+)">', html)
    assert {
        "input.png",
        "predictions.png",
        "curves.png",
        "confusion.png",
        "00-c1-activations.png",
        "00-c1-filters.png",
        "00-c1-histograms.png",
        "06-output-histograms.png",
    } <= set(files)
    assert len(files) == len(srcs)
    for f in files:  # each embedded figure also written beside the page, as a PNG
        assert Image.open(out / f).format == "PNG"
    assert Image.open(out / "input.png").size == (224, 224)  # the 28x28 input, enlarged 8 times
    for label in LENET_LABELS:
        assert f">{label} <" in html
    assert "random weights" not in html and "last epoch" in html and "val_accuracy" in html


def test_run_files_are_embedded_as_they_are(tmp_path, digit):
    run = make_run(tmp_path, "lenet5")
    curves = Image.new("RGB", (60, 40), (200, 30, 30))
    curves.save(run / "curves.png")
    curves.save(run / "confusion.png")
    r = visualize(run, digit, "--output", tmp_path / "o", "--layers", "C1")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o/curves.png").read_bytes() == (run / "curves.png").read_bytes()
    assert (tmp_path / "o/confusion.png").read_bytes() == (run / "confusion.png").read_bytes()
    stats = json.loads((tmp_path / "o/stats.json").read_text())
    assert [layer["label"] for layer in stats["layers"]] == ["C1"]


PAGE_WITHOUT_TORCH = """
import sys
from zoo.viz.page import render
from zoo.viz.views import Fig, LayerView, Report

stats = {"mean": 0.5, "std": 0.25, "min": 0.0, "max": 1.0, "numel": 4}
layer = LayerView("C1", "features.0", "", "Conv2d", [6, 28, 28], 156, stats, None, [Fig("c1.png", b"png", "C1")])
report = Report("a run", "lenet5", "", [("classes", 10)], Fig("input.png", b"png", "the input"),
                [{"label": "7", "index": 7, "probability": 0.9}], Fig("predictions.png", b"png", "top-1"),
                [], {}, [layer], "0")
html = render(report)
assert "<td>7</td>" in html and "features.0" in html and report.to_dict()["layers"][0]["figures"] == ["c1.png"]
print(" ".join(sorted(m for m in sys.modules if m in ("torch", "zoo") or m.startswith("zoo."))))
"""


def test_the_page_and_its_data_need_no_torch():
    """The page is rendered from plain data (zoo/viz/views.py): neither imports torch, nor report.py."""
    root = str(pathlib.Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", PAGE_WITHOUT_TORCH], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["zoo", "zoo.viz", "zoo.viz.page", "zoo.viz.views"]


def test_page_renders_in_headless_chromium(lenet_page, tmp_path):
    _, out, _ = lenet_page
    n_figures = len(re.findall(r"<img", (out / "index.html").read_text()))
    with headless_chrome(tmp_path) as driver:
        result = render_check(driver, (out / "index.html").as_uri(), tmp_path / "page.png")
    assert result["images"] == n_figures == 20  # input, top-5, curves, confusion, 7 layers
    assert result["broken"] == []
    assert not result["blank"] and result["std"] > 10
    assert "zoo visualize" in result["title"]


def test_resnet_by_name_with_selected_layers(tmp_path):
    photo = write_photos(tmp_path / "photos")[0]
    r = visualize("resnet18", photo, "--layers", "conv1,layer1", "--output", tmp_path / "o")
    assert r.exit_code == 0, r.output
    stats = json.loads((tmp_path / "o/stats.json").read_text())
    conv1, layer1 = stats["layers"]
    assert (conv1["label"], conv1["type"], conv1["output_shape"]) == (
        "conv1",
        "Conv2d + BatchNorm2d + ReLU",
        [64, 112, 112],
    )
    assert (layer1["name"], layer1["type"], layer1["output_shape"]) == ("layer1", "Sequential", [64, 56, 56])
    assert conv1["activation"]["min"] >= 0  # after the ReLU
    assert layer1["params"] == 2 * 73_984
    assert Image.open(tmp_path / "o/00-conv1-filters.png").mode == "RGB"
    html = (tmp_path / "o/index.html").read_text()
    assert "random weights (seed 0)" in html and "1000" in html
    assert "Training" not in html  # no run directory, no curves
    assert len(stats["predictions"]) == 5


def test_googlenet_inception_branches(tmp_path):
    run = make_run(tmp_path, "googlenet", num_classes=2, input_size=[64, 64], class_names=["ants", "bees"])
    photo = write_photos(tmp_path / "photos")[1]
    names = ["inception3a"] + [f"inception3a.branch{i}" for i in range(1, 5)]
    r = visualize(run, photo, "--layers", ",".join(names), "--output", tmp_path / "o", "--top", "3")
    assert r.exit_code == 0, r.output
    stats = json.loads((tmp_path / "o/stats.json").read_text())
    layers = stats["layers"]
    assert [layer["label"] for layer in layers] == [
        "inception (3a)",
        "inception (3a) · 1x1",
        "inception (3a) · 3x3",
        "inception (3a) · 5x5",
        "inception (3a) · pool proj",
    ]
    assert [layer["output_shape"][0] for layer in layers] == [256, 64, 128, 32, 32]
    assert sum(layer["output_shape"][0] for layer in layers[1:]) == layers[0]["output_shape"][0]
    assert len(stats["predictions"]) == 2  # only two classes
    html = (tmp_path / "o/index.html").read_text()  # the module's grid samples every branch
    assert "the first 16 channels of each branch (1x1: 64, 3x3: 128, 5x5: 32, pool proj: 32" in html


@pytest.mark.parametrize("name", list_models())
def test_default_layers_of_every_model_run_in_order(name):
    spec = get_spec(name)
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        model = create(name).eval()
        x = torch.empty(1, *spec.input_size)
    layers = spec.layers(model)
    _, acts = capture(model, x, [layer.output for layer in layers])
    assert [layer.output for layer in layers if layer.output not in acts] == []
    labels = [layer.label for layer in layers]
    assert len(set(labels)) == len(labels)
    assert labels[-1] in ("output", "fc", "fc8")


def _labels(name):
    spec = get_spec(name)
    with torch.device("meta"):
        return [layer.label for layer in spec.layers(create(name))]


def test_paper_names_per_family():
    assert _labels("lenet5") == LENET_LABELS
    assert _labels("alexnet") == [
        "conv1",
        "pool1",
        "conv2",
        "pool2",
        "conv3",
        "conv4",
        "conv5",
        "pool5",
        "fc6",
        "fc7",
        "fc8",
    ]
    assert _labels("zfnet") == _labels("alexnet_v1") == _labels("alexnet")
    vgg16 = _labels("vgg16")
    assert vgg16[:3] == ["conv1_1", "conv1_2", "pool1"] and vgg16[-4:] == ["pool5", "fc6", "fc7", "fc8"]
    assert len(vgg16) == 13 + 5 + 3 and "conv5_3" in vgg16 and _labels("vgg16_bn") == vgg16
    g = _labels("googlenet")
    assert g[:5] == ["conv1", "pool1", "conv2 reduce", "conv2", "pool2"]
    assert [x for x in g if x.startswith("inception") and "·" not in x] == [
        f"inception ({s})" for s in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
    ]
    assert g[5:10] == [
        "inception (3a)",
        "inception (3a) · 1x1",
        "inception (3a) · 3x3",
        "inception (3a) · 5x5",
        "inception (3a) · pool proj",
    ]
    r50 = _labels("resnet50")
    assert r50[:3] == ["conv1", "pool1", "conv2_x · block 1"]
    assert [x for x in r50 if x.startswith("conv5_x")] == [f"conv5_x · block {i}" for i in (1, 2, 3)]
    assert len([x for x in r50 if "block" in x]) == 3 + 4 + 6 + 3


def test_user_errors_are_one_line(tmp_path, digit):
    for args, code, text in [
        (("resnet81", digit), 2, "resnet18"),
        ((tmp_path / "no-run", digit), 2, "no such run directory"),
        (("lenet", tmp_path / "missing.png"), 1, "no such image file"),
        (("lenet", digit, "--layers", "C9"), 2, "no layer 'C9'"),
        (("resnet18", digit, "--layers", "layer9"), 2, "did you mean"),
    ]:
        r = visualize(*args, "--output", tmp_path / "o")
        assert r.exit_code == code and r.output.strip().count("\n") == 0 and text in r.output, r.output
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    r = visualize("lenet", bad, "--output", tmp_path / "o")
    assert r.exit_code == 1 and "not a readable image" in r.output and r.output.strip().count("\n") == 0

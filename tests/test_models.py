import pytest
import torch

from zoo.models import UnknownModelError, create, get_spec, list_models
from zoo.models.summary import InputTooSmallError, summarize

EXPECTED_PARAMS = {
    "lenet5": 61_706,
    "alexnet": 61_100_840,
    "vgg16": 138_357_544,
    "googlenet": 6_624_904,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}


def test_registry_has_the_eighteen_models():
    assert list_models() == [
        "lenet5",
        "alexnet",
        "alexnet_v1",
        "zfnet",
        "vgg11",
        "vgg11_bn",
        "vgg13",
        "vgg13_bn",
        "vgg16",
        "vgg16_bn",
        "vgg19",
        "vgg19_bn",
        "googlenet",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
    ]
    assert get_spec("lenet").name == "lenet5"
    assert get_spec("LeNet").name == "lenet5"


@pytest.mark.parametrize("name,params", EXPECTED_PARAMS.items())
def test_parameter_counts(name, params):
    with torch.device("meta"):
        model = create(name)
    assert sum(p.numel() for p in model.parameters()) == params


def test_vgg16_convolutional_part():
    with torch.device("meta"):
        model = create("vgg16")
    assert sum(p.numel() for p in model.features.parameters()) == 14_714_688


def test_alexnet_v1_conv1_is_the_papers():
    model = create("alexnet_v1")
    conv1 = model.features[0]
    assert sum(p.numel() for p in conv1.parameters()) == 34_944
    assert conv1(torch.zeros(1, 3, 227, 227)).shape == (1, 96, 55, 55)
    assert any(isinstance(m, torch.nn.LocalResponseNorm) for m in model.features)
    assert [m.out_channels for m in model.features if isinstance(m, torch.nn.Conv2d)] == [96, 256, 384, 384, 256]


def test_zfnet_layout():
    model = create("zfnet")
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert (convs[0].kernel_size, convs[0].stride) == ((7, 7), (2, 2))
    assert [c.out_channels for c in convs] == [96, 256, 512, 1024, 512]
    shapes = [r.output_shape for r in summarize("zfnet").layers if r.type == "Conv2d"]
    assert [s[1] for s in shapes] == [110, 26, 13, 13, 13]


def test_lenet_takes_28_and_32():
    model = create("lenet").eval()
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n.startswith("vgg") and n != "vgg11" else n for n in list_models()],
)  # (the other VGGs: seconds each, the same code)
def test_forward_at_default_size_eval_and_train(name):
    spec = get_spec(name)
    torch.manual_seed(0)
    model = create(name, num_classes=7)
    x = torch.randn(2, *spec.input_size)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 7)
    model.train()
    with torch.no_grad():
        assert model(x).shape == (2, 7)


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "vgg11_bn", "googlenet", "resnet18"])
def test_in_channels(name):
    c = 3 if name == "lenet5" else 1
    model = create(name, num_classes=5, in_channels=c).eval()
    h, w = get_spec(name).input_size[1:]
    with torch.no_grad():
        assert model(torch.zeros(1, c, h, w)).shape == (1, 5)


def test_googlenet_aux_heads_train_only():
    model = create("googlenet", num_classes=4, aux_logits=True)
    x = torch.randn(2, 3, 224, 224)
    out = model.train()(x)
    assert [t.shape for t in out] == [(2, 4)] * 3
    assert model.eval()(x).shape == (2, 4)
    plain = create("googlenet")
    assert not any(k.startswith("aux") for k in plain.state_dict())


@pytest.mark.parametrize(
    "name,lo,hi",
    [
        ("resnet18", 1.75e9, 1.85e9),
        ("resnet34", 3.55e9, 3.7e9),
        ("resnet50", 3.8e9, 4.15e9),
        ("resnet101", 7.5e9, 7.9e9),
        ("resnet152", 11.2e9, 11.6e9),
    ],
)
def test_resnet_macs_agree_with_the_paper(name, lo, hi):
    assert lo <= summarize(name).macs <= hi


def test_summary_rows_add_up():
    s = summarize("resnet18")
    assert sum(r.params for r in s.layers) == s.params == 11_689_512
    assert sum(r.macs for r in s.layers) == s.macs
    assert s.layers[0].name == "conv1" and s.layers[0].output_shape == [64, 112, 112]
    assert s.layers[-1].output_shape == [1000]


def test_unknown_model_suggests():
    with pytest.raises(UnknownModelError, match="resnet18"):
        create("resnet81")


def test_too_small_input_names_the_layer():
    with pytest.raises(InputTooSmallError, match=r"features\.\d+ \(MaxPool2d\)"):
        summarize("alexnet", 16)

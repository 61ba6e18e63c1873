"""Which layers `zoo visualize` shows, and what the papers call them.

A `Layer` is a block of modules as a reader of the paper counts it: a convolution with its batch norm,
ReLU and LRN ("conv1"), a pooling layer ("S2", "pool1"), a fully connected layer with its ReLU ("fc6"),
a residual block ("conv2_x, block 1"), an inception module ("inception (3a)") or one of its branches
("inception (3a) · 3x3"). Its activation is the output of the block's last module; its filters are those
of its first convolution with a kernel larger than 1x1 (of its only one otherwise).

Default layers, by family:
- LeNet-5: C1, S2, C3, S4, C5, F6, output (the paper's Fig. 2).
- AlexNet, ZFNet: conv1..conv5, pool1, pool2, pool5, fc6..fc8 (the Caffe names the papers' figures use).
- VGG: conv1_1..conv5_3, pool1..pool5, fc6..fc8.
- GoogLeNet: conv1, pool1, conv2 (reduce and 3x3), pool2, inception (3a)..(5b) each followed by its four
  branches 1x1 / 3x3 / 5x5 / pool proj, pool3, pool4, avg pool, fc (the paper's Table 1).
- ResNet: conv1, pool1, then layer1..layer4 (the paper's conv2_x..conv5_x) block by block, avg pool, fc.
Any other model: every convolution, pooling and linear module in order, under its module name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
POOL = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
FOLLOWERS = (nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.LocalResponseNorm)  # fold into the block before


@dataclass
class Layer:
    name: str  # the module a user selects it by (--layers), e.g. "features.0", "layer1.0"
    label: str  # what the paper calls it, e.g. "C1", "conv1_1", "conv2_x, block 1"
    modules: list[str] = field(default_factory=list)  # the block's modules, in order
    note: str = ""  # one line of explanation shown beside the label

    @property
    def output(self) -> str:
        """The module whose output is the block's activation."""
        return self.modules[-1] if self.modules else self.name


def _block(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name) if name else model


def _sequential_blocks(seq: nn.Sequential, prefix: str) -> list[tuple[str, list[str]]]:
    """Group a Sequential into (kind, module names): conv/linear + following BN/ReLU/LRN; pools alone."""
    out: list[tuple[str, list[str]]] = []
    for idx, m in seq.named_children():
        full = f"{prefix}.{idx}"
        if isinstance(m, CONV):
            out.append(("conv", [full]))
        elif isinstance(m, nn.Linear):
            out.append(("linear", [full]))
        elif isinstance(m, POOL):
            out.append(("pool", [full]))
        elif isinstance(m, FOLLOWERS) and out and out[-1][0] in ("conv", "linear"):
            out[-1][1].append(full)
    return out


def _lenet(model) -> list[Layer]:
    blocks = _sequential_blocks(model.features, "features") + \
        _sequential_blocks(model.classifier, "classifier")
    labels = ["C1", "S2", "C3", "S4", "C5", "F6", "output"]
    notes = ["convolution, 6 feature maps of 5x5 filters", "sub-sampling (2x2 max pooling)",
             "convolution, 16 feature maps of 5x5 filters", "sub-sampling (2x2 max pooling)",
             "fully connected, 120 units (a 5x5 convolution in the paper)", "fully connected, 84 units",
             "class scores"]
    return [Layer(mods[0], labels[i] if i < len(labels) else mods[0], mods,
                  notes[i] if i < len(notes) else "")
            for i, (_, mods) in enumerate(blocks)]


def _alexnet_vgg(model, vgg: bool) -> list[Layer]:
    layers = []
    stage, conv_in_stage, conv = 1, 0, 0
    for kind, mods in _sequential_blocks(model.features, "features"):
        if kind == "conv":
            conv += 1
            conv_in_stage += 1
            label = f"conv{stage}_{conv_in_stage}" if vgg else f"conv{conv}"
        else:
            label = f"pool{stage if vgg else conv}"
            stage, conv_in_stage = stage + 1, 0
        layers.append(Layer(mods[0], label, mods))
    fc = 6
    for _, mods in _sequential_blocks(model.classifier, "classifier"):
        layers.append(Layer(mods[0], f"fc{fc}", mods))
        fc += 1
    return layers


def _googlenet(model) -> list[Layer]:
    layers = [Layer("conv1", "conv1", ["conv1"], "7x7 convolution, stride 2"),
              Layer("maxpool1", "pool1", ["maxpool1"], "3x3 max pooling, stride 2"),
              Layer("conv2", "conv2 reduce", ["conv2"], "1x1 convolution (the 3x3 reduce)"),
              Layer("conv3", "conv2", ["conv3"], "3x3 convolution"),
              Layer("maxpool2", "pool2", ["maxpool2"], "3x3 max pooling, stride 2")]
    notes = {"branch1": "1x1 convolutions", "branch2": "1x1 reduce, then 3x3 convolutions",
             "branch3": "1x1 reduce, then the \"5x5\" convolutions (3x3 in torchvision's layout "
                        "and weights)",
             "branch4": "3x3 max pooling, then 1x1 projection"}
    branches = [(b, short, notes[b]) for b, short in BRANCH_NAMES.items()]
    pools = {"maxpool3": "pool3", "maxpool4": "pool4"}
    for name, _ in model.named_children():
        if name.startswith("inception"):
            label = f"inception ({name[len('inception'):]})"
            layers.append(Layer(name, label, [name], "the four branches, concatenated"))
            layers += [Layer(f"{name}.{b}", f"{label} · {short}", [f"{name}.{b}"], note)
                       for b, short, note in branches]
        elif name in pools:
            layers.append(Layer(name, pools[name], [name], "3x3 max pooling, stride 2"))
    layers.append(Layer("avgpool", "avg pool", ["avgpool"], "global average pooling"))
    layers.append(Layer("fc", "fc", ["fc"], "linear classifier"))
    return layers


def _resnet(model) -> list[Layer]:
    layers = [Layer("conv1", "conv1", ["conv1", "bn1", "relu"], "7x7 convolution, stride 2"),
              Layer("maxpool", "pool1", ["maxpool"], "3x3 max pooling, stride 2 (starts conv2_x)")]
    for stage in range(1, 5):
        seq = getattr(model, f"layer{stage}")
        for i, _ in enumerate(seq):
            name = f"layer{stage}.{i}"
            layers.append(Layer(name, f"conv{stage + 1}_x · block {i + 1}", [name],
                                f"layer{stage} = the paper's conv{stage + 1}_x; residual block {i + 1} "
                                f"of {len(seq)}"))
    layers.append(Layer("avgpool", "avg pool", ["avgpool"], "global average pooling"))
    layers.append(Layer("fc", "fc", ["fc"], "linear classifier"))
    return layers


def _generic(model) -> list[Layer]:
    return [Layer(n, n, [n]) for n, m in model.named_modules()
            if isinstance(m, (*CONV, *POOL, nn.Linear))]


def default_layers(model: nn.Module, family: str) -> list[Layer]:
    """The layers a reader of the paper would want to see, in forward order, named as the paper does."""
    if family == "lenet":
        return _lenet(model)
    if family in ("alexnet", "zfnet", "vgg"):
        return _alexnet_vgg(model, vgg=family == "vgg")
    if family == "googlenet":
        return _googlenet(model)
    if family == "resnet":
        return _resnet(model)
    return _generic(model)


class UnknownLayerError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def select_layers(model: nn.Module, family: str, names: list[str]) -> list[Layer]:
    """The layers named in `names`: module names (`conv1`, `layer1`, `features.0`) or paper labels (`C1`).

    A name that is a default layer's module or label gives that layer (with its batch norm and ReLU);
    any other module name gives that module alone.
    """
    import difflib

    defaults = default_layers(model, family)
    by_name = {layer.name: layer for layer in defaults}
    by_label = {layer.label.lower(): layer for layer in defaults}
    modules = dict(model.named_modules())
    chosen = []
    for name in names:
        if name in by_name:
            chosen.append(by_name[name])
        elif name in modules and name:
            chosen.append(Layer(name, name, [name]))
        elif name.lower() in by_label:
            chosen.append(by_label[name.lower()])
        else:
            known = [n for n in modules if n] + [layer.label for layer in defaults]
            close = difflib.get_close_matches(name, known, n=4, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownLayerError(f"no layer {name!r} in {family} model{hint} (layers are module "
                                    f"names such as {defaults[0].name!r} or paper names such as "
                                    f"{defaults[0].label!r})")
    return chosen


def filter_module(model: nn.Module, layer: Layer) -> nn.Module | None:
    """The convolution whose filters stand for the layer: its first with a kernel over 1x1, else its first."""
    convs = [m for name in layer.modules for m in _block(model, name).modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        return None
    return next((c for c in convs if max(c.kernel_size) > 1), convs[0])


BRANCH_NAMES = {"branch1": "1x1", "branch2": "3x3", "branch3": "5x5", "branch4": "pool proj"}


def channel_groups(model: nn.Module, layer: Layer) -> list[tuple[str, int]] | None:
    """For a block whose output concatenates branches (an inception module): [(branch, channels)]."""
    if len(layer.modules) != 1:
        return None
    block = _block(model, layer.modules[0])
    names = [n for n in BRANCH_NAMES if isinstance(getattr(block, n, None), nn.Module)]
    if len(names) != len(BRANCH_NAMES):
        return None
    widths = [[m for m in getattr(block, n).modules() if isinstance(m, nn.Conv2d)][-1].out_channels
              for n in names]
    return [(BRANCH_NAMES[n], w) for n, w in zip(names, widths)]


def weight_tensors(model: nn.Module, layer: Layer) -> list:
    """The weights (not biases, not batch-norm scales) of every convolution and linear layer in the block."""
    return [m.weight for name in layer.modules for m in _block(model, name).modules()
            if isinstance(m, (*CONV, nn.Linear))]


def param_count(model: nn.Module, layer: Layer) -> int:
    return sum(p.numel() for name in layer.modules for p in _block(model, name).parameters())


def type_name(model: nn.Module, layer: Layer) -> str:
    """'Conv2d + BatchNorm2d + ReLU', 'BasicBlock', 'Inception', ..."""
    return " + ".join(type(_block(model, n)).__name__ for n in layer.modules)

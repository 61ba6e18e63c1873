"""GoogLeNet / Inception v1 [Szegedy et al. 2014] in torchvision's layout.

Each convolution is conv (no bias) + batch norm (eps 1e-3) + ReLU, as in torchvision, so its ImageNet
checkpoint loads. Like torchvision, the "5x5" branch of each inception module uses a 3x3 convolution
(the layout the published weights were trained with). The two auxiliary classifiers exist only with
`aux_logits=True`; they add loss terms in training mode and are never run in eval mode or exported.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import Layer, Stage
from .registry import IMAGENET_MEAN, IMAGENET_STD, AuxHeads, Weights, register_model

BRANCHES = {"branch1": "1x1", "branch2": "3x3", "branch3": "5x5", "branch4": "pool proj"}  # the paper's


class GoogLeNetOutputs(NamedTuple):
    logits: torch.Tensor
    aux_logits2: torch.Tensor
    aux_logits1: torch.Tensor


class BasicConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3; 1x1->"5x5"; 3x3 pool->1x1), concatenated."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1), BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1)
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1), BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)

    def channel_groups(self) -> list[tuple[str, int]]:
        """The concatenated output's parts: [(the paper's branch name, channels)] (`zoo visualize`)."""
        return [
            (short, [m for m in getattr(self, b).modules() if isinstance(m, nn.Conv2d)][-1].out_channels)
            for b, short in BRANCHES.items()
        ]


class InceptionAux(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7):
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.adaptive_avg_pool2d(x, (4, 4)))
        x = F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)
        return self.fc2(self.dropout(x))


class GoogLeNet(nn.Module):
    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        aux_logits: bool = False,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
    ):
        super().__init__()
        self.aux_logits = aux_logits
        self.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)

        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)

        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout_aux)
            self.aux2 = InceptionAux(528, num_classes, dropout_aux)
        else:
            self.aux1 = self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)

        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        run_aux = self.aux1 is not None and self.training
        aux1 = self.aux1(x) if run_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if run_aux else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if run_aux:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


def body_stages(model: GoogLeNet) -> list[Stage]:
    """conv1..conv3, inception3a..inception5b (the auxiliary classifiers belong to the head)."""
    return [(n, [m]) for n, m in model.named_children() if n.startswith(("conv", "inception"))]


_BRANCH_NOTES = {
    "branch1": "1x1 convolutions",
    "branch2": "1x1 reduce, then 3x3 convolutions",
    "branch3": '1x1 reduce, then the "5x5" convolutions (3x3 in torchvision\'s layout and weights)',
    "branch4": "3x3 max pooling, then 1x1 projection",
}


def paper_layers(model: GoogLeNet) -> list[Layer]:
    """conv1, pool1, conv2 (reduce and 3x3), pool2, inception (3a)..(5b) each followed by its four
    branches 1x1 / 3x3 / 5x5 / pool proj, pool3, pool4, avg pool, fc (the paper's Table 1)."""
    layers = [
        Layer("conv1", "conv1", ["conv1"], "7x7 convolution, stride 2"),
        Layer("maxpool1", "pool1", ["maxpool1"], "3x3 max pooling, stride 2"),
        Layer("conv2", "conv2 reduce", ["conv2"], "1x1 convolution (the 3x3 reduce)"),
        Layer("conv3", "conv2", ["conv3"], "3x3 convolution"),
        Layer("maxpool2", "pool2", ["maxpool2"], "3x3 max pooling, stride 2"),
    ]
    pools = {"maxpool3": "pool3", "maxpool4": "pool4"}
    for name, _ in model.named_children():
        if name.startswith("inception"):
            label = f"inception ({name[len('inception') :]})"
            layers.append(Layer(name, label, [name], "the four branches, concatenated"))
            layers += [
                Layer(f"{name}.{b}", f"{label} · {short}", [f"{name}.{b}"], _BRANCH_NOTES[b])
                for b, short in BRANCHES.items()
            ]
        elif name in pools:
            layers.append(Layer(name, pools[name], [name], "3x3 max pooling, stride 2"))
    layers.append(Layer("avgpool", "avg pool", ["avgpool"], "global average pooling"))
    layers.append(Layer("fc", "fc", ["fc"], "linear classifier"))
    return layers


# torchvision's GoogLeNet weights were trained with transform_input=True, i.e. on pixels scaled to
# [-1, 1]: feeding them mean 0.5 / std 0.5 inputs is the same thing without the extra layer.
@register_model(
    family="googlenet",
    input_size=(3, 224, 224),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    year=2014,
    head="fc",
    aliases=("inception_v1",),
    paper="Going Deeper with Convolutions (Szegedy et al.)",
    weights=Weights("googlenet-1378be20.pth", mean=(0.5,) * 3, std=(0.5,) * 3),
    stages=body_stages,
    layers=paper_layers,
    aux=AuxHeads(switch="aux_logits", modules=("aux1", "aux2"), classifier="fc2"),
    channels_last=True,  # float32 training 1.20-1.53x (AMD EPYC, benchmarks/train.md)
)
def googlenet(num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = False) -> GoogLeNet:
    return GoogLeNet(num_classes, in_channels, aux_logits=aux_logits)

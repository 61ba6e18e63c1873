"""VGG [Simonyan & Zisserman 2014], configurations A (11), B (13), D (16), E (19), with and without
batch normalization, in torchvision's layout (`features`, `avgpool` to 7x7, `classifier`)."""

import torch
import torch.nn as nn

from .layers import Layer, caffe_layers, sequential_stages
from .registry import IMAGENET_MEAN, IMAGENET_STD, Weights, register_model

# The paper's Table 1: numbers are 3x3 convolution widths, "M" a 2x2 max pooling.
CONFIGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, features: nn.Sequential, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def make_features(cfg: list, in_channels: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


def _vgg(cfg: str, batch_norm: bool, num_classes: int, in_channels: int) -> VGG:
    return VGG(make_features(CONFIGS[cfg], in_channels, batch_norm), num_classes)


def paper_layers(model: VGG) -> list[Layer]:
    """conv1_1..conv5_3, pool1..pool5, fc6..fc8."""
    return caffe_layers(model, by_stage=True)


# Stages: each convolution block up to its pooling layer (block1..block5), then fc1, fc2.
_VGG = dict(
    family="vgg",
    input_size=(3, 224, 224),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    year=2014,
    head="classifier.6",
    stages=sequential_stages,
    layers=paper_layers,
    paper="Very Deep Convolutional Networks for Large-Scale Image Recognition (Simonyan & Zisserman)",
)


@register_model(**_VGG, weights=Weights("vgg11-8a719046.pth"))
def vgg11(num_classes: int = 1000, in_channels: int = 3) -> VGG:
    return _vgg("A", False, num_classes, in_channels)


@register_model(**_VGG, weights=Weights("vgg11_bn-6002323d.pth"))
def vgg11_bn(num_classes: int = 1000, in_channels: int = 3) -> VGG:
    return _vgg("A", True, num_classes, in_channels)


@register_model(**_VGG, weights=Weights("vgg13-19584684.pth"))
def vgg13(num_classes: int = 1000, in_channels: int = 3) -> VGG:
    return _vgg("B", False, num_classes, in_channels)


@register_model(**_VGG, weights=Weights("vgg13_bn-abd245e5.pth"))
def vgg13_bn(num_classes: int = 1000, in_channels: int = 3) -> VGG:
    return _vgg("B", True, num_classes, in_channels)


@register_model(**_VGG, weights=Weights("vgg16-397923af.pth"))
def vgg16(num_classes: int = 1000, in_channels: int = 3) -> VGG:
    return _vgg("D", False, num_classes, in_channels)


@register_model(**_VGG, weights=Weights("vgg16_bn-6c64b313.pth"))
def vgg16_bn(num_classes: int = 1000, in_channels: int = 3) -> VGG:
    return _vgg("D", True, num_classes, in_channels)


@register_model(**_VGG, weights=Weights("vgg19-dcbb9e9d.pth"))
def vgg19(num_classes: int = 1000, in_channels: int = 3) -> VGG:
    return _vgg("E", False, num_classes, in_channels)


@register_model(**_VGG, weights=Weights("vgg19_bn-c79401a0.pth"))
def vgg19_bn(num_classes: int = 1000, in_channels: int = 3) -> VGG:
    return _vgg("E", True, num_classes, in_channels)

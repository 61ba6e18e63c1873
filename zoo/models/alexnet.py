"""AlexNet [Krizhevsky, Sutskever, Hinton 2012] and ZFNet [Zeiler & Fergus 2013].

- `alexnet`: torchvision's single-tower layout (64-192-384-256-256 filters), so the published ImageNet
  checkpoints load as they are.
- `alexnet_v1`: the paper's 96-256-384-384-256 filters with local response normalization after the first
  two convolutions, on 227x227 inputs (CONV1: 96 11x11 filters, stride 4 -> 55x55x96, 34,944 parameters).
  The paper split the filters over two GPUs; here they are one tower.
- `zfnet`: AlexNet with CONV1 7x7 stride 2 and CONV3/4/5 of 512, 1024, 512 filters (as the Stanford
  CS231n / CS-671 lecture gives it), 224x224 inputs, feature maps 110-55-26-13-13-13-6 as in the paper.
"""

import torch
import torch.nn as nn

from .layers import caffe_layers, sequential_stages
from .registry import IMAGENET_MEAN, IMAGENET_STD, Weights, register_model


class AlexNet(nn.Module):
    """`features` (convolutions), `avgpool` (to 6x6), `classifier` (dropout + three linear layers)."""

    def __init__(self, features: nn.Sequential, last_channels: int, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(last_channels * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _lrn() -> nn.LocalResponseNorm:
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)  # the paper's constants


# Stages: each convolution block up to its pooling layer (block1..), then fc1, fc2; the paper's layers:
# conv1..conv5, pool1, pool2, pool5, fc6..fc8 (the Caffe names the papers' figures use).
_ALEX = dict(
    family="alexnet",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    head="classifier.6",
    stages=sequential_stages,
    layers=caffe_layers,
)


@register_model(
    input_size=(3, 224, 224),
    year=2012,
    **_ALEX,
    weights=Weights("alexnet-owt-7be5be79.pth"),
    # channels_last: 0.71x to 1.20x over five measurements of float32 training (AMD EPYC), about 1.0x: off
    paper="ImageNet Classification with Deep Convolutional Neural Networks (Krizhevsky et al.), torchvision layout",
)
def alexnet(num_classes: int = 1000, in_channels: int = 3) -> AlexNet:
    features = nn.Sequential(
        nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )
    return AlexNet(features, 256, num_classes)


@register_model(
    input_size=(3, 227, 227),
    year=2012,
    **_ALEX,
    weights=None,
    paper="ImageNet Classification with Deep Convolutional Neural Networks "
    "(Krizhevsky et al.), the paper's layout with LRN",
)
def alexnet_v1(num_classes: int = 1000, in_channels: int = 3) -> AlexNet:
    features = nn.Sequential(
        nn.Conv2d(in_channels, 96, kernel_size=11, stride=4),  # CONV1: 55x55x96
        nn.ReLU(inplace=True),
        _lrn(),
        nn.MaxPool2d(kernel_size=3, stride=2),  # 27x27x96
        nn.Conv2d(96, 256, kernel_size=5, padding=2),  # CONV2: 27x27x256
        nn.ReLU(inplace=True),
        _lrn(),
        nn.MaxPool2d(kernel_size=3, stride=2),  # 13x13x256
        nn.Conv2d(256, 384, kernel_size=3, padding=1),  # CONV3
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, kernel_size=3, padding=1),  # CONV4
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),  # CONV5
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),  # 6x6x256
    )
    return AlexNet(features, 256, num_classes)


@register_model(
    input_size=(3, 224, 224),
    year=2013,
    **{**_ALEX, "family": "zfnet"},
    weights=None,
    paper="Visualizing and Understanding Convolutional Networks (Zeiler & Fergus)",
)
def zfnet(num_classes: int = 1000, in_channels: int = 3) -> AlexNet:
    features = nn.Sequential(
        nn.Conv2d(in_channels, 96, kernel_size=7, stride=2, padding=1),  # CONV1: 110x110x96
        nn.ReLU(inplace=True),
        _lrn(),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),  # 55x55
        nn.Conv2d(96, 256, kernel_size=5, stride=2),  # CONV2: 26x26x256
        nn.ReLU(inplace=True),
        _lrn(),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),  # 13x13
        nn.Conv2d(256, 512, kernel_size=3, padding=1),  # CONV3
        nn.ReLU(inplace=True),
        nn.Conv2d(512, 1024, kernel_size=3, padding=1),  # CONV4
        nn.ReLU(inplace=True),
        nn.Conv2d(1024, 512, kernel_size=3, padding=1),  # CONV5
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),  # 6x6x512
    )
    return AlexNet(features, 512, num_classes)

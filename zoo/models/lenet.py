"""LeNet-5 [LeCun, Bottou, Bengio, Haffner 1998]: CONV-POOL-CONV-POOL-FC-FC-FC.

Two 5x5 convolutions of 6 and 16 filters, each followed by 2x2 pooling, then 120-84-N fully connected.
The paper's network reads 32x32 images; MNIST's 28x28 digits are padded by 2 pixels on each side, as the
paper padded them. Modern choices where the paper's are obsolete: ReLU instead of scaled tanh and max
pooling instead of trainable sub-sampling; the parameter count (61,706 for 10 classes) is the paper's
layout with plain biases.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import Layer, sequential_blocks, sequential_stages
from .registry import MNIST_MEAN, MNIST_STD, register_model


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),  # C1: 32x32 -> 6@28x28
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # S2: 6@14x14
            nn.Conv2d(6, 16, kernel_size=5),  # C3: 16@10x10
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # S4: 16@5x5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),  # C5
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),  # F6
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),  # output
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == 28 and x.shape[-2] == 28:  # MNIST digits: pad to the paper's 32x32
            x = F.pad(x, (2, 2, 2, 2))
        return self.classifier(self.features(x))


def paper_layers(model: LeNet5) -> list[Layer]:
    """C1, S2, C3, S4, C5, F6, output (the paper's Fig. 2)."""
    blocks = sequential_blocks(model.features, "features") + sequential_blocks(model.classifier, "classifier")
    labels = ["C1", "S2", "C3", "S4", "C5", "F6", "output"]
    notes = [
        "convolution, 6 feature maps of 5x5 filters",
        "sub-sampling (2x2 max pooling)",
        "convolution, 16 feature maps of 5x5 filters",
        "sub-sampling (2x2 max pooling)",
        "fully connected, 120 units (a 5x5 convolution in the paper)",
        "fully connected, 84 units",
        "class scores",
    ]
    return [
        Layer(mods[0], labels[i] if i < len(labels) else mods[0], mods, notes[i] if i < len(notes) else "")
        for i, (_, mods) in enumerate(blocks)
    ]


@register_model(
    family="lenet",
    input_size=(1, 28, 28),
    mean=MNIST_MEAN,
    std=MNIST_STD,
    paper="Gradient-based learning applied to document recognition (LeCun et al.)",
    year=1998,
    num_classes=10,
    head="classifier.5",
    aliases=("lenet",),
    weights=None,
    stages=sequential_stages,
    layers=paper_layers,
    channels_last=True,  # float32 training 1.28-1.98x (AMD EPYC, benchmarks/train.md)
    # The full MNIST (`--data mnist` or an IDX directory): 99.40 % mean (99.36-99.43) on the held-out last
    # 10,000 over 3 seeds; 10 epochs miss 99.3 % on one seed, batch 128 at lr 0.1 on another, and no
    # augmentation costs 0.1-0.2 points (the ablation: benchmarks/train.md). Every option written out.
    recipes={
        "mnist": {
            "epochs": 15,
            "batch_size": 64,
            "lr": 0.05,
            "schedule": "cosine",
            "weight_decay": 5e-4,
            "label_smoothing": 0.1,
            "augment": "rotate=10,shift=0.1,zoom=0.1",
        }
    },
)
def lenet5(num_classes: int = 10, in_channels: int = 1) -> LeNet5:
    return LeNet5(num_classes, in_channels)

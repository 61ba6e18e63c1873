"""What a network's parts are called: its layers as the paper names them (`zoo visualize`) and its stages
(freezing and layer-wise learning rates). Each family declares both beside its `@register_model`; this
module holds the vocabulary and the pieces the sequential families (LeNet, AlexNet, ZFNet, VGG) share.

A `Layer` is a block of modules as a reader of the paper counts it: a convolution with its batch norm,
ReLU and LRN ("conv1"), a pooling layer ("S2", "pool1"), a fully connected layer with its ReLU ("fc6"),
a residual block ("conv2_x, block 1"), an inception module ("inception (3a)") or one of its branches
("inception (3a) · 3x3"). Its activation is the output of the block's last module.

A stage is (name, modules): a contiguous part of the body that freezes as one, in forward order. The spec
appends the classifier head (and any auxiliary classifiers) as the last stage, "head".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
POOL = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
FOLLOWERS = (nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.LocalResponseNorm)  # fold into the block before

Stage = tuple[str, list[nn.Module]]


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


def sequential_blocks(seq: nn.Sequential, prefix: str) -> list[tuple[str, list[str]]]:
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


def caffe_layers(model: nn.Module, *, by_stage: bool = False) -> list[Layer]:
    """`features` + `classifier` under the Caffe names the papers' figures use: conv1..convN and pool
    numbered after the convolution before it (AlexNet, ZFNet), or conv{stage}_{i} and pool{stage} with
    `by_stage` (VGG); then fc6, fc7, fc8."""
    layers = []
    stage, conv_in_stage, conv = 1, 0, 0
    for kind, mods in sequential_blocks(model.features, "features"):
        if kind == "conv":
            conv += 1
            conv_in_stage += 1
            label = f"conv{stage}_{conv_in_stage}" if by_stage else f"conv{conv}"
        else:
            label = f"pool{stage if by_stage else conv}"
            stage, conv_in_stage = stage + 1, 0
        layers.append(Layer(mods[0], label, mods))
    for fc, (_, mods) in enumerate(sequential_blocks(model.classifier, "classifier"), start=6):
        layers.append(Layer(mods[0], f"fc{fc}", mods))
    return layers


def sequential_stages(model: nn.Module) -> list[Stage]:
    """`features` split into convolution blocks at each pooling layer (block1, ...), then one stage per
    fully connected layer of `classifier` before its last (fc1, ...); the last one is the head."""
    body: list[Stage] = []
    block: list[nn.Module] = []
    for m in model.features:
        block.append(m)
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            body.append((f"block{len(body) + 1}", block))
            block = []
    if block:
        body.append((f"block{len(body) + 1}", block))
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)][:-1]
    return body + [(f"fc{j + 1}", [m]) for j, m in enumerate(fcs)]

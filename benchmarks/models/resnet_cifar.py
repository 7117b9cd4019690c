"""CIFAR ResNets (He et al. 2016) with option-A shortcuts, as pruned by Li et al. 2016, and the
pre-activation variant (PreResNet) used by "Rethinking the Value of Network Pruning".

Depth 6n+2: a 3x3 stem conv of 16 channels, three stages of n basic blocks with 16/32/64
channels (stride 2 at the start of stages 2 and 3), global average pooling, a linear classifier.
Option A: a downsampling shortcut takes every other pixel and zero-pads the new channels, so it
has no parameters (Li et al. prune only the first conv of each block for this reason).
Layer numbering follows Li et al.: the stem conv is layer 1, block b's convs are 2b+2 and 2b+3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import ModelSpec
from harness.registry import MODELS


class ShortcutA(nn.Module):
    """Parameter-free downsampling shortcut: subsample by 2 and zero-pad the channels."""

    def __init__(self, in_planes: int, planes: int) -> None:
        super().__init__()
        self.pad = planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        half = self.pad // 2
        return F.pad(x, (0, 0, 0, 0, half, self.pad - half))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = (
            ShortcutA(in_planes, planes) if stride != 1 or in_planes != planes else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """BN-ReLU-conv ordering (He et al., Identity Mappings)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut: nn.Module = (
            ShortcutA(in_planes, planes) if stride != 1 or in_planes != planes else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.shortcut(x)


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3,
                 preact: bool = False, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (8, 14, 20, 56, 110...), got {depth}")
        n = (depth - 2) // 6
        block = PreActBlock if preact else BasicBlock
        self.preact = preact
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers: list[nn.Sequential] = []
        in_planes = widths[0]
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(block(in_planes, w, 2 if (i > 0 and j == 0) else 1))
                in_planes = w
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.bn_final = nn.BatchNorm2d(in_planes) if preact else nn.Identity()
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def stages(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = x if self.preact else F.relu(self.bn1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.preact:
            x = F.relu(self.bn_final(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def _builder(depth: int, preact: bool):  # type: ignore[no-untyped-def]
    def build(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
        return CifarResNet(depth, num_classes, in_channels, preact)

    return build


for _depth in (8, 14, 20, 32, 44, 56, 110):
    MODELS.register()(ModelSpec(f"resnet-{_depth}", _builder(_depth, False), (3, 32, 32),
                                description=f"CIFAR ResNet-{_depth}, option-A shortcuts "
                                            "(He et al. 2016; Li et al. 2016)"))
for _depth in (56, 110):
    MODELS.register()(ModelSpec(f"preresnet-{_depth}", _builder(_depth, True), (3, 32, 32),
                                description=f"CIFAR pre-activation ResNet-{_depth} "
                                            "(Rethinking the Value of Network Pruning)"))

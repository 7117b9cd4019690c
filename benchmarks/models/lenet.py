"""LeNet-300-100 and LeNet-5 with the layer sizes of Han et al. 2015 (Caffe variants).

Layers are plain named attributes so that pruning tables read `fc1`, `conv2`, ... as in the paper.
ReLU follows every hidden layer (Caffe's LeNet-5 has none after the convs; with ReLU it trains
faster and prunes the same way).
"""

from __future__ import annotations

import torch
from torch import nn

from harness.api import ModelSpec
from harness.registry import MODELS


class LeNet300100(nn.Module):
    """fc 784-300-100-10."""

    def __init__(self, num_classes: int = 10, in_features: int = 784) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_features, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.fc1(self.flatten(x)))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    """conv 20@5x5, pool, conv 50@5x5, pool, fc 800-500-10."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.relu(self.fc1(self.flatten(x)))
        return self.fc2(x)


MODELS.register()(
    ModelSpec(
        "lenet-300-100", LeNet300100, (1, 28, 28), description="Han et al. MLP: fc 784-300-100-10"
    )
)
MODELS.register()(
    ModelSpec(
        "lenet-5", LeNet5, (1, 28, 28), description="Han et al. LeNet-5: conv20-conv50-fc500-fc10"
    )
)

"""A user's own model module, for `tests/test_own_model.py`: referenced from a suite as
`own_nets:tiny_cnn` (this folder on sys.path / PYTHONPATH), as a newcomer's code would be."""

from __future__ import annotations

from torch import nn


def tiny_cnn(num_classes: int, in_channels: int) -> nn.Module:
    """A small conv net sized by the harness (classes and channels from the dataset)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))


def not_a_module() -> str:
    """Returns no nn.Module: a reference to it must be a one-line error."""
    return "not a network"


def three_outputs(in_channels: int) -> nn.Module:
    """Ignores the dataset's class count: always 3 scores (a net built for another folder)."""
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))


def by_kwargs(**kw: object) -> nn.Module:
    """Takes what it is given by keyword: num_classes and in_channels among it."""
    return tiny_cnn(int(kw["num_classes"]), int(kw["in_channels"]))  # type: ignore[call-overload]

"""Shared shape of the in-memory datasets: read once per split, then serve tensors."""

from __future__ import annotations

from torch.utils.data import Subset, TensorDataset

from harness.api import calibration_subset


class InMemoryDataset:
    """Subclasses implement `_read(train)`; train/test/calibration come from here."""

    def __init__(self) -> None:
        self._cache: dict[bool, TensorDataset] = {}

    def _read(self, train: bool) -> TensorDataset:
        raise NotImplementedError

    def _load(self, train: bool) -> TensorDataset:
        if train not in self._cache:
            self._cache[train] = self._read(train)
        return self._cache[train]

    def train(self) -> TensorDataset:
        return self._load(True)

    def test(self) -> TensorDataset:
        return self._load(False)

    def calibration(self, n: int) -> Subset:
        """The first `n` training items in a fixed shuffled order (seed 0)."""
        return calibration_subset(self.train(), n)

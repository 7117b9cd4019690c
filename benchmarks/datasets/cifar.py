"""CIFAR-10 through torchvision's own reader (the `cifar-10-batches-py` pickle layout).

torchvision checks each batch file's MD5 against the official archive; here only presence is
checked (data and meta), so that subsets or re-packed files in the same format (and the tiny
files the tests write) load too. `--download` lets torchvision fetch the archive where the network allows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from harness.benchmarks.datasets._base import InMemoryDataset
from harness.errors import UsageError
from harness.registry import DATASETS

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def _reader() -> Any:
    import torchvision.datasets as tvd

    class CIFAR10Files(tvd.CIFAR10):
        def _check_integrity(self) -> bool:
            root = Path(self.root) / self.base_folder
            return all((root / name).exists() for name, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:  # the class names, without the archive's MD5 check
            import pickle

            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return CIFAR10Files


@DATASETS.register()
class CIFAR10(InMemoryDataset):
    """CIFAR-10, 50k/10k 32x32 colour images of 10 classes (torchvision layout)."""

    name = "cifar10"
    num_classes = 10
    input_shape = (3, 32, 32)
    where = ("put torchvision's CIFAR-10 folder 'cifar-10-batches-py' under DATA_DIR "
             "(--data-dir), or pass --download where the network allows")

    def __init__(self, data_dir: Path | str | None = None, download: bool = False) -> None:
        super().__init__()
        self.data_dir = Path(data_dir or Path.home() / ".cache" / "compressmark" / "data")
        self.download = download

    def _read(self, train: bool) -> TensorDataset:
        cls = _reader()
        folder = self.data_dir / cls.base_folder
        if not self.download and not (folder / "test_batch").exists():
            raise UsageError(f"dataset '{self.name}' not found under {self.data_dir}: "
                             f"{self.where}")
        ds = cls(root=str(self.data_dir), train=train, download=self.download)
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255.0)
        x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
        return TensorDataset(x.contiguous(), torch.as_tensor(ds.targets).long())

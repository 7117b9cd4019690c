"""CIFAR-10 from torchvision's `cifar-10-batches-py` layout, read without unpickling code.

The batch files are pickles (dicts of a uint8 array, labels and names). torchvision reads them
with a plain `pickle.load`, which runs whatever a planted file asks; here a restricted unpickler
admits only what those files hold: builtin containers and numpy's own array reconstruction
(numpy 1 and 2 module paths); anything else is a one-line error naming the file. Only the
files' presence is checked (not the archive's MD5s), so subsets or re-packed files in the same
format (and the tiny files the tests write) load too. `--download` lets torchvision fetch the
archive where the network allows.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from harness.benchmarks.datasets._base import InMemoryDataset
from harness.errors import UsageError
from harness.registry import DATASETS

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


FOLDER = "cifar-10-batches-py"
TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST = ("test_batch",)
# (module, name) pairs a CIFAR batch pickle may name: numpy's array reconstruction (written by
# numpy 1 as numpy.core, by numpy 2 as numpy._core) and the bytes codec of protocol-2 pickles
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR batch")
        if module == "numpy.core.multiarray" and hasattr(np, "_core"):
            module = "numpy._core.multiarray"  # numpy 2 moved it (numpy.core is a shim)
        return super().find_class(module, name)


def read_batch(path: Path) -> dict[str, Any]:
    """One batch (or meta) file as a dict with str keys; code in it is refused, not run."""
    try:
        with open(path, "rb") as f:
            raw = _BatchUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise UsageError(f"{path} is not a CIFAR-10 batch file: {exc}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path} is not a CIFAR-10 batch file: holds {type(raw).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in raw.items()}


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
        folder = self.data_dir / FOLDER
        names = TRAIN if train else TEST
        if self.download and not all((folder / n).exists() for n in (*TRAIN, *TEST)):
            import torchvision.datasets as tvd
            from torchvision.datasets.utils import download_and_extract_archive

            download_and_extract_archive(tvd.CIFAR10.url, str(self.data_dir),
                                         filename=tvd.CIFAR10.filename, md5=tvd.CIFAR10.tgz_md5)
        missing = [n for n in names if not (folder / n).exists()]
        if missing:
            raise UsageError(f"dataset '{self.name}' not found under {self.data_dir} "
                             f"({missing[0]} is missing): {self.where}")
        batches = [read_batch(folder / n) for n in names]
        data = np.concatenate([np.asarray(b["data"], np.uint8) for b in batches])
        labels = [int(y) for b in batches for y in b.get("labels", b.get("fine_labels", []))]
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
            raise UsageError(f"{folder}: batches hold {data.shape} images and {len(labels)} "
                             "labels, not N x 3072 with one label each")
        x = torch.from_numpy(data.reshape(-1, 3, 32, 32)).float().div_(255.0)
        x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
        return TensorDataset(x.contiguous(), torch.as_tensor(labels).long())

"""MNIST and Fashion-MNIST through torchvision's own readers (idx files, torchvision layout).

The idx files are looked for, in order, in `DATA_DIR/<Class>/raw`, `DATA_DIR` itself and, only
when no `--data-dir` was given, the system folders of Debian's packages (e.g.
`dataset-fashion-mnist`): an explicit `--data-dir` means that folder only, so a run never
silently reads other data than the user pointed at. Gzipped files are unpacked into
`DATA_DIR/<Class>/raw` so torchvision reads them as if it had downloaded them; nothing is created
in DATA_DIR unless the data is there. Nothing is downloaded unless the user asks (`--download`).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from harness.benchmarks.datasets._base import InMemoryDataset
from harness.errors import UsageError
from harness.registry import DATASETS

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class IdxDataset(InMemoryDataset):
    """Shared loader: normalised float tensors held in memory (the sets are small)."""

    name = ""
    tv_class = ""
    num_classes = 10
    input_shape = (1, 28, 28)
    system_dirs: tuple[str, ...] = ()
    where = ""
    mean, std = 0.5, 0.5

    def __init__(
        self,
        data_dir: Path | str | None = None,
        download: bool = False,
        resize: int | None = None,
    ) -> None:
        super().__init__()
        self.explicit = data_dir is not None  # --data-dir: that folder only, no system copy
        self.data_dir = Path(data_dir or Path.home() / ".cache" / "compressmark" / "data")
        self.download = download
        self.resize = resize
        if resize:
            self.input_shape = (1, resize, resize)

    def _raw_dir(self) -> Path:
        return self.data_dir / self.tv_class / "raw"

    def _stage(self) -> bool:
        """Make `DATA_DIR/<Class>/raw` hold the four uncompressed idx files; True if it does."""
        raw = self._raw_dir()
        if all((raw / f).exists() for f in FILES):
            return True
        system = () if self.explicit else tuple(map(Path, self.system_dirs))
        for src in (raw, self.data_dir, *system):
            found = {f: _find(src, f) for f in FILES}
            if all(found.values()):
                raw.mkdir(parents=True, exist_ok=True)
                for f, path in found.items():
                    if path is not None and path != raw / f:
                        _unpack(path, raw / f)
                return True
        return False

    def _read(self, train: bool) -> TensorDataset:
        import torchvision.datasets as tvd

        if not self._stage() and not self.download:
            raise UsageError(self._missing())
        ds = getattr(tvd, self.tv_class)(
            root=str(self.data_dir), train=train, download=self.download
        )
        x = ds.data.unsqueeze(1).float().div_(255.0)
        if self.resize:
            x = torch.nn.functional.interpolate(
                x, size=(self.resize, self.resize), mode="bilinear", align_corners=False
            )
        x = (x - self.mean) / self.std
        return TensorDataset(x.contiguous(), ds.targets.long())


    def _missing(self, download: bool = True) -> str:
        """One line: where the idx files were looked for and how to get them (`download`:
        the command offers --download)."""
        if not self.explicit:
            return f"dataset '{self.name}' not found under {self.data_dir}: {self.where}"
        system = [d for d in self.system_dirs if Path(d).is_dir()]
        return (f"dataset '{self.name}' not found in --data-dir {self.data_dir} (looked in "
                f"{self._raw_dir()} and {self.data_dir} for {', '.join(FILES)}, plain or .gz): "
                "put the idx files there" + (", or pass --download" if download else "")
                + (f", or leave out --data-dir to read the system copy in {system[0]}"
                   if system else ""))


def _find(folder: Path, stem: str) -> Path | None:
    for cand in (folder / stem, folder / f"{stem}.gz"):
        if cand.exists():
            return cand
    return None


def _unpack(src: Path, dst: Path) -> None:
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)


@DATASETS.register()
class FashionMNIST(IdxDataset):
    """Fashion-MNIST, 60k/10k 28x28 grey images of 10 clothing classes (Zalando)."""

    name = "fashion-mnist"
    tv_class = "FashionMNIST"
    system_dirs = ("/usr/share/datasets/fashion-mnist",)
    mean, std = 0.2860, 0.3530
    where = (
        "install Debian's 'dataset-fashion-mnist' (apt-get install dataset-fashion-mnist), "
        "or put the idx files in DATA_DIR/FashionMNIST/raw, or pass --download"
    )


@DATASETS.register()
class MNIST(IdxDataset):
    """MNIST handwritten digits, 60k/10k 28x28 grey images."""

    name = "mnist"
    tv_class = "MNIST"
    system_dirs = ("/usr/share/datasets/mnist",)
    mean, std = 0.1307, 0.3081
    where = "put the idx files in DATA_DIR/MNIST/raw (--data-dir), or pass --download"

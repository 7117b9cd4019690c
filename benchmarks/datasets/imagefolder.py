"""The user's own images: `<root>/train/<class>/*.png` and `<root>/val/<class>/*.png`.

Read with torchvision's `ImageFolder` (its class order: folder names sorted) and PIL, decoded
once into memory tensors like the other datasets (the sets a benchmark uses are small):
optionally resized (shorter side) and centre-cropped, converted to grey or RGB, normalised with
the given mean and std. `root` comes from the suite (`dataset_options = { root = "..." }`,
relative to the suite file's folder) or from `--data-dir` (which wins when both are given).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from harness.benchmarks.datasets._base import InMemoryDataset
from harness.errors import UsageError
from harness.registry import DATASETS

LAYOUT = "<root>/train/<class>/*.png and <root>/val/<class>/*.png"
SPLITS = {True: "train", False: "val"}


@DATASETS.register()
class ImageFolderDataset(InMemoryDataset):
    """Your own images: <root>/train/<class>/*.png, <root>/val/<class>/*.png (torchvision ImageFolder)."""

    name = "imagefolder"
    task = "classify"
    path_options = ("root",)  # relative to the suite file's folder (harness/suite.py)
    where = f"make the folder ({LAYOUT}), e.g. python -m harness.benchmarks.make_imagefolder DIR"

    def __init__(self, data_dir: Path | str | None = None, download: bool = False,
                 root: str | None = None, resize: int | None = None, crop: int | None = None,
                 channels: int = 3, mean: list[float] | None = None,
                 std: list[float] | None = None) -> None:
        super().__init__()
        if root is None and data_dir is None:
            raise UsageError("dataset 'imagefolder' needs its folder: dataset_options = "
                             f"{{ root = \"DIR\" }} in the suite or --data-dir DIR ({LAYOUT})")
        # --data-dir (the command line) wins over the suite's root
        self.root = Path(data_dir if data_dir is not None else root).expanduser()  # type: ignore[arg-type]
        if channels not in (1, 3):
            raise UsageError(f"dataset 'imagefolder': channels must be 1 (grey) or 3 (RGB), "
                             f"not {channels}")
        for label, size in (("resize", resize), ("crop", crop)):
            if size is not None and size < 1:
                raise UsageError(f"dataset 'imagefolder': {label} must be >= 1, not {size}")
        self.resize, self.crop, self.channels = resize, crop, channels
        self.mean = list(mean) if mean is not None else [0.5] * channels
        self.std = list(std) if std is not None else [0.5] * channels
        for label, vals in (("mean", self.mean), ("std", self.std)):
            if len(vals) != channels:
                raise UsageError(f"dataset 'imagefolder': {label} needs {channels} value(s) "
                                 f"(one per channel), not {vals}")
        if min(self.std) <= 0:
            raise UsageError(f"dataset 'imagefolder': std must be > 0, not {self.std}")
        self._classes: list[str] | None = None
        self._shape: tuple[int, int, int] | None = None
        self._fingerprint: str | None = None

    # ---- layout checks: cheap, before anything is decoded ----------------------------------

    def _folder(self, train: bool) -> Any:
        """torchvision's ImageFolder of one split, or a one-line UsageError naming the layout."""
        from torchvision.datasets import ImageFolder

        split = self.root / SPLITS[train]
        if not split.is_dir():
            raise UsageError(f"dataset 'imagefolder': no folder {split} (expected {LAYOUT})")
        try:
            return ImageFolder(str(split))
        except (FileNotFoundError, RuntimeError) as exc:  # no class folders / no images
            raise UsageError(f"dataset 'imagefolder': {split} holds no images in class folders "
                             f"({' '.join(str(exc).split())[:120]}; expected {LAYOUT})") from None

    @property
    def classes(self) -> list[str]:
        """Class names (folder names, sorted); train and val must have the same ones."""
        if self._classes is None:
            tr, va = self._folder(True).classes, self._folder(False).classes
            if tr != va:
                only = sorted(set(tr) ^ set(va))
                raise UsageError(f"dataset 'imagefolder': train/ and val/ under {self.root} "
                                 f"have different classes (e.g. {', '.join(only[:3])} in only "
                                 f"one; expected {LAYOUT} with the same class folders)")
            if len(tr) < 2:
                raise UsageError(f"dataset 'imagefolder': {self.root} holds {len(tr)} class "
                                 f"folder ({', '.join(tr)}): a classifier needs at least 2 "
                                 f"(expected {LAYOUT})")
            self._classes = tr
        return self._classes

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, H, W) of one decoded image: from the options, else the first image."""
        if self._shape is None:
            if self.crop:
                hw = (self.crop, self.crop)
            else:
                folder = self._folder(True)
                hw = tuple(self._transform()(_open(folder.samples[0][0])).shape[1:])
            self._shape = (self.channels, *hw)  # type: ignore[assignment]
        return self._shape  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """Every file's name, label and sha256 in both splits: part of the baseline's cache
        key, so an edited folder retrains instead of reusing a stale baseline, and the same
        images at another path (a copy, a Ray node's own) key alike. Content, not sizes and
        modification times: images swapped between classes with their sizes and mtimes kept
        reused the old baseline. Reading the bytes costs less than the decoding every run
        does anyway (computed once per process: every cell's key asks for it)."""
        if self._fingerprint is not None:
            return self._fingerprint
        h = hashlib.sha256()
        for train in (True, False):
            for path, label in self._folder(train).samples:
                with open(path, "rb") as f:
                    content = hashlib.file_digest(f, "sha256").hexdigest()
                h.update(f"{Path(path).relative_to(self.root).as_posix()}|{label}|{content}\n"
                         .encode())
        self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    # ---- decoding ---------------------------------------------------------------------------

    def _transform(self) -> Any:
        from torchvision import transforms as T

        steps: list[Any] = [T.Grayscale(1) if self.channels == 1 else T.Lambda(_rgb)]
        if self.resize:
            steps.append(T.Resize(self.resize, antialias=True))
        if self.crop:
            steps.append(T.CenterCrop(self.crop))
        steps.append(T.ToTensor())
        return T.Compose(steps)

    def _read(self, train: bool) -> TensorDataset:
        _ = self.classes  # both splits exist and agree
        folder = self._folder(train)
        tf = self._transform()
        images, labels = [], []
        for path, label in folder.samples:
            x = tf(_open(path))
            if x.shape[1:] != self.input_shape[1:]:
                raise UsageError(f"dataset 'imagefolder': {path} is {tuple(x.shape[1:])} after "
                                 f"resize/crop, not {self.input_shape[1:]}: set "
                                 "dataset_options crop (or resize) so all images share a size")
            images.append(x)
            labels.append(label)
        # ImageFolder lists class by class; the harness takes the first N items for
        # `train_samples` and `eval_samples`, so items are held in a fixed shuffled order
        # (seed 0): any first N is a random mix of all classes
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
        x = torch.stack(images)[order]
        mean = torch.tensor(self.mean)[:, None, None]
        std = torch.tensor(self.std)[:, None, None]
        return TensorDataset(((x - mean) / std).contiguous(), torch.tensor(labels)[order].long())


def _open(path: str) -> Any:
    """One image as PIL gives it, 16-bit grey scaled to 8 bits by its real range; an image
    PIL cannot read, or a 32-bit integer or float one (no range to scale by), is one line.
    torchvision's own loader converts every image to RGB, which clips 16-bit grey at 255:
    everything above 255 of 65535 became white."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            image = Image.open(f)
            image.load()
    except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
        raise UsageError(f"dataset 'imagefolder': cannot read {path} as an image "
                         f"({type(exc).__name__}): remove or replace the file") from None
    if image.mode.startswith("I;16"):
        import numpy as np

        grey = np.asarray(image, dtype=np.float64) / 65535.0 * 255.0
        return Image.fromarray(np.rint(grey).astype(np.uint8), "L")
    if image.mode in ("I", "F"):
        kind = "32-bit integer" if image.mode == "I" else "floating-point"
        raise UsageError(f"dataset 'imagefolder': {path} is a {kind} image (PIL mode "
                         f"{image.mode}), which has no fixed range to scale: "
                         "convert the folder to 8- or 16-bit images")
    return image


def _rgb(image: Any) -> Any:
    return image.convert("RGB")

"""Detection datasets, held as tensors: images (N, C, H, W) and padded targets (N, M, 6) with
rows (label, x1, y1, x2, y2, difficult) in pixels, label -1 for padding.

- `voc2007`: PASCAL VOC 2007 through torchvision's VOCDetection reader (VOCdevkit layout:
  JPEGImages, Annotations XML, ImageSets/Main), 20 classes, `difficult` flags kept; images are
  resized to a square `size` and boxes scaled with them. The XML's boxes are 1-based indices
  of the first and last pixel (the devkit's IoU adds 1 to widths); they are held continuous,
  (xmin - 1, ymin - 1, xmax, ymax) x scale, under which the plain IoU equals the devkit's +1
  IoU exactly (see harness/detection_metrics.py), so they are scored with pixel_inclusive off.
- `fashion-det`: scenes composed from real Fashion-MNIST items (1-4 per canvas, random scale
  and place, fixed seed; boxes are the items' ink extents), so detection runs here with no
  download. Train scenes use training items, test scenes test items. Boxes are continuous
  ink extents (last ink column + 1), like COCO's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from harness.benchmarks.datasets._base import InMemoryDataset
from harness.benchmarks.datasets.mnist import FashionMNIST
from harness.detection_metrics import iou
from harness.errors import UsageError
from harness.registry import DATASETS

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")
MAX_OBJECTS = 42  # VOC2007 has at most 42 boxes in one image


def targets_to_lists(targets: torch.Tensor) -> list[dict[str, np.ndarray]]:
    """Padded (N, M, 6) targets -> per image {boxes, labels, difficult}."""
    out = []
    for t in targets.numpy():
        t = t[t[:, 0] >= 0]
        out.append({"boxes": t[:, 1:5].astype(np.float64), "labels": t[:, 0].astype(np.int64),
                    "difficult": t[:, 5] > 0})
    return out


def _pad(rows: list[list[float]], m: int) -> np.ndarray:
    out = np.full((m, 6), -1.0, np.float32)
    if rows:
        out[: len(rows)] = np.asarray(rows[:m], np.float32)
    return out


@DATASETS.register()
class VOC2007(InMemoryDataset):
    """PASCAL VOC 2007 detection, 20 classes (VOCdevkit layout, torchvision reader)."""

    name = "voc2007"
    task = "detect"
    num_classes = 20
    where = ("put VOCdevkit/VOC2007 (JPEGImages, Annotations, ImageSets/Main) under DATA_DIR "
             "(--data-dir), or pass --download where the network allows")
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, data_dir: Path | str | None = None, download: bool = False,
                 size: int = 320, limit: int | None = None) -> None:
        super().__init__()
        self.data_dir = Path(data_dir or Path.home() / ".cache" / "compressmark" / "data")
        self.download = download
        self.size = size
        self.limit = limit
        self.input_shape = (3, size, size)

    def _read(self, train: bool) -> TensorDataset:
        import torchvision.datasets as tvd
        from torchvision.transforms.functional import pil_to_tensor, resize

        root = self.data_dir / "VOCdevkit" / "VOC2007"
        split = "trainval" if train else "test"
        if not self.download and not (root / "ImageSets" / "Main" / f"{split}.txt").exists():
            raise UsageError(f"dataset '{self.name}' ({split}) not found under "
                             f"{self.data_dir}: {self.where}")
        ds = tvd.VOCDetection(str(self.data_dir), year="2007", image_set=split,
                              download=self.download)
        n = len(ds) if self.limit is None else min(self.limit, len(ds))
        images = torch.empty((n, 3, self.size, self.size))
        targets = np.empty((n, MAX_OBJECTS, 6), np.float32)
        mean, std = torch.tensor(self.mean)[:, None, None], torch.tensor(self.std)[:, None, None]
        for i in range(n):
            img, ann = ds[i]
            w, h = img.size
            x = pil_to_tensor(img.convert("RGB")).float().div_(255.0)
            images[i] = (resize(x, [self.size, self.size], antialias=True) - mean) / std
            objs = ann["annotation"].get("object", [])
            rows = []
            for o in objs if isinstance(objs, list) else [objs]:
                b = o["bndbox"]
                sx, sy = self.size / w, self.size / h
                rows.append([VOC_CLASSES.index(o["name"]),
                             (float(b["xmin"]) - 1) * sx, (float(b["ymin"]) - 1) * sy,
                             float(b["xmax"]) * sx, float(b["ymax"]) * sy,
                             float(o.get("difficult", "0") == "1")])
            targets[i] = _pad(rows, MAX_OBJECTS)
        return TensorDataset(images, torch.from_numpy(targets))


@DATASETS.register()
class FashionDet(InMemoryDataset):
    """Scenes of 1-4 real Fashion-MNIST items with known boxes (detection without downloads)."""

    name = "fashion-det"
    task = "detect"
    num_classes = 10
    where = FashionMNIST.where
    max_objects = 4

    def __init__(self, data_dir: Path | str | None = None, download: bool = False,
                 size: int = 96, train_scenes: int = 6000, test_scenes: int = 1000,
                 seed: int = 0) -> None:
        super().__init__()
        self.items = FashionMNIST(data_dir=data_dir, download=download)
        self.size, self.seed = size, seed
        self.counts = {True: train_scenes, False: test_scenes}
        self.input_shape = (1, size, size)

    def _read(self, train: bool) -> TensorDataset:
        src = self.items.train() if train else self.items.test()
        pixels = src.tensors[0][:, 0] * self.items.std + self.items.mean  # back to [0, 1]
        labels = src.tensors[1]
        rng = np.random.default_rng(self.seed + (0 if train else 1))
        n, s = self.counts[train], self.size
        images = torch.zeros((n, 1, s, s))
        targets = np.empty((n, self.max_objects, 6), np.float32)
        for i in range(n):
            rows: list[list[float]] = []
            for _ in range(rng.integers(1, self.max_objects + 1)):
                box = self._place(rng, rows)
                if box is None:
                    continue
                k = int(rng.integers(len(labels)))
                x0, y0, side = box
                item = torch.nn.functional.interpolate(pixels[k][None, None], size=(side, side),
                                                       mode="bilinear", align_corners=False)[0, 0]
                region = images[i, 0, y0 : y0 + side, x0 : x0 + side]
                images[i, 0, y0 : y0 + side, x0 : x0 + side] = torch.maximum(region, item)
                ys, xs = np.nonzero(item.numpy() > 0.1)
                if len(xs) == 0:
                    continue
                rows.append([int(labels[k]), x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1,
                             y0 + ys.max() + 1, 0.0])
            targets[i] = _pad(rows, self.max_objects)
        images = (images - 0.5) / 0.5
        return TensorDataset(images.contiguous(), torch.from_numpy(targets))

    def _place(self, rng: Any, rows: list[list[float]]) -> tuple[int, int, int] | None:
        """A square spot of 24-44 px that overlaps no placed box by more than a third."""
        for _ in range(20):
            side = int(rng.integers(24, 45))
            x0, y0 = (int(v) for v in rng.integers(0, self.size - side, 2))
            box = np.array([x0, y0, x0 + side, y0 + side], float)
            if not rows:
                return x0, y0, side
            if iou(box, np.array([r[1:5] for r in rows], float)).max() < 0.33:
                return x0, y0, side
        return None

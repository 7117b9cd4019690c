"""Write a folder of PNGs in the `imagefolder` layout from Fashion-MNIST, for a first run of
`benchmarks/suites/imagefolder-example.toml` (or as a template of the layout your own images
need):

    python -m harness.benchmarks.make_imagefolder OUT [--per-class 30] [--val-per-class N]

writes OUT/train/<class>/<n>.png and OUT/val/<class>/<n>.png, the first images of each class
of Fashion-MNIST's training and test sets (read from Debian's `dataset-fashion-mnist`, or
`--data-dir` holding the idx files, like the `fashion-mnist` dataset). Class folders are named
by Fashion-MNIST's classes with a numeric prefix, so ImageFolder's sorted order is the original
label order.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

from harness.errors import UsageError


def _class_folders(names: list[str]) -> list[str]:
    """`0-t-shirt_top`, `1-trouser`, ...: file-system safe, sorted in label order."""
    return [f"{i}-{re.sub(r'[^a-z0-9]+', '_', n.lower()).strip('_')}" for i, n in enumerate(names)]


def write(out: Path, per_class: int, val_per_class: int, data_dir: Path | None = None) -> int:
    """Write the PNGs; return how many. Existing files of the same names are replaced."""
    from PIL import Image

    from harness.benchmarks.datasets.mnist import FashionMNIST

    ds = FashionMNIST(data_dir=data_dir)
    if not ds._stage():
        raise UsageError(ds._missing(download=False))
    import torchvision.datasets as tvd

    count = 0
    for split, train, n in (("train", True, per_class), ("val", False, val_per_class)):
        src = tvd.FashionMNIST(root=str(ds.data_dir), train=train, download=False)
        folders = _class_folders(list(src.classes))
        labels = src.targets.numpy()
        images = src.data.numpy()
        for c, folder in enumerate(folders):
            target = out / split / folder
            target.mkdir(parents=True, exist_ok=True)
            for j, idx in enumerate(np.flatnonzero(labels == c)[:n]):
                Image.fromarray(images[idx], mode="L").save(target / f"{j:05d}.png")
                count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder to write (train/ and val/ go under it)")
    p.add_argument("--per-class", type=int, default=30, help="training images per class")
    p.add_argument("--val-per-class", type=int, default=None,
                   help="validation images per class (default: half of --per-class, >= 10)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder with Fashion-MNIST's idx files (default: the Debian package's)")
    a = p.parse_args(argv)
    val = a.val_per_class if a.val_per_class is not None else max(10, a.per_class // 2)
    if a.per_class < 1 or val < 1:
        print("error: --per-class and --val-per-class must be >= 1", file=sys.stderr)
        return 2
    if a.out.exists() and not a.out.is_dir():
        print(f"error: {a.out} is a file, not a folder to write the images under",
              file=sys.stderr)
        return 2
    try:
        n = write(a.out, a.per_class, val, a.data_dir)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder that cannot be written
        print(f"error: cannot write under {a.out} ({type(exc).__name__}: {exc.strerror or exc})",
              file=sys.stderr)
        return 2
    print(f"wrote {n} PNGs under {a.out}/train and {a.out}/val (10 classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

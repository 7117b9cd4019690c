"""Shared fixtures: tiny datasets written in the real file formats, tiny suites, a CLI runner."""

from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    """Write an idx file (the MNIST format: magic, dims, big-endian uint8 data)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 images where class c lights a 7x7 block at a class-specific place, plus noise:
    learnable in a few steps, so tiny end-to-end runs reach real accuracy."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        r, col = 2 + 7 * (c // 4 % 3), 2 + 6 * (c % 4)
        images[i, r : r + 7, col : col + 7] = 255
    return images, labels


def write_mnist_like(folder: Path, n_train: int = 512, n_test: int = 256, gz: bool = False) -> None:
    xtr, ytr = synthetic_digits(n_train, 1)
    xte, yte = synthetic_digits(n_test, 2)
    write_idx(folder / "train-images-idx3-ubyte", xtr, gz)
    write_idx(folder / "train-labels-idx1-ubyte", ytr, gz)
    write_idx(folder / "t10k-images-idx3-ubyte", xte, gz)
    write_idx(folder / "t10k-labels-idx1-ubyte", yte, gz)


def write_cifar_like(root: Path, per_batch: int = 64, n_test: int = 128) -> None:
    """torchvision's `cifar-10-batches-py` layout: pickled dicts of uint8 rows and labels."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)

    def batch(n: int) -> dict[str, object]:
        labels = rng.integers(0, 10, n)
        data = rng.integers(0, 80, (n, 3, 32, 32)).astype(np.uint8)
        for i, c in enumerate(labels):  # a class-coloured square: learnable
            data[i, c % 3, 4 + 2 * c : 12 + 2 * c, 4:12] = 255
        return {"data": data.reshape(n, 3072), "labels": labels.tolist()}

    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per_batch)))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(n_test)))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))


VOC_OBJECT = """<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>
<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"""


def write_voc_like(root: Path, n_train: int = 12, n_test: int = 6) -> None:
    """VOCdevkit/VOC2007 with JPEGs, annotation XML and ImageSets/Main split files: coloured
    boxes of two classes (person, car) on 64x48 images; every third object is `difficult`."""
    from PIL import Image, ImageDraw

    base = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    names = []
    for i in range(n_train + n_test):
        name = f"{i:06d}"
        names.append(name)
        img = Image.new("RGB", (64, 48), (20, 20, 20))
        draw = ImageDraw.Draw(img)
        objects = []
        for k in range(int(rng.integers(1, 3))):
            x1, y1 = int(rng.integers(1, 30)), int(rng.integers(1, 20))
            x2, y2 = x1 + int(rng.integers(12, 30)), y1 + int(rng.integers(10, 25))
            cls = ("person", "car")[k % 2]
            draw.rectangle([x1, y1, x2, y2], fill=(230, 40, 40) if cls == "person" else (40, 40, 230))
            objects.append(VOC_OBJECT.format(name=cls, difficult=int(i % 3 == 0 and k == 0),
                                             x1=x1, y1=y1, x2=x2, y2=y2))
        img.save(base / "JPEGImages" / f"{name}.jpg", quality=95)
        (base / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>64</width>"
            f"<height>48</height><depth>3</depth></size>{''.join(objects)}</annotation>")
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(names[:n_train]) + "\n")
    (base / "ImageSets" / "Main" / "test.txt").write_text("\n".join(names[n_train:]) + "\n")


def write_imagefolder_like(root: Path, n_train: int = 120, n_val: int = 60) -> Path:
    """The `imagefolder` layout: learnable grey 28x28 PNGs (synthetic_digits) in
    root/train/<class>/ and root/val/<class>/."""
    from PIL import Image

    for split, n, seed in (("train", n_train, 1), ("val", n_val, 2)):
        images, labels = synthetic_digits(n, seed)
        for i, (img, c) in enumerate(zip(images, labels, strict=True)):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img, mode="L").save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding tiny MNIST (torchvision layout), gzipped Fashion-MNIST (flat, as
    Debian ships it), CIFAR-10 (torchvision pickle batches), VOC and an image folder."""
    d = tmp_path_factory.mktemp("data")
    write_mnist_like(d / "MNIST" / "raw")
    write_mnist_like(d, gz=True)  # flat gz files: the Debian layout, unpacked by the loader
    write_cifar_like(d)
    write_voc_like(d)
    write_imagefolder_like(d)
    return d


TINY_SUITE = """
name = "{name}"
description = "tiny test suite"
dataset = "mnist"
models = {models}
targets = ["onnxruntime-cpu"]

{methods}

[profiles.smoke]
train = {{ epochs = 2, lr = 0.05, batch_size = 64 }}
finetune = {{ epochs = 0.5, lr = 0.01, batch_size = 64 }}
eval_samples = 128
timing = {{ batch_sizes = [1, 8], iterations = 6, warmup = 1, rounds = 6, threads = 1 }}
"""

DEFAULT_METHODS = """
[[methods]]
name = "weight-level"
grid = { sparsity = [0.5] }

[[methods]]
name = "l1-filter"
grid = { ratio = [0.5] }
"""


def tiny_suite(folder: Path, name: str = "tiny", models: str = '["lenet-300-100"]',
               methods: str = DEFAULT_METHODS) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(TINY_SUITE.format(name=name, models=models, methods=methods))
    return path


def cells(db: Path) -> list[sqlite3.Row]:
    """Every stored cell row of a results store, oldest first."""
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    rows = con.execute("SELECT * FROM cells ORDER BY created, rowid").fetchall()
    con.close()
    return rows


def harness_bin() -> list[str]:
    exe = Path(sys.executable).parent / "harness"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "harness.cli"]


def hold_entry(folder: Path) -> subprocess.Popen[str]:
    """Another process using a cache entry (`cache.use`, as a sweep timing from it does),
    started and holding it when this returns; the caller kills it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from harness import cache; cache.use(Path(sys.argv[1]), print); print('held', "
         "flush=True); time.sleep(60)", str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: int = 600) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*harness_bin(), *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def outputs_on_cpu_targets(model, shape: tuple[int, ...], folder: Path, batch: int = 2,
                           x: np.ndarray | None = None, raw: bool = True):  # type: ignore[no-untyped-def]
    """Export `model`, run one batch (random unless `x`) on torch and on every installed CPU
    runtime, check each runtime agrees with torch (rtol 1e-3, atol 1e-3 x max |output|; with
    `raw` False the caller compares); yield the outputs."""
    import torch

    from harness.api import Artifact
    from harness.export import to_onnx
    from harness.registry import TARGETS

    if x is None:
        x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    art = Artifact(to_onnx(model, shape, folder / "m.onnx"), model, shape, want.shape[1:])
    for name in ("torch-cpu", "onnxruntime-cpu", "openvino-cpu"):
        target = TARGETS.get(name)()
        if target.available():
            continue
        got = target.prepare(art, len(x), 1, "fp32").run(x)[0]
        if raw:
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max(),
                                       err_msg=name)
        yield name, got, want


def have_fashion_mnist() -> bool:
    return FASHION_SYSTEM_DIR.is_dir() and any(FASHION_SYSTEM_DIR.iterdir())


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)

"""Your network on your images: torchvision MobileNetV3-Small at 64x64 on an image folder,
every method's speedup with its 95% CI on four targets (issue "your network, your data").

Writes an ImageFolder of Fashion-MNIST PNGs (`make_imagefolder`), a suite that names the model
by reference (`torchvision:mobilenet_v3_small`, no plugin), runs it through `harness run` on
onnxruntime-cpu, openvino-cpu, torch-cpu and torch-inductor (cells already in the store are
reused), and prints, per method, top-1 on each runtime and the speedup at batch 1 and batch N
with its CI and what it may claim (`harness.claims`):

    python -m harness.benchmarks.own_model [--work DIR] [--per-class 100] [--profile quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

TARGETS = ("onnxruntime-cpu", "openvino-cpu", "torch-cpu", "torch-inductor")

SUITE = """
name = "own-model-mobilenet64"
description = "torchvision:mobilenet_v3_small at 64x64 grey on an image folder (benchmark)"
dataset = "imagefolder"
dataset_options = {{ root = "{root}", resize = 64, crop = 64, channels = 1, mean = [0.286], std = [0.353] }}
models = ["torchvision:mobilenet_v3_small"]
targets = ["onnxruntime-cpu"]
seed = 0

[[methods]]
name = "l1-filter"
grid = {{ ratio = [0.5] }}

[[methods]]
name = "fpgm"
grid = {{ ratio = [0.5] }}

[[methods]]
name = "weight-level"
grid = {{ sparsity = [0.6] }}

[[methods]]
name = "low-rank"
grid = {{ rank_ratio = [0.5], mode = ["channel"] }}

[[methods]]
name = "weight-sharing"
grid = {{ bits = [4] }}

[[methods]]
name = "int8-ptq"

[[methods]]
name = "pipeline"
grid = {{ steps = [["l1-filter:ratio=0.5", "int8-ptq"]] }}

[profiles.quick]
train = {{ epochs = 3, lr = 0.001, optimizer = "adam", batch_size = 64, milestones = [0.67] }}
finetune = {{ epochs = 1, lr = 0.005, momentum = 0.9, batch_size = 64, train_samples = 1000 }}
eval_samples = 500
timing = {{ batch_sizes = [1, 32], iterations = 208, warmup = 5, rounds = 16, threads = 2, max_seconds = 2.0 }}
"""


def report(store: Path, suite: str) -> str:
    """One line per method: top-1 per runtime, speedup [CI] at each batch size and target."""
    from harness.claims import aa_bands, claim, fmt_speedup
    from harness.reports.table import method_label
    from harness.store import Store

    st = Store(store, readonly=True)
    rows = [r for r in st.rows(suite=suite) if r["status"] == "ok"]
    failed = [r for r in st.rows(suite=suite) if r["status"] != "ok"]
    st.close()
    bands = aa_bands(rows)
    out: list[str] = []
    labels = list(dict.fromkeys(method_label(r) for r in rows))
    batches = sorted({int(r["batch_size"]) for r in rows if r.get("batch_size")})
    for target in TARGETS:
        mine = [r for r in rows if r["target"] == target]
        if not mine:
            continue
        out.append(f"{target}")
        for label in labels:
            cells = [r for r in mine if method_label(r) == label]
            if not cells:
                continue
            top1 = cells[0].get("top1_target")
            parts = [f"  {label:<42} top-1 {100 * top1:5.1f}%" if top1 is not None
                     else f"  {label:<42} top-1   n/a"]
            for b in batches:
                r = next((c for c in cells if c.get("batch_size") == b), None)
                if r is None or r.get("speedup") is None:
                    continue
                parts.append(f"b={b} {fmt_speedup(r)} ({claim(r, bands)})")
            out.append("  ".join(parts))
    for r in failed:
        first = (r.get("error") or "failed").splitlines()[0]
        out.append(f"FAILED {r['target']} {method_label(r)}: {first[:120]}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path(".harness/own-model"))
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--target", action="append", default=None)
    a = ap.parse_args(argv)
    from harness.benchmarks.make_imagefolder import write

    folder = a.work / "images"
    if not (folder / "train").is_dir():
        write(folder, a.per_class, max(10, a.per_class // 2))
    suite = a.work / "own-model-mobilenet64.toml"
    suite.write_text(SUITE.format(root=folder.resolve()))
    cmd = [sys.executable, "-m", "harness.cli", "run", "--suite", str(suite), "--profile",
           a.profile, "--store", str(a.work / "results.db"), "--report-dir",
           str(a.work / "report")]
    for t in a.target or TARGETS:
        cmd += ["--target", t]
    print("$", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, stdout=subprocess.DEVNULL)
    print(report(a.work / "results.db", "own-model-mobilenet64"))
    return rc


if __name__ == "__main__":
    sys.exit(main())

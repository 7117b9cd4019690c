"""Speedup benchmark: each method's speedup over the baseline, per target and batch size.

Runs a suite through the harness (cells already in the store are reused) and prints one line
per method: speedups at batch 1 (p50 latency ratio) and batch N (throughput ratio) on each
target, each measured interleaved with the baseline in the same run, plus top-1 on the runtime.

    python -m harness.benchmarks.speedups                       # ResNet-56, fashion-mnist-resnet quick
    python -m harness.benchmarks.speedups --suite cifar10-resnet --data-dir DATA --profile full
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

from harness.reports.html import frame
from harness.store import Store


def table(store: Path, suite: str, model: str) -> pd.DataFrame:
    st = Store(store)
    df = frame(st.rows(suite=suite))
    st.close()
    df = df[(df.status == "ok") & (df.model == model)]
    wide = df.pivot_table(index="label", columns=["target", "batch_size"], values="speedup",
                          aggfunc="first")
    acc = df.pivot_table(index="label", columns="target", values="top1_target", aggfunc="first")
    wide.columns = [f"{t} b={b}" for t, b in wide.columns]
    acc.columns = [f"top1 {t}" for t in acc.columns]
    order = df.drop_duplicates("label").set_index("label").index
    return wide.join(100 * acc).loc[order]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="fashion-mnist-resnet")
    ap.add_argument("--model", default="resnet-56")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--store", type=Path, default=Path(".harness/results.db"))
    ap.add_argument("--target", action="append", default=None)
    ap.add_argument("--data-dir", default=None)
    args, extra = ap.parse_known_args(argv)
    targets = args.target or ["openvino-cpu", "onnxruntime-cpu"]
    cmd = [sys.executable, "-m", "harness.cli", "run", "--suite", args.suite, "--model",
           args.model, "--profile", args.profile, "--store", str(args.store), *extra]
    for t in targets:
        cmd += ["--target", t]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    res = subprocess.run(cmd, stdout=subprocess.DEVNULL)
    if res.returncode:
        return res.returncode
    from harness import suite

    suite_name = suite.load(args.suite).name
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"{args.model} speedup over the baseline (same-run interleaved timing), "
              f"profile {args.profile}:")
        print(table(args.store, suite_name, args.model).round(3).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where a sweep's time goes: wall time by step kind, training, exports and INT8 toolchains.

Runs a suite in this process through the local executor with a fresh store and cache (so
nothing is a cache hit), timing each plan step by kind and, inside them, the training loops
(`harness.train.fit`), the interleaved timed pairs, the accuracy passes (torch-side before and
after fine-tuning, and on the runtime), the ONNX exports (made vs reused: one export per
distinct network) and each INT8 toolchain call (which must run only for the targets asked).

    python -m harness.benchmarks.steps                        # fashion-mnist-resnet smoke, ORT
    python -m harness.benchmarks.steps --profile quick --target openvino-cpu
    python -m harness.benchmarks.steps --profile quick --precision 0.03   # the timing trade-off

`--precision` replaces the profile's early-stop target (the speedup CI half-width at which a
timed pair may stop after `min_rounds`; 0 turns the early stop off): what the timed pairs cost
against how precise their speedups are. `--keep DIR` keeps the store (`DIR/r.db`) and cache
for a look at the rows and raw samples afterwards (DIR must not exist).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="fashion-mnist-resnet")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--target", action="append", default=None)
    ap.add_argument("--model", action="append", default=None)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--precision", type=float, default=None,
                    help="override the profile's timing.precision (0: no early stop)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep the store and cache in this new folder instead of a temporary one")
    ap.add_argument("--steps", action="store_true",
                    help="print every step's wall time (to hold against `harness plan --steps`)")
    args = ap.parse_args(argv)
    if args.keep is not None and args.keep.exists():
        ap.error(f"--keep {args.keep}: already exists (give a new folder)")

    import dataclasses

    from harness import export, runner as runner_mod, suite as suites
    from harness.executors.local import LocalExecutor
    from harness.methods import _quant
    from harness.runner import RunOptions, Runner

    s = suites.load(args.suite)
    if args.model:
        s = dataclasses.replace(s, models=tuple(args.model))
    if args.precision is not None:
        prof = s.profile(args.profile)
        timing = dataclasses.replace(prof.timing, precision=args.precision or None,
                                     min_rounds=prof.timing.min_rounds if args.precision else None)
        s = dataclasses.replace(s, profiles={**s.profiles, args.profile: dataclasses.replace(
            prof, timing=timing)})
    targets = args.target or ["onnxruntime-cpu"]
    spent: dict[str, float] = defaultdict(float)
    each: list[tuple[str, float]] = []
    calls: Counter[str] = Counter()

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] += time.perf_counter() - t0
                calls[name] += 1
        return wrapper

    from harness import quality

    runner_mod.fit = timed("training", runner_mod.fit)
    quality.measure_pair = timed("timing (interleaved)", quality.measure_pair)
    Runner._evaluate = timed("accuracy, torch", Runner._evaluate)
    runner_mod.run_batched = timed("accuracy, runtime", runner_mod.run_batched)
    export._export = timed("onnx export", export._export)
    for tool in ("ort_qdq", "nncf_openvino", "torch_x86"):
        setattr(_quant, tool, timed(f"int8 {tool}", getattr(_quant, tool)))

    class TimedExecutor(LocalExecutor):
        def run(self, runner: Any, plan: Any) -> Any:
            kinds = {s.key: s.kind for s in plan.steps}
            labels = {s.key: s.label for s in plan.steps}
            t0 = time.perf_counter()
            for result in super().run(runner, plan):
                t1 = time.perf_counter()
                spent[f"step {kinds[result.key]}"] += t1 - t0
                each.append((labels[result.key], t1 - t0))
                calls[f"step {kinds[result.key]}"] += 1
                yield result
                t0 = time.perf_counter()

    with tempfile.TemporaryDirectory() as scratch:
        tmp = str(args.keep) if args.keep is not None else scratch
        opts = RunOptions(suite=s, profile=args.profile, targets=targets,
                          store=Path(tmp) / "r.db", cache_dir=Path(tmp) / "cache",
                          data_dir=args.data_dir)
        r = Runner(opts)
        t0 = time.perf_counter()
        r.run(TimedExecutor())
        wall = time.perf_counter() - t0
        networks = len(list((Path(tmp) / "cache" / "exports").glob("*.onnx")))
        from harness.store import Store

        rows = Store(Path(tmp) / "r.db").rows()
        windows = [r["window"] for r in rows if r.get("window")]
        widths = [(r["speedup_ci_high"] - r["speedup_ci_low"]) / 2 / r["speedup"]
                  for r in rows if r.get("speedup") and r.get("speedup_ci_high") is not None]
        noisy = sum(r.get("quality") == "noisy" for r in rows)
    print(f"{s.name} {args.profile} on {', '.join(targets)}: {wall:.1f} s wall")
    for name in sorted(spent):
        print(f"  {name:<22} {spent[name]:8.1f} s  {100 * spent[name] / wall:5.1f}%  "
              f"({calls[name]} calls)")
    print(f"  exports: {export.STATS['exported']} made for {networks} distinct networks, "
          f"{export.STATS['reused']} reused")
    train = spent.get("training", 0.0)
    print(f"  non-training share of the sweep: {100 * (wall - train) / wall:.1f}%")
    timing = spent.get("timing (interleaved)", 0.0)
    print(f"  neither training nor the timed pairs: {100 * (wall - train - timing) / wall:.1f}%")
    if widths:
        print(f"  speedup CI half-width over {len(widths)} rows: median +-{np.median(widths):.1%}, "
              f"p90 +-{np.percentile(widths, 90):.1%}; {noisy} rows noisy")
    if args.steps:
        for label, secs in each:
            print(f"  {label:<70} {secs:7.1f} s")
    rounds = [w.get("rounds") for w in windows]
    if rounds:
        print(f"  rounds per timed pair: {dict(sorted(Counter(rounds).items()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Is the session a runtime opens a random effect on a speedup? The same pair of networks
timed many times, each time on one freshly opened pair of sessions for all rounds (the protocol
before measure version 4) and on a fresh pair for every round (timing.measure_pair's `reopen`).

A runtime session owns its thread pool. Most likely where its worker thread happens to run
and wake (which core, how deep asleep) costs tens of microseconds per call and stays as it is
for the session's life (this measures the effect, not the mechanism), so a network timed on
one session can read up to 2-3x slower than the same network on another. Rounds alternate and cancel the drift both sides share; they cannot show a difference
that holds for the whole pair. Each protocol's figure: the spread of its `--trials` speedups,
and how many of their 95% CIs hold the median of those speedups (a CI that means what it says
holds it in about 95% of trials). Trials of the two protocols alternate, so drift hits both.

Networks: a registry model with random weights (speed does not need training) against itself
pruned by `l1-filter` (`--ratio`), and against a second session of itself (A/A).

    python -m harness.benchmarks.sessions                          # LeNet-300-100, ORT, b=1
    python -m harness.benchmarks.sessions --target openvino-cpu
    python -m harness.benchmarks.sessions --model lenet-5 --ratio 0.25
    python -m harness.benchmarks.sessions --model resnet-56 --shape 3 32 32 --trials 8
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="onnxruntime-cpu")
    ap.add_argument("--model", default="lenet-300-100")
    ap.add_argument("--shape", type=int, nargs="+", default=[1, 28, 28])
    ap.add_argument("--ratio", type=float, default=0.25, help="l1-filter ratio of the candidate")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--iterations", type=int, default=400, help="timed calls per side")
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args(argv)
    shape = tuple(args.shape)

    import harness.benchmarks.models  # noqa: F401 - registers the models
    from harness.api import Artifact, Context, build_model
    from harness.export import to_onnx
    from harness.registry import METHODS, MODELS, TARGETS
    from harness.stats import speedup
    from harness.timing import TimingConfig, measure_pair

    torch.manual_seed(0)
    base = build_model(MODELS.get(args.model), 10, shape, None).eval()
    method = METHODS.get("l1-filter")
    ctx = Context(train_data=None, test_data=None, num_classes=10, input_shape=shape)
    small = method().apply(copy.deepcopy(base), method.Config(ratio=args.ratio), ctx).model.eval()
    target = TARGETS.get(args.target)()
    # as the runner opens a cell's session (spinning off: README "Threads and spinning")
    knobs = {"spinning": False} if "spinning" in getattr(target, "settings", ()) else {}
    x = np.random.default_rng(0).standard_normal((args.batch, *shape)).astype(np.float32)
    # reopen_below_ms: inf / 0 force either protocol whatever the call's length
    protocols = {"one pair for all rounds": 0.0, "a fresh pair every round": float("inf")}
    cfgs = {name: TimingConfig(iterations=args.iterations, warmup=args.warmup, rounds=16,
                               reopen_below_ms=below) for name, below in protocols.items()}

    with tempfile.TemporaryDirectory() as tmp:
        paths: dict[str, Path] = {}

        def session(model: torch.nn.Module, name: str) -> Any:
            if name not in paths:  # exported once; every session opens the same file
                paths[name] = to_onnx(model, shape, Path(tmp) / f"{name}.onnx")
            return target.prepare(Artifact(paths[name], None, shape, (10,), "fp32"), args.batch,
                                  args.threads, "fp32", **knobs)

        pairs = {f"l1-filter {args.ratio}": (small, "small"), "A/A": (base, "base")}
        got: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        secs: dict[str, list[float]] = {}
        call_us: list[float] = []
        for trial in range(args.trials):
            order = list(protocols) if trial % 2 == 0 else list(protocols)[::-1]
            for label, (model, name) in pairs.items():
                for proto in order:
                    t0 = time.perf_counter()
                    ct, rt = measure_pair(
                        session(model, name), session(base, "base"), x, cfgs[proto],
                        reopen=lambda m=model, n=name: (session(m, n), session(base, "base")))
                    secs.setdefault(proto, []).append(time.perf_counter() - t0)
                    sp = speedup(ct.by_round(), rt.by_round())
                    got.setdefault((label, proto), []).append((sp.value, sp.ci_low, sp.ci_high))
                    call_us.append(rt.p50_ms * 1e3)
    print(f"{args.model} ({'x'.join(map(str, shape))}) on {args.target}, batch {args.batch}, "
          f"{args.threads} threads, {args.trials} trials of 16 rounds x "
          f"{args.iterations // 16} calls per side; the reference's median call "
          f"{float(np.median(call_us)):.3g} us")
    for label in pairs:
        print(f"  {label}:")
        for proto in protocols:
            res = got[(label, proto)]
            v = np.array([r[0] for r in res])
            mid = float(np.median(v))
            held = np.mean([lo <= mid <= hi for _, lo, hi in res])
            widths = np.median([(hi - lo) / 2 / val for val, lo, hi in res])
            print(f"    {proto}: median {mid:.3f}x, spread {v.min():.3f}-{v.max():.3f}x, "
                  f"CIs holding the median {held:.0%}, median CI +-{widths:.1%}")
    for proto in protocols:
        print(f"  seconds per measurement, {proto}: {float(np.median(secs[proto])):.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

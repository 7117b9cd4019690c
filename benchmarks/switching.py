"""Does switching sessions bias an interleaved speedup? The same two networks timed with
small and large chunks, with and without an untimed call at the start of each chunk.

Interleaving (timing.measure_pair) alternates chunks of calls of the candidate and the
reference. The first call of a chunk follows the other session's calls: caches hold the other
network's weights and this session's threads have slept. If that call is slower, and slower
*relative to its own warm time* for the faster network, timing it pulls the speedup toward 1,
the more so the smaller the chunk. The truth here is the speedup measured with long chunks
(`--truth-per` calls, where a few slow calls per chunk weigh little) and a re-warm call; each
protocol is timed `--repeats` times, in turns, so the machine's drift hits them alike.

Networks: torchvision ResNet-18 (3x64x64, 10 classes, random weights; speed does not need
training) against itself pruned by `l1-filter` ratio 0.5 with `residual = true`, and against a
second session of itself (A/A), at batch 1. `--model lenet-5` (1x28x28, calls of tens of
microseconds) or any registry model with its input shape does the same for a small network.

    python -m harness.benchmarks.switching                      # onnxruntime-cpu
    python -m harness.benchmarks.switching --target openvino-cpu
    python -m harness.benchmarks.switching --batch 32 --truth-per 40 --repeats 2   # ~9 min
    python -m harness.benchmarks.switching --model lenet-5 --shape 1 28 28
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

SHAPE = (3, 64, 64)
ROUNDS = 16


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="onnxruntime-cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--truth-per", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--model", default="torchvision:resnet18",
                    help="torchvision:resnet18 or a registry model (give --shape with it)")
    ap.add_argument("--shape", type=int, nargs="+", default=list(SHAPE))
    args = ap.parse_args(argv)
    shape = tuple(args.shape)

    import torchvision

    from harness.api import Context
    from harness.benchmarks._sessions import fp32_session
    from harness.registry import METHODS, MODELS, TARGETS
    from harness.stats import speedup
    from harness.timing import TimingConfig, first_call_ns, measure_pair

    torch.manual_seed(0)
    if args.model == "torchvision:resnet18":
        base = torchvision.models.resnet18(weights=None, num_classes=10).eval()
        config = {"ratio": 0.5, "residual": True}
    else:
        import harness.benchmarks.models  # noqa: F401 - registers the models
        from harness.api import build_model

        base = build_model(MODELS.get(args.model), 10, shape, None).eval()
        config = {"ratio": 0.5}
    method = METHODS.get("l1-filter")
    ctx = Context(train_data=None, test_data=None, num_classes=10, input_shape=shape)
    small = method().apply(copy.deepcopy(base), method.Config(**config), ctx).model.eval()
    target = TARGETS.get(args.target)()
    x = np.random.default_rng(0).standard_normal((args.batch, *shape)).astype(np.float32)
    protocols = [(per, rewarm) for per in (1, 4, 13) for rewarm in (0, 1, 4)]
    protocols.append((args.truth_per, 1))

    with tempfile.TemporaryDirectory() as tmp:
        def session(model: torch.nn.Module, name: str) -> Any:
            sess = fp32_session(target, model, shape, Path(tmp) / f"{name}.onnx", args.batch,
                                args.threads)
            first_call_ns(sess, x)
            return sess

        ref, cand, again = session(base, "base"), session(small, "small"), session(base, "again")
        pairs = {"pruned": cand, "A/A": again}
        got: dict[tuple[str, int, int], list[float]] = {}
        firsts: dict[tuple[str, str], list[float]] = {}
        call_ms: dict[str, list[float]] = {}  # the bias belongs to short calls
        for rep in range(args.repeats):
            order = protocols if rep % 2 == 0 else protocols[::-1]
            for name, other in pairs.items():
                for per, rewarm in order:
                    cfg = TimingConfig(iterations=per * ROUNDS, warmup=10, rounds=ROUNDS,
                                       rewarm=rewarm)
                    ct, rt = measure_pair(other, ref, x, cfg)
                    sp = speedup(ct.by_round(), rt.by_round())
                    got.setdefault((name, per, rewarm), []).append(sp.value)
                    if name == "pruned" and per == args.truth_per:  # how long one call is
                        call_ms.setdefault("pruned", []).append(ct.p50_ms)
                        call_ms.setdefault("unpruned", []).append(rt.p50_ms)
                    if per == 13 and rewarm == 0:  # the first call of a chunk vs the rest
                        for side, t in (("candidate", ct), ("reference", rt)):
                            ratios = [c[0] / np.median(c[1:]) for c in t.by_round()]
                            firsts.setdefault((name, side), []).append(float(np.median(ratios)))
    print(f"{args.model} ({'x'.join(map(str, shape))}) on {args.target}, batch {args.batch}, "
          f"{args.threads} threads: "
          f"speedup over the unpruned network, median of {args.repeats} interleaved "
          f"measurements of {ROUNDS} rounds (per = timed calls per chunk; rewarm = untimed calls before each)")
    print(f"  median call (per {args.truth_per}): "
          + ", ".join(f"{k} {float(np.median(v)):.3g} ms" for k, v in call_ms.items()))
    for name in pairs:
        truth = float(np.median(got[(name, args.truth_per, 1)]))
        print(f"  {name}: truth (per {args.truth_per}, rewarm 1) {truth:.3f}x")
        for per, rewarm in protocols[:-1]:
            vals = got[(name, per, rewarm)]
            v = float(np.median(vals))
            print(f"    per {per:>3} rewarm {rewarm}: {v:.3f}x  ({v / truth - 1:+.1%} vs truth; "
                  f"runs {', '.join(f'{u:.3f}' for u in vals)})")
        for side in ("candidate", "reference"):
            print(f"    first call of a chunk / the chunk's median, {side}: "
                  f"{float(np.median(firsts[(name, side)])):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

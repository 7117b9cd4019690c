"""Do pruned widths that are multiples of 8 run faster? ResNet-56 filter-pruned by ratio, with
and without `round_to`, timed interleaved against the unpruned network (the harness's own
protocol and estimator) at batch 1 and 64 on one target.

Why: the tune demo showed ResNet-56 pruned at ratio 0.35-0.4 *slower* than at 0.5 on ONNX
Runtime (0.91x against 1.29x at batch 1); those ratios leave widths like 10, 19 and 38. Li's
plans 56-A and 56-B are timed too: on an AVX2-only CPU a quick sweep read 56-A slower than the
unpruned network on ONNX Runtime (session 16: 0.87x at batch 1, 0.85x at batch 64).

    python -m harness.benchmarks.widths                       # onnxruntime-cpu
    python -m harness.benchmarks.widths --target openvino-cpu
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import numpy as np
import torch

CASES: tuple[dict[str, object], ...] = (
    {"ratio": 0.35}, {"ratio": 0.35, "round_to": 8}, {"ratio": 0.4}, {"ratio": 0.4, "round_to": 8},
    {"ratio": 0.5}, {"plan": "56-A"}, {"plan": "56-B"})
SHAPE = (1, 32, 32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="onnxruntime-cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    from harness.api import Context
    from harness.benchmarks._sessions import fp32_session
    from harness.quality import measure_until_clean
    from harness.registry import METHODS, MODELS, TARGETS
    from harness.stats import ESTIMATOR
    from harness.timing import TimingConfig

    torch.manual_seed(0)
    base = MODELS.get("resnet-56").build(num_classes=10, in_channels=1).eval()
    method = METHODS.get("l1-filter")
    ctx = Context(train_data=None, test_data=None, num_classes=10, input_shape=SHAPE)
    target = TARGETS.get(args.target)()
    cfg = TimingConfig(iterations=400, warmup=10, rounds=16)

    def pruned(case: dict[str, object]) -> torch.nn.Module:
        """What `l1-filter` makes of the network (no fine-tune: speed does not need it)."""
        return method().apply(copy.deepcopy(base), method.Config(**case), ctx).model.eval()

    with tempfile.TemporaryDirectory() as tmp:
        def session(model: torch.nn.Module, name: str, batch: int) -> object:
            return fp32_session(target, model, SHAPE, Path(tmp) / f"{name}.onnx", batch,
                                args.threads)

        print(f"ResNet-56 (1x32x32) on {args.target}, {args.threads} threads: speedup over the "
              f"unpruned network [95% CI], 16 interleaved rounds")
        for batch in (1, 64):
            x = np.random.default_rng(0).standard_normal((batch, *SHAPE)).astype(np.float32)
            ref = session(base, "base", batch)
            for case in CASES:
                model = pruned(case)
                widths = sorted({m.out_channels for m in model.modules()
                                 if isinstance(m, torch.nn.Conv2d)})
                name = " ".join(f"{k} {v}" for k, v in case.items())
                verdict, sp, *_ = measure_until_clean(
                    session(model, name.replace(" ", "-"), batch), ref, x, cfg, ESTIMATOR,
                    aa=False)
                print(f"  b={batch:<3} {name:<22} widths {widths}: {sp.value:.2f} "
                      f"[{sp.ci_low:.2f}, {sp.ci_high:.2f}] {verdict.quality}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

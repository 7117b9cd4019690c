"""Do pruned widths that are multiples of 8 run faster? ResNet-56 filter-pruned by ratio, with
and without `round_to`, timed interleaved against the unpruned network (the harness's own
protocol and estimator) at batch 1 and 64 on one target.

Why: the tune demo showed ResNet-56 pruned at ratio 0.35-0.4 *slower* than at 0.5 on ONNX
Runtime (0.91x against 1.29x at batch 1); those ratios leave widths like 10, 19 and 38.

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

CASES = ((0.35, None), (0.35, 8), (0.4, None), (0.4, 8), (0.5, None))
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

    def pruned(ratio: float, round_to: int | None) -> torch.nn.Module:
        """What `l1-filter` makes of the network (no fine-tune: speed does not need it)."""
        config = method.Config(ratio=ratio, round_to=round_to)
        return method().apply(copy.deepcopy(base), config, ctx).model.eval()

    with tempfile.TemporaryDirectory() as tmp:
        def session(model: torch.nn.Module, name: str, batch: int) -> object:
            return fp32_session(target, model, SHAPE, Path(tmp) / f"{name}.onnx", batch,
                                args.threads)

        print(f"ResNet-56 (1x32x32) on {args.target}, {args.threads} threads: speedup over the "
              f"unpruned network [95% CI], 16 interleaved rounds")
        for batch in (1, 64):
            x = np.random.default_rng(0).standard_normal((batch, *SHAPE)).astype(np.float32)
            ref = session(base, "base", batch)
            for ratio, round_to in CASES:
                model = pruned(ratio, round_to)
                widths = sorted({m.out_channels for m in model.modules()
                                 if isinstance(m, torch.nn.Conv2d)})
                verdict, sp, *_ = measure_until_clean(session(model, f"{ratio}-{round_to}", batch),
                                                      ref, x, cfg, ESTIMATOR, aa=False)
                print(f"  b={batch:<3} ratio {ratio} round_to {round_to or '-':<2} widths "
                      f"{widths}: {sp.value:.2f} [{sp.ci_low:.2f}, {sp.ci_high:.2f}] "
                      f"{verdict.quality}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

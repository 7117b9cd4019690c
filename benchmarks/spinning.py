"""ONNX Runtime thread spinning: on or off, on an idle and on a shared machine?

ORT's intra-op threads spin while they wait for work. That saves wake-up latency when the cores
are free and burns them when other processes want them. This times ResNet-56 (fp32, CIFAR
shape) with spinning on against spinning off, interleaved (the harness's paired estimator and
CI), at batch 1 and 64, idle and with `--load` busy processes: the default of the `spinning`
timing setting is the one that loses less where the machine is shared.

    python -m harness.benchmarks.spinning          # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import stats
from harness.benchmarks.contention import _busy
from harness.timing import TimingConfig, Window, measure_pair


def main(argv: list[str] | None = None) -> int:
    import torch

    from harness.api import Artifact, build_model
    from harness.export import to_onnx
    from harness.registry import MODELS, TARGETS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=320)
    args = ap.parse_args(argv)
    shape = (3, 32, 32)
    torch.manual_seed(0)
    model = build_model(MODELS.get("resnet-56"), 10, shape).eval()
    ort = TARGETS.get("onnxruntime-cpu")()
    print("pair: spinning on (candidate) vs off (reference); speedup > 1: spinning is faster")
    with tempfile.TemporaryDirectory() as tmp:
        art = Artifact(to_onnx(model, shape, Path(tmp) / "m.onnx"), None, shape, (10,))
        for phase in ("idle", "loaded"):
            hogs = _busy(args.load) if phase == "loaded" else []
            try:
                time.sleep(1.0 if hogs else 0)
                for batch in (1, 64):
                    x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(
                        np.float32)
                    on = ort.prepare(art, batch, args.threads, "fp32", spinning=True)
                    off = ort.prepare(art, batch, args.threads, "fp32", spinning=False)
                    n = args.iterations if batch == 1 else max(32, args.iterations // 8)
                    with Window() as w:
                        a, b = measure_pair(on, off, x, TimingConfig(n, 10, 16))
                    sp = stats.speedup(a.by_round(), b.by_round())
                    print(f"{phase:<7} b={batch:<3} p50 on {a.p50_ms:7.3f} ms, off "
                          f"{b.p50_ms:7.3f} ms; on/off speedup {sp.value:.3f} "
                          f"[{sp.ci_low:.3f}, {sp.ci_high:.3f}]; other processes "
                          f"{w.other_cpu:.2f} cores", flush=True)
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

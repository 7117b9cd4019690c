"""Do stored speedups survive a busy machine? ResNet-56 fp32 vs INT8, idle and oversubscribed.

Builds ResNet-56 (CIFAR shape, weights as initialised: timing does not depend on what the
weights learned), exports fp32 ONNX, quantizes it with the harness's own toolchains (ONNX
Runtime QDQ u8/s8, NNCF -> OpenVINO IR; calibrated on random images, which changes the scales,
not the graph), then times INT8 against fp32 and fp32 against itself (A/A) on onnxruntime-cpu
and openvino-cpu at batch 1 and 64 through `quality.measure_until_clean`, exactly what a sweep
stores: first on the idle machine, then with `--load` busy processes (default 8 on 2 cores:
4x oversubscribed) started and stopped by this script. Every speedup estimator of
`harness.stats` is recomputed from the same raw samples for comparison. The check the issue
sets: every loaded speedup within 5% of the idle one, or flagged noisy with its reason; every
clean A/A CI contains 1.0.

    python -m harness.benchmarks.contention                 # ~10 min on 2 cores
    python -m harness.benchmarks.contention --load 0        # idle only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness import quality, stats
from harness.timing import TimingConfig


def _artifacts(folder: Path, model_name: str) -> tuple[dict[str, Any], tuple[int, ...]]:
    import torch

    from harness.api import Artifact, build_model
    from harness.export import to_onnx
    from harness.methods._quant import nncf_openvino, ort_qdq
    from harness.registry import MODELS

    shape = (3, 32, 32)
    torch.manual_seed(0)
    model = build_model(MODELS.get(model_name), 10, shape).eval()
    fp32 = to_onnx(model, shape, folder / "fp32.onnx")
    calib = np.random.default_rng(0).standard_normal((64, *shape)).astype(np.float32)
    ort8 = ort_qdq(fp32, folder / "int8-qdq.onnx", calib).path
    ov8 = nncf_openvino(fp32, folder / "int8.xml", calib).path
    out = (10,)
    return {
        "onnxruntime-cpu": (Artifact(fp32, None, shape, out, "fp32"),
                            Artifact(ort8, None, shape, out, "int8")),
        "openvino-cpu": (Artifact(fp32, None, shape, out, "fp32"),
                         Artifact(ov8, None, shape, out, "int8")),
    }, shape


def _busy(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def _measure(phase: str, arts: dict[str, Any], shape: tuple[int, ...], args: argparse.Namespace
             ) -> list[dict[str, Any]]:
    from harness.registry import TARGETS

    rows = []
    for target_name, (fp32, int8) in arts.items():
        target = TARGETS.get(target_name)()
        kw = {"spinning": args.spinning} if "spinning" in getattr(target, "settings", ()) else {}
        for batch in (1, 64):
            x = np.random.default_rng(1).standard_normal((batch, *shape)).astype(np.float32)
            cfg = TimingConfig(iterations=args.iterations if batch == 1 else args.iterations_big,
                               warmup=10, rounds=args.rounds)
            ref = target.prepare(fp32, batch, args.threads, "fp32", **kw)
            for pair, art in (("int8 vs fp32", int8), ("A/A fp32", fp32)):
                cand = target.prepare(art, batch, args.threads, art.precision, **kw)
                t0 = time.perf_counter()
                verdict, sp, ct, rt, window, attempts = quality.measure_until_clean(
                    cand, ref, x, cfg, stats.ESTIMATOR, aa=pair.startswith("A/A"))
                others = {name: float(np.exp(fn(ct.by_round(), rt.by_round())))
                          for name, fn in stats.ESTIMATORS.items()}
                rows.append({"phase": phase, "target": target_name, "batch": batch,
                             "pair": pair, "speedup": sp.value, "ci": (sp.ci_low, sp.ci_high),
                             "quality": verdict.quality, "reason": verdict.reason,
                             "attempts": attempts, "window": window.as_dict(),
                             "seconds": time.perf_counter() - t0, "estimators": others})
                print(f"  {phase:<7} {target_name:<16} b={batch:<3} {pair:<13} "
                      f"{sp.value:6.3f} [{sp.ci_low:.3f}, {sp.ci_high:.3f}] {verdict.quality}"
                      f"{' (' + verdict.reason + ')' if verdict.reason else ''}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet-56")
    ap.add_argument("--load", type=int, default=8, help="busy processes in the loaded phase")
    ap.add_argument("--iterations", type=int, default=480, help="calls per side at batch 1")
    ap.add_argument("--iterations-big", type=int, default=64, help="calls per side at batch 64")
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spinning", action="store_true", help="ORT threads spin (default: off)")
    ap.add_argument("--json", type=Path, default=None, help="also write every row here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{args.model}: exporting and quantizing ...", flush=True)
        arts, shape = _artifacts(Path(tmp), args.model)
        rows = _measure("idle", arts, shape, args)
        if args.load:
            hogs = _busy(args.load)
            try:
                time.sleep(1.0)
                rows += _measure("loaded", arts, shape, args)
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
    print()
    names = list(stats.ESTIMATORS)
    print(f"{'target':<16} {'b':>3} {'pair':<13} {'idle':>24} {'loaded (stored)':>32}  "
          + "  ".join(f"{n[:14]:>14}" for n in names) + "   check")
    ok = True
    idle = {(r["target"], r["batch"], r["pair"]): r for r in rows if r["phase"] == "idle"}
    for r in rows:
        if r["phase"] != "loaded":
            continue
        i = idle[(r["target"], r["batch"], r["pair"])]
        within = abs(r["speedup"] / i["speedup"] - 1) <= 0.05
        check = "within 5%" if within else ("flagged noisy" if r["quality"] == "noisy"
                                            else "FAIL")
        ok &= check != "FAIL"
        loaded = (f"{r['speedup']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] "
                  f"{r['quality']} x{r['attempts']}")
        print(f"{r['target']:<16} {r['batch']:>3} {r['pair']:<13} "
              f"{i['speedup']:>7.3f} [{i['ci'][0]:.3f}, {i['ci'][1]:.3f}] {loaded:>32}  "
              + "  ".join(f"{r['estimators'][n]:>14.3f}" for n in names) + f"   {check}")
    for r in rows:
        if r["pair"].startswith("A/A") and r["quality"] == "clean":
            contains = r["ci"][0] <= 1.0 <= r["ci"][1]
            ok &= contains
            if not contains:
                print(f"FAIL: clean A/A CI without 1.0: {r}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print("all checks hold" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

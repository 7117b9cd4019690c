"""Would a torch accuracy pass in channels_last pay, and would it change a prediction?

The runner's torch-side accuracy passes (`harness.train.predict_logits`) run in the default
memory layout. This times the same pass in channels_last (on a copy of the model, as it would
have to be: training and export must not see another layout) against the default, per model,
and compares their outputs (largest logit difference relative to the largest logit, and how
many images' top-1 classes differ). README "Where a sweep's time goes" says why the runner
does not do it.

    python -m harness.benchmarks.eval_layout                # 500 images, 5 repeats, ~1 min
    python -m harness.benchmarks.eval_layout --images 2000

Models: the registry's LeNets, CIFAR ResNets and YOLOv2-tiny, a ResNet-56 pruned by Li's plan
56-B, and torchvision's ResNet-18 and MobileNetV3-Small at 64x64; random weights (speed and
layout agreement do not need training), 10 classes.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    import torchvision

    import harness.benchmarks.models  # noqa: F401 - registers the models
    from harness.api import Context, build_model
    from harness.registry import METHODS, MODELS

    torch.manual_seed(0)
    nets: list[tuple[str, torch.nn.Module, tuple[int, ...]]] = []
    for name, shape in (("lenet-300-100", (1, 28, 28)), ("lenet-5", (1, 28, 28)),
                        ("resnet-20", (1, 32, 32)), ("resnet-56", (1, 32, 32)),
                        ("resnet-110", (1, 32, 32)), ("yolov2-tiny", (1, 96, 96))):
        nets.append((name, build_model(MODELS.get(name), 10, shape, None), shape))
    method = METHODS.get("l1-filter")
    ctx = Context(train_data=None, test_data=None, num_classes=10, input_shape=(1, 32, 32))
    pruned = method().apply(copy.deepcopy(nets[3][1]), method.Config(plan="56-B"), ctx).model
    nets.append(("resnet-56 pruned 56-B", pruned, (1, 32, 32)))
    nets.append(("torchvision resnet18", torchvision.models.resnet18(num_classes=10), (3, 64, 64)))
    nets.append(("torchvision mobilenet_v3_small",
                 torchvision.models.mobilenet_v3_small(num_classes=10), (3, 64, 64)))

    print(f"torch accuracy pass on {args.images} images, batch 256, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"  {'model':<32} {'default':>9} {'channels_last':>14} {'ratio':>6}  "
          f"{'max rel diff':>12}  top-1 differs")
    for name, model, shape in nets:
        model.eval()
        x = torch.randn(args.images, *shape)

        def plain(model: torch.nn.Module = model, x: torch.Tensor = x) -> torch.Tensor:
            return _logits(model, x, torch.contiguous_format)

        def layout(model: torch.nn.Module = model, x: torch.Tensor = x) -> torch.Tensor:
            fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
            return _logits(fast, x, torch.channels_last)

        t_plain, out_plain = _median_time(plain, args.repeats)
        t_cl, out_cl = _median_time(layout, args.repeats)
        rel = float((out_plain - out_cl).abs().max() / out_plain.abs().max().clamp_min(1e-30))
        flips = int((out_plain.argmax(1) != out_cl.argmax(1)).sum())
        print(f"  {name:<32} {t_plain:8.3f}s {t_cl:13.3f}s {t_plain / t_cl:5.2f}x  "
              f"{rel:12.1e}  {flips} of {args.images}")
    return 0


@torch.inference_mode()
def _logits(model: torch.nn.Module, x: torch.Tensor, layout: torch.memory_format,
            batch: int = 256) -> torch.Tensor:
    return torch.cat([model(x[i: i + batch].contiguous(memory_format=layout)).float()
                      for i in range(0, len(x), batch)])


def _median_time(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()  # warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2], out


if __name__ == "__main__":
    raise SystemExit(main())

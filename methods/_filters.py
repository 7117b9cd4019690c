"""Filter pruning, split as Torch-Pruning splits it: criterion, plan, surgery.

- criterion: scores one layer's output filters/neurons (low score = pruned first);
- plan: which layers lose how many filters (a method's business);
- surgery: Torch-Pruning's dependency graph removes them and slices every coupled layer
  (next layer's inputs, BN, flatten), leaving a smaller dense model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

Criterion = Callable[[torch.Tensor], torch.Tensor]


def l1_norm(weight: torch.Tensor) -> torch.Tensor:
    """Li et al. 2016: sum of absolute kernel weights per output filter."""
    return weight.detach().flatten(1).abs().sum(1)


def geometric_median_distance(weight: torch.Tensor) -> torch.Tensor:
    """FPGM (He et al. 2019): each filter's summed Euclidean distance to all the others; the
    smallest sums sit nearest the geometric median, so they are the most replaceable."""
    flat = weight.detach().flatten(1).double()
    return torch.cdist(flat, flat).sum(1)


def lowest(scores: torch.Tensor, n: int) -> list[int]:
    """Indices of the `n` lowest scores (ties broken by index, so results are reproducible)."""
    order = sorted(range(len(scores)), key=lambda i: (float(scores[i]), i))
    return sorted(order[:n])


def prune_filters(
    model: nn.Module,
    plan: dict[str, int],
    criterion: Criterion,
    example: torch.Tensor,
) -> dict[str, list[int]]:
    """Remove `plan[layer]` output filters from each named conv/linear layer, in place.

    All layers are scored on the weights as they are before any removal (Li's "independent"
    strategy), then cut. Returns the removed indices per layer.
    """
    import torch_pruning as tp

    modules = dict(model.named_modules())
    chosen: dict[str, list[int]] = {}
    for name, n in plan.items():
        mod = modules[name]
        n = min(int(n), mod.weight.shape[0] - 1)  # never remove a whole layer
        if n > 0:
            chosen[name] = lowest(criterion(mod.weight), n)
    # the dependency graph is traced through autograd: every parameter must require grad
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(True)
    with torch.enable_grad():
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    for p, flag in flags:
        p.requires_grad_(flag)
    for name, idxs in chosen.items():
        mod = modules[name]
        fn = tp.prune_linear_out_channels if isinstance(mod, nn.Linear) else tp.prune_conv_out_channels
        group = graph.get_pruning_group(mod, fn, idxs=idxs)
        if not graph.check_pruning_group(group):
            raise ValueError(f"cannot remove {len(idxs)} filters from {name}")
        group.prune()
    return chosen


def prunable_layers(model: nn.Module) -> list[str]:
    """What a plain ratio sweep prunes. A model may say itself (`model.prunable_layers()`, e.g.
    the torchvision detectors: the inside of each inverted-residual block, so heads and FPN keep
    their channels). Residual networks: the first conv of every block (Li et al.: the second
    conv's outputs are tied to the shortcut). Others: every conv/linear layer but the last one
    (the classifier or detection head keeps its outputs)."""
    if hasattr(model, "prunable_layers"):
        return list(model.prunable_layers())
    if hasattr(model, "stages"):
        return [name for _, _, name in block_convs(model)]
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    return names[:-1]


def block_convs(model: nn.Module) -> list[tuple[int, int, str]]:
    """(Li's layer number, stage index, module name) of each residual block's first conv.
    The stem conv is layer 1; block b (counted over all stages) has layers 2b+2 and 2b+3."""
    out, b = [], 0
    for s, stage in enumerate(model.stages()):  # type: ignore[operator]
        prefix = next(n for n, m in model.named_modules() if m is stage)
        for j in range(len(stage)):
            out.append((2 * b + 2, s, f"{prefix}.{j}.conv1"))
            b += 1
    return out


# Li et al. 2016, Table/section 4.2: skipped layers and per-stage prune ratios (16/32/64 ch).
LI_PLANS: dict[str, tuple[frozenset[int], tuple[float, float, float]]] = {
    "56-A": (frozenset({16, 20, 38, 54}), (0.1, 0.1, 0.1)),
    "56-B": (frozenset({16, 18, 20, 34, 38, 54}), (0.6, 0.3, 0.1)),
    "110-A": (frozenset({36}), (0.5, 0.0, 0.0)),
    "110-B": (frozenset({36, 38, 74}), (0.5, 0.4, 0.3)),
}


def li_plan(model: nn.Module, plan: str) -> dict[str, int]:
    """Filters to remove per block conv under one of Li's named plans."""
    if plan not in LI_PLANS:
        raise ValueError(f"unknown plan '{plan}' (choose from: {', '.join(LI_PLANS)})")
    if not hasattr(model, "stages"):
        raise ValueError(f"plan '{plan}' is for CIFAR ResNets; this model has no residual stages")
    convs = block_convs(model)
    depth = 2 * len(convs) + 2
    want = int(plan.split("-")[0])
    if depth != want:
        raise ValueError(f"plan '{plan}' is for ResNet-{want}; this model has depth {depth}")
    skip, ratios = LI_PLANS[plan]
    modules = dict(model.named_modules())
    # ceil, not round: it reproduces the paper's reported reductions (56-A: -9.4% params,
    # -10.4% FLOPs; 56-B: -13.7%/-27.6%; 110-A: -2.3%/-15.9%; 110-B: -32.4%/-38.6%)
    return {name: math.ceil(round(ratios[s] * modules[name].out_channels, 6))
            for num, s, name in convs if num not in skip}

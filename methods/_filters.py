"""Filter pruning, split as Torch-Pruning splits it: criterion, plan, surgery.

- criterion: scores one layer's output filters/neurons (low score = pruned first);
- plan: which layers lose how many filters (a method's business);
- surgery: Torch-Pruning's dependency graph removes them and slices every coupled layer
  (next layer's inputs, BN, flatten), leaving a smaller dense model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Criterion = Callable[[torch.Tensor], torch.Tensor]


def l1_norm(weight: torch.Tensor) -> torch.Tensor:
    """Li et al. 2016: sum of absolute kernel weights per output filter."""
    return weight.detach().flatten(1).abs().sum(1)


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
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    for name, idxs in chosen.items():
        mod = modules[name]
        fn = tp.prune_linear_out_channels if isinstance(mod, nn.Linear) else tp.prune_conv_out_channels
        group = graph.get_pruning_group(mod, fn, idxs=idxs)
        if not graph.check_pruning_group(group):
            raise ValueError(f"cannot remove {len(idxs)} filters from {name}")
        group.prune()
    return chosen


def prunable_layers(model: nn.Module) -> list[str]:
    """Every conv/linear layer but the last one (the classifier keeps its outputs)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    return names[:-1]
